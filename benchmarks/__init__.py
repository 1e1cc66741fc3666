"""Benchmarks run by `make bench`; results land in benchmarks/results/."""
