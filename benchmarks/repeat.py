"""A repeated request: the same bytes and pipeline as an earlier succeeded job.

The mesh is to reuse the output of a job whose input bytes, canonical pipeline and engine
version equal an earlier succeeded job's (the job's status then names it in
`reused_from`). One file is submitted with unique bytes and followed to `succeeded`; the
identical bytes are then submitted `n` times, one at a time, each timed from the POST and
from its 202 answer to the `succeeded` status seen on the job's event stream. Until the
mesh reuses, every repeat is computed again and the report says so ("n/a, computed").
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.measure import percentile
from benchmarks.unique import unique_bytes

TARGET_MS = 30.0


@dataclass
class RepeatResult:
    """Milliseconds per repeat, and which repeats carried `reused_from`."""

    file: str
    job: str
    first_ms: float = 0.0
    after_202_ms: list[float] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    reused: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "p50_after_202_ms": percentile(self.after_202_ms, 0.5),
            "p95_after_202_ms": percentile(self.after_202_ms, 0.95),
            "p50_post_ms": percentile(self.post_ms, 0.5),
            "p95_post_ms": percentile(self.post_ms, 0.95),
        }


async def timed_job(
    client: Any, data: bytes, name: str, pipeline: list[dict[str, Any]]
) -> tuple[float, float, dict[str, Any]]:
    """(seconds POST -> 202, seconds POST -> final status, final job)."""
    from imagemesh_cli.follow import StatusChanged, follow

    started = time.perf_counter()
    accepted = await client.submit(data, name, pipeline)
    answered = time.perf_counter()
    final: dict[str, Any] = {"status": "unknown", "id": accepted.get("id")}
    async for update in follow(client, accepted["id"]):
        if isinstance(update, StatusChanged):
            final = update.job
    return answered - started, time.perf_counter() - started, final


async def measure_repeat(
    url: str, original: bytes, name: str, job: str, pipeline: list[dict[str, Any]], n: int
) -> RepeatResult:
    """The first job, then `n` repeats of its exact bytes, at concurrency 1."""
    from imagemesh_cli.api import ApiClient

    data = unique_bytes(original)  # new to the mesh: the first one is computed
    result = RepeatResult(name, job)
    async with ApiClient(url, retry_for=60) as client:
        _, total, final = await timed_job(client, data, name, pipeline)
        result.first_ms = total * 1000
        if final.get("status") != "succeeded":
            result.failures.append(f"first job {final.get('id')}: {final.get('status')}")
            return result
        for _ in range(n):
            to_202, total, final = await timed_job(client, data, name, pipeline)
            if final.get("status") != "succeeded":
                result.failures.append(f"job {final.get('id')}: {final.get('status')}")
                continue
            result.post_ms.append(total * 1000)
            result.after_202_ms.append((total - to_202) * 1000)
            result.reused += await was_reused(client, final)
    return result


async def was_reused(client: Any, final: dict[str, Any]) -> bool:
    """Whether the job names an earlier one in `reused_from` (its final status on the
    event stream, else the job read once more, after the timing)."""
    if final.get("reused_from"):
        return True
    job = await client.job(str(final["id"]))
    return bool(job.get("reused_from"))


def lines(summary: dict[str, Any]) -> list[str]:
    """The repeated-request section of bench.md."""
    repeats = len(summary["after_202_ms"])
    reuse = (
        f"{summary['reused']} of {repeats} carried `reused_from`"
        if summary["reused"]
        else "n/a, computed: no answer carried `reused_from` (the mesh does not reuse yet)"
    )
    return [
        "## Repeated request (reuse)",
        "",
        f"`{summary['file']}`, `{summary['job']}`: the first job took "
        f"{summary['first_ms']:.0f} ms; then the identical bytes {repeats} times at c = 1.",
        "",
        "| measured | p50 ms | p95 ms |",
        "|---|---|---|",
        f"| 202 answer -> `succeeded` | {summary['p50_after_202_ms']:.0f} | "
        f"{summary['p95_after_202_ms']:.0f} |",
        f"| POST -> `succeeded` | {summary['p50_post_ms']:.0f} | {summary['p95_post_ms']:.0f} |",
        "",
        f"Reuse: {reuse}."
        + (
            f" {len(summary['failures'])} failed: {summary['failures'][0]}"
            if summary["failures"]
            else ""
        ),
        "",
    ]


def target(summary: dict[str, Any] | None) -> tuple[str, bool | None, str]:
    """Met when the repeats were reused and their p50 after the 202 is within the target;
    n/a while the mesh computes them again (nothing to judge)."""
    name = f"reuse: a repeated request succeeded <= {TARGET_MS:.0f} ms after its 202 (p50)"
    if not summary or not summary["after_202_ms"]:
        return name, None, "not measured"
    p50 = summary["p50_after_202_ms"]
    if not summary["reused"]:
        return name, None, f"n/a, computed: p50 {p50:.0f} ms after the 202, no reused_from"
    repeats = len(summary["after_202_ms"])
    return name, p50 <= TARGET_MS, f"p50 {p50:.0f} ms; {summary['reused']}/{repeats} reused"
