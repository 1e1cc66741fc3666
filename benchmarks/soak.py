"""The soak: minutes of open-loop mixed jobs at ~80 % of measured capacity.

Arrivals are a Poisson process (seeded: the same run gives the same schedule) at
`fraction` of the mixed capacity measured earlier in the same run (`measure.mixed_capacity`
over the imagemesh c=4 rows). Each arrival is a job of the next kind in turn (fit512,
dither, webp1024) on a random corpus file made unique (`benchmarks.unique`), submitted and
followed to its final status whatever else is in flight (open loop: a slow mesh does not
slow the arrivals), then its result downloaded, as a client would. After the last arrival
the soak waits up to `grace` seconds for every job; a job accepted (202) and not final by
then is lost. Memory is the benchmark's `RssSampler` series over the soak's window. Then
the queues must drain (work queues empty, parking lots unchanged) and the provenance audit
must find no gap that it did not find before the soak (the stack's database keeps every
earlier job, a test's half-written ones too). `soakreport` judges and writes it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import measure
from benchmarks.engines import JOBS
from benchmarks.stackprocs import RssSampler, is_parking, is_work_queue, queue_depths, run_audit
from benchmarks.unique import unique_bytes

FRACTION = 0.8
FINAL = frozenset({"succeeded", "failed"})
GRACE_SECONDS = 180.0
DRAIN_SECONDS = 120.0
SEED = 13


def log(message: str) -> None:
    measure.log(f"soak: {message}")


@dataclass
class SoakJob:
    """One arrival and how it ended."""

    arrival: float
    """Seconds since the soak started."""
    job: str
    file: str
    job_id: str | None = None
    status: str = "pending"
    """pending (not final when the soak ended: lost if accepted), succeeded, failed or
    refused (the POST was not accepted)."""
    latency_ms: float | None = None
    """POST to the final status."""
    error: str = ""


@dataclass
class SoakRun:
    minutes: float
    rate: float
    capacity: float
    jobs: list[SoakJob] = field(default_factory=list)
    started: float = 0.0
    """The sampler's clock (seconds since it started) when the arrivals began."""
    ended: float = 0.0
    """... and when every job was final or the grace ran out."""
    queues_before: dict[str, int] = field(default_factory=dict)
    queues_after: dict[str, int] = field(default_factory=dict)
    drained_in: float | None = None
    audit: dict[str, Any] = field(default_factory=dict)
    audit_before: dict[str, Any] = field(default_factory=dict)
    """The audit before the soak: the stack's database keeps earlier runs' (and tests')
    jobs, so only gaps new since then are the soak's."""
    rss_series: list[tuple[float, dict[str, float]]] = field(default_factory=list)


def arrival_times(rate: float, seconds: float, seed: int = SEED) -> list[float]:
    """Poisson arrivals: exponential gaps with mean 1 / rate, within `seconds`."""
    if rate <= 0:
        return []
    generator = random.Random(seed)
    times, now = [], generator.expovariate(rate)
    while now < seconds:
        times.append(now)
        now += generator.expovariate(rate)
    return times


async def one_job(
    client: Any, record: SoakJob, data: bytes, pipeline: list[dict[str, Any]]
) -> None:
    """Submit, follow to the final status, download a result: fills `record`. A POST not
    accepted is "refused"; a stream that fails after the 202 falls back to polling, so
    that a client-side error is not counted as a lost job."""
    from imagemesh_cli.api import ImagemeshError

    started = time.perf_counter()
    try:
        accepted = await client.submit(data, record.file, pipeline)
    except ImagemeshError as exc:
        record.status, record.error = "refused", repr(exc)[:200]
        return
    record.job_id = str(accepted["id"])
    try:
        final = await follow_final(client, record.job_id)
    except Exception as exc:  # the stream failed: the job may still finish
        record.error = repr(exc)[:200]
        final = await poll_final(client, record.job_id)
    record.status = str(final.get("status"))
    record.latency_ms = (time.perf_counter() - started) * 1000
    if record.status == "succeeded":
        await client.result(record.job_id)


async def follow_final(client: Any, job_id: str) -> dict[str, Any]:
    from imagemesh_cli.follow import StatusChanged, follow

    final: dict[str, Any] = {"status": "unknown"}
    async for update in follow(client, job_id):
        if isinstance(update, StatusChanged):
            final = update.job
    return final


async def poll_final(client: Any, job_id: str, interval: float = 1.0) -> dict[str, Any]:
    """The job's status once final (the soak's grace cancels this if it never is)."""
    while True:
        with contextlib.suppress(Exception):  # keep asking until the grace runs out
            job: dict[str, Any] = await client.job(job_id)
            if job.get("status") in FINAL:
                return job
        await asyncio.sleep(interval)


async def arrivals(url: str, files: dict[str, bytes], run: SoakRun, grace: float) -> None:
    """Send the jobs on schedule, then wait for them (at most `grace` s after the last)."""
    from imagemesh_cli.api import TIMEOUT, ApiClient

    names = sorted(files)
    picker = random.Random(SEED)
    schedule = arrival_times(run.rate, run.minutes * 60)
    tasks: list[asyncio.Task[None]] = []
    # No connection limit: every job in flight holds its event stream open.
    session = aiohttp.ClientSession(timeout=TIMEOUT, connector=aiohttp.TCPConnector(limit=0))
    async with session, ApiClient(url, retry_for=60, session=session) as client:
        start = time.monotonic()
        for index, at in enumerate(schedule):
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            job = JOBS[index % len(JOBS)]
            name = picker.choice(names)
            record = SoakJob(round(time.monotonic() - start, 3), job.name, name)
            run.jobs.append(record)
            tasks.append(
                asyncio.create_task(
                    one_job(client, record, unique_bytes(files[name]), job.pipeline)
                )
            )
            if index % 200 == 0:
                log(f"{index}/{len(schedule)} sent, {sum(not t.done() for t in tasks)} in flight")
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


async def wait_drained(timeout: float = DRAIN_SECONDS) -> tuple[dict[str, int], float | None]:
    """Queue depths once every work queue is empty (or at the deadline), and how long that
    took (None: not drained in time)."""
    started = time.monotonic()
    while True:
        depths = await asyncio.to_thread(queue_depths)
        if not any(count for name, count in depths.items() if is_work_queue(name)):
            return depths, time.monotonic() - started
        if time.monotonic() - started > timeout:
            return depths, None
        await asyncio.sleep(1.0)


async def soak(
    url: str,
    folder: Path,
    names: Sequence[str],
    capacity: float,
    minutes: float,
    sampler: RssSampler,
    *,
    fraction: float = FRACTION,
    grace: float = GRACE_SECONDS,
) -> SoakRun:
    """The whole soak: arrivals, waiting, draining and the audit."""
    run = SoakRun(minutes=minutes, rate=capacity * fraction, capacity=capacity)
    files = {name: (folder / name).read_bytes() for name in names}
    run.queues_before = {
        n: c for n, c in (await asyncio.to_thread(queue_depths)).items() if is_parking(n)
    }
    run.audit_before = await asyncio.to_thread(run_audit)
    log(f"{minutes:g} min at {run.rate:.2f} jobs/s ({fraction:.0%} of {capacity:.2f})")
    run.started = time.monotonic() - sampler.started
    await arrivals(url, files, run, grace)
    run.ended = time.monotonic() - sampler.started
    run.rss_series = [(t, sums) for t, sums in sampler.series if run.started <= t <= run.ended]
    run.queues_after, run.drained_in = await wait_drained()
    log("provenance audit (tools/stack audit)")
    run.audit = await asyncio.to_thread(run_audit)
    return run
