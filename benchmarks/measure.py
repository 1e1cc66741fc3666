"""Running the plans round after round, and folding the runs into rows.

Throughput is a run's images / wall time (median over rounds, with the spread between
rounds); latencies are pooled over all rounds; CPU-seconds per image are summed over all
rounds; quality is SSIM against a full-resolution Lanczos reference (`benchmarks.quality`).
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import quality
from benchmarks.engines import JOBS_BY_NAME, Engine, Job, Run


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass
class Plan:
    """One (engine, concurrency) to run each job with, every round."""

    label: str
    concurrency: int
    jobs: tuple[Job, ...]
    engine: Engine


def rounds_in_order(plans: Sequence[Plan], round_number: int) -> list[tuple[Plan, Job]]:
    pairs = [(plan, job) for plan in plans for job in plan.jobs]
    shift = (round_number * len(pairs)) // 3 % len(pairs) if pairs else 0
    ordered = pairs[shift:] + pairs[:shift]
    return ordered if round_number % 2 == 0 else ordered[::-1]


async def measure(plans: Sequence[Plan], names: Sequence[str], rounds: int) -> list[Run]:
    runs: list[Run] = []
    for number in range(rounds):
        for plan, job in rounds_in_order(plans, number):
            keep = number == 0  # outputs for quality, from the first round
            run = await plan.engine.run(job, names, plan.concurrency, keep)
            run.engine = plan.label
            runs.append(run)
            log(
                f"round {number + 1}/{rounds} {plan.label:<22} c={plan.concurrency} "
                f"{job.name:<9} {len(run.results) / run.wall:6.2f} img/s"
                + (f"  {len(run.failures)} failed: {run.failures[0]}" if run.failures else "")
            )
    return runs


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Row:
    engine: str
    concurrency: int
    job: str
    rounds: int
    images: int
    failures: int
    throughput: float  # median over rounds, images/s
    spread: float  # (max - min) / median throughput over rounds
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_per_image: dict[str, float]
    output_kb: float
    ssim: float | None
    #: (max - min) / median over rounds of each round's p50 latency
    p50_spread: float = 0.0
    #: per group: (max - min) / median over rounds of each round's CPU per image
    cpu_spread: dict[str, float] = field(default_factory=dict)


def spread(values: Sequence[float]) -> float:
    """(max - min) / median: how much the rounds disagree (0 for fewer than two)."""
    if len(values) < 2:
        return 0.0
    median = statistics.median(values)
    return (max(values) - min(values)) / median if median else 0.0


def _cpu(group: Sequence[Run], images: int) -> tuple[dict[str, float], dict[str, float]]:
    """CPU per image by process group, pooled over the runs, and its spread over rounds."""
    total: dict[str, float] = defaultdict(float)
    per_round: dict[str, list[float]] = defaultdict(list)
    for run in group:
        for name, seconds in run.cpu.items():
            total[name] += seconds
            if run.results:
                per_round[name].append(seconds / len(run.results))
    pooled = {name: seconds / images for name, seconds in total.items()} if images else {}
    return pooled, {name: spread(values) for name, values in per_round.items()}


def summarise_group(group: Sequence[Run], ssim: float | None) -> Row:
    """One (engine, concurrency, job) over its rounds."""
    first = group[0]
    rates = [len(run.results) / run.wall for run in group if run.wall > 0]
    latencies = [result.latency * 1000 for run in group for result in run.results]
    p50s = [
        percentile([r.latency * 1000 for r in run.results], 0.5) for run in group if run.results
    ]
    images = sum(len(run.results) for run in group)
    cpu, cpu_spread = _cpu(group, images)
    sizes = [result.size for run in group for result in run.results]
    return Row(
        engine=first.engine,
        concurrency=first.concurrency,
        job=first.job,
        rounds=len(group),
        images=images,
        failures=sum(len(run.failures) for run in group),
        throughput=statistics.median(rates) if rates else 0.0,
        spread=spread(rates),
        p50_ms=percentile(latencies, 0.50),
        p95_ms=percentile(latencies, 0.95),
        p99_ms=percentile(latencies, 0.99),
        cpu_per_image=cpu,
        output_kb=statistics.mean(sizes) / 1024 if sizes else 0.0,
        ssim=ssim,
        p50_spread=spread(p50s),
        cpu_spread=cpu_spread,
    )


def summarise(runs: Sequence[Run], ssims: dict[tuple[str, str], float]) -> list[Row]:
    grouped: dict[tuple[str, int, str], list[Run]] = defaultdict(list)
    for run in runs:
        grouped[(run.engine, run.concurrency, run.job)].append(run)
    return [
        summarise_group(group, ssims.get((family(engine), job)))
        for (engine, _, job), group in grouped.items()
    ]


def mixed_capacity(rows: Sequence[Row], engine: str, concurrency: int) -> float:
    """Jobs per second for an equal mix of the jobs: the harmonic mean of the jobs'
    throughputs (each job takes 1 / throughput seconds of the stack on average)."""
    rates = [
        row.throughput
        for row in rows
        if row.engine == engine and row.concurrency == concurrency and row.throughput > 0
    ]
    return len(rates) / sum(1 / rate for rate in rates) if rates else 0.0


def family(engine: str) -> str:
    return engine.split(" x")[0].split(" (")[0]


def score_quality(runs: Sequence[Run], folder: Path) -> dict[tuple[str, str], float]:
    """Mean SSIM per (engine family, job) of the outputs kept in the first round."""
    originals: dict[str, bytes] = {}
    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    done: set[tuple[str, str]] = set()
    for run in runs:
        key = (family(run.engine), run.job)
        job = JOBS_BY_NAME[run.job]
        if key in done or job.fit is None or not any(r.output for r in run.results):
            continue
        done.add(key)
        for result in run.results:
            if result.output is None:
                continue
            original = originals.setdefault(result.name, (folder / result.name).read_bytes())
            scores[key].append(quality.score(original, result.output))
    return {key: statistics.mean(values) for key, values in scores.items()}
