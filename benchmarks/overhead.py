"""The mesh's overhead: CPU per job of every stack process but imageproc.

Target: the CPU of every stack process except imageproc at most 50 ms per fit-512 job at
concurrency 4, on this machine. The table shows, per process group, CPU milliseconds per
job at concurrency 4 (from /proc, before and after every run, the process tree read again
at the end; see `benchmarks.procfs`), its spread over rounds, the sum that the target
checks, imageproc beside it (excluded: that is the work), and the benchmark client's own
CPU (`getrusage`, not in the sum: it includes its memory-sampling thread).
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.engines import JOBS, STACK_BUT_IMAGEPROC
from benchmarks.measure import Row, family

TARGET_MS = 50.0
CONCURRENCY = 4
JOB = "fit512"
#: (group key in Run.cpu, label)
GROUPS = (
    ("upload", "upload"),
    ("imageproc_runner", "imageproc_runner"),
    ("provenancedb", "provenancedb"),
    ("rabbitmq", "RabbitMQ (beam.smp, epmd)"),
    ("couchdb", "CouchDB-compatible server (PouchDB Server)"),
    ("s3", "S3 server (moto)"),
)
SUM = (STACK_BUT_IMAGEPROC, "**sum: all but imageproc**")
EXCLUDED = ("imageproc", "imageproc (shown, not in the sum)")
CLIENT = ("client", "benchmark client (getrusage; not in the sum)")


def mesh_row(rows: Sequence[Row], job: str, concurrency: int = CONCURRENCY) -> Row | None:
    """The single-replica imagemesh row of `job` at `concurrency`."""
    for row in rows:
        mesh = family(row.engine) == "imagemesh" and "replicas" not in row.engine
        if mesh and (row.job, row.concurrency) == (job, concurrency):
            return row
    return None


def cell(row: Row | None, key: str) -> str:
    """ "ms (±spread)" of one group in one row; "n/a" when it was not measured."""
    if row is None or key not in row.cpu_per_image:
        return "n/a"
    ms = row.cpu_per_image[key] * 1000
    return f"{ms:.1f} (±{row.cpu_spread.get(key, 0.0) / 2:.0%})"


def table(rows: Sequence[Row]) -> list[str]:
    """The overhead section of bench.md: one line per process group, one column per job
    at concurrency 4 (fit512 first: the target's)."""
    jobs = sorted((job.name for job in JOBS), key=lambda name: name != JOB)
    found = {name: mesh_row(rows, name) for name in jobs}
    main = found[JOB]
    if main is None:
        return []
    lines = [
        f"## Overhead: CPU ms per job by process group (imagemesh, c = {CONCURRENCY})",
        "",
        "From /proc before and after every run (process trees read again at the end, "
        "exited processes counted through their parent's cutime/cstime); pooled over "
        "rounds, ± half the round-to-round spread.",
        "",
        "| process group | " + " | ".join(jobs) + " |",
        "|---|" + "---|" * len(jobs),
    ]
    for key, label in (*GROUPS, SUM, EXCLUDED, CLIENT):
        lines.append(f"| {label} | " + " | ".join(cell(found[j], key) for j in jobs) + " |")
    lines += ["", f"{main.images} fit512 jobs at c = {CONCURRENCY} over all rounds.", ""]
    return lines


def target(rows: Sequence[Row]) -> tuple[str, bool | None, str]:
    """(target, met, measured) for the targets table."""
    name = f"overhead: non-imageproc CPU per {JOB} job at c={CONCURRENCY} <= {TARGET_MS:.0f} ms"
    row = mesh_row(rows, JOB)
    if row is None or STACK_BUT_IMAGEPROC not in row.cpu_per_image:
        return name, None, "not measured"
    ms = row.cpu_per_image[STACK_BUT_IMAGEPROC] * 1000
    worst = max((key for key, _ in GROUPS), key=lambda key: row.cpu_per_image.get(key, 0.0))
    detail = (
        f"{ms:.1f} ms (±{row.cpu_spread.get(STACK_BUT_IMAGEPROC, 0.0) / 2:.0%}); "
        f"largest: {worst} {row.cpu_per_image.get(worst, 0.0) * 1000:.1f} ms"
    )
    return name, ms <= TARGET_MS, detail
