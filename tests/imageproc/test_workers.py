"""Pipelines run in worker processes that are killed and replaced at the deadline or over
their memory share, whatever the decoder (bounded work per image): imageproc in-process on the
real broker, with real worker processes, a 1 s deadline (30 s for the memory test) and a
small memory ceiling."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pyvips
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image

from imageproc.app import POOL, create_app
from imageproc.settings import Settings
from imageproc.workers import WorkerPool
from messaging import Broker, BrokerSettings, RpcError, RpcMessage, topology
from messaging.events import CancelRequested
from tests.conftest import isolated_env, settings_from
from tests.hostile import repeated_scan_jpeg
from tests.waiting import async_wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TIMEOUT = 1.0
GRACE = 2.0  # workers._GRACE
SLACK = 3.0  # a loaded 2-core machine: killing, replacing, the RPC round trips
THUMBNAIL = [{"op": "thumbnail", "width": 64}]
# ~5000 repeated scans at 9 MP: ~20 s in Pillow's decoder, which no kill flag stops.
SLOW_JPEG = repeated_scan_jpeg(3000, 3000, 5000)


@pytest.fixture
def deadline() -> float:
    return TIMEOUT


@pytest.fixture(scope="module")
def workers_env(stack_config: dict[str, str]) -> Iterator[dict[str, str]]:
    """A vhost of its own: the session mesh's imageproc also serves the session vhost's
    RPC queue, and would take some of these jobs from the pool under test."""
    with isolated_env(stack_config, "workers") as env:
        yield env


@pytest.fixture
async def broker(workers_env: dict[str, str]) -> AsyncIterator[Broker]:
    settings: BrokerSettings = settings_from(workers_env, BrokerSettings)
    async with Broker(settings, service="tests") as connected:
        yield connected


@pytest.fixture
async def app(workers_env: dict[str, str], deadline: float) -> AsyncIterator[web.Application]:
    # One per test (the tests override its deadline): never two consuming the RPC queue.
    settings: Settings = settings_from(
        {
            **workers_env,
            "IMAGEPROC_CONCURRENCY": "2",
            "PIPELINE_TIMEOUT_SECONDS": str(deadline),
            "IMAGE_MAX_JPEG_SCANS": "100000",  # let the slow JPEG reach the decoder
            "IMAGEPROC_MEMORY_LIMIT_MB": "200",  # 100 MiB per worker
        },
        Settings,
    )
    application = create_app(settings)
    server = TestServer(application, host="127.0.0.1")
    await server.start_server()
    yield application
    await server.close()


def _pool(app: web.Application) -> WorkerPool:
    return app[POOL]


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((width, height)).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


async def _timed(broker: Broker, pipeline: object, data: bytes) -> tuple[str, float]:
    """(outcome, seconds): "ok" or the error code."""
    started = time.monotonic()
    try:
        await broker.call_raw(
            topology.IMAGEPROC_RUN, RpcMessage({"pipeline": pipeline}, data), timeout=60
        )
        outcome = "ok"
    except RpcError as exc:
        outcome = exc.code
    return outcome, time.monotonic() - started


async def test_decoders_past_the_deadline_are_killed_and_their_slots_freed(
    app: web.Application, broker: Broker
) -> None:
    pool = _pool(app)
    before, started, kills = pool.pids(), pool.jobs_started, pool.kills["timeout"]
    # Both slots taken by decodes that would run ~20 s (longer on a loaded machine).
    slow = [asyncio.create_task(_timed(broker, THUMBNAIL, SLOW_JPEG)) for _ in range(2)]
    # Both handed a slot (a count, not "both busy at once": the first may already be killed
    # at its deadline by then). The normal photo comes after them, so it needs a freed slot.
    await async_wait_for(lambda: pool.jobs_started == started + 2, timeout=30)
    normal = asyncio.create_task(_timed(broker, THUMBNAIL, _jpeg(800, 600)))
    results = await asyncio.gather(*slow)
    first_freed = time.monotonic()  # no later than the first slow job's slot came back
    for outcome, seconds in results:
        assert outcome == "timeout"
        # Killed at the deadline, not answered after the decode.
        assert seconds < TIMEOUT + GRACE + 2 * SLACK
    # The parent killed both (the worker's own deadline cannot stop Pillow's decoder), and
    # both original workers: the two decodes ran in distinct workers, both replaced.
    assert pool.kills["timeout"] - kills == 2
    outcome, _ = await normal
    assert outcome == "ok"
    # Killed slots came back: the photo did not wait for a decode (~20 s) to end.
    assert time.monotonic() - first_freed < 2 * SLACK
    after = pool.pids()
    assert len(after) == 2
    assert len(set(before) & set(after)) == 0


# Time enough for the dither on a loaded machine, so that only the memory ceiling stops it.
@pytest.mark.parametrize("deadline", [30.0])
async def test_a_worker_over_its_memory_share_is_killed_and_replaced(
    app: web.Application, broker: Broker
) -> None:
    # 49 MP to dither: Pillow needs the whole image, ~150 MB, over the 100 MiB share.
    flat = (pyvips.Image.black(7000, 7000) + 128).cast("uchar").bandjoin([40, 90])
    big = bytes(flat.copy(interpretation="srgb").pngsave_buffer())
    before, kills = _pool(app).pids(), _pool(app).kills["memory_budget_exceeded"]
    # Deterministic on a loaded machine too: what a 50 ms sample misses, the worker's peak
    # read after the job does not.
    outcome, _ = await _timed(broker, [{"op": "dither"}], big)
    assert outcome == "memory_budget_exceeded"
    assert _pool(app).kills["memory_budget_exceeded"] - kills == 1
    assert len(set(before) - set(_pool(app).pids())) == 1
    # The service lives on: the same image within the share succeeds.
    assert (await _timed(broker, THUMBNAIL, big))[0] == "ok"


@pytest.mark.parametrize("deadline", [30.0])  # far off: the crash, not the deadline, ends it
async def test_a_worker_that_dies_mid_job_fails_the_job_not_the_service(
    app: web.Application, broker: Broker
) -> None:
    job = asyncio.create_task(_timed(broker, THUMBNAIL, SLOW_JPEG))
    busy = await async_wait_for(lambda: _pool(app).busy_pids(), timeout=10)
    os.kill(busy[0], signal.SIGSEGV)  # as a crashing decoder would
    outcome, seconds = await job
    # Not "timeout": the crash was noticed at once, long before the deadline's kill.
    assert outcome == "worker_crashed"
    assert seconds < 10
    assert (await _timed(broker, THUMBNAIL, _jpeg(300, 200)))[0] == "ok"
    assert len(_pool(app).pids()) == 2


# A deadline the slow decode cannot reach: only the cancellation stops it.
@pytest.mark.parametrize("deadline", [60.0])
async def test_a_cancelled_jobs_pipeline_is_stopped_and_its_worker_replaced(
    app: web.Application, broker: Broker
) -> None:
    pool = _pool(app)
    before, started = pool.pids(), pool.jobs_started
    job_id = "c0ffee00-0000-4000-8000-000000000001"
    slow = asyncio.create_task(
        _timed_job(broker, THUMBNAIL, SLOW_JPEG, job_id)  # ~20 s of Pillow's decoder
    )
    await async_wait_for(lambda: pool.jobs_started == started + 1, timeout=30)
    await broker.publish(CancelRequested(job_id=job_id, principal="alice"))
    outcome, message = await slow
    assert (outcome, message) == ("cancelled", "cancelled by alice")
    assert pool.kills["cancelled"] == 1
    # The slot came back with a fresh worker, and the same job is refused from now on.
    await async_wait_for(lambda: len(pool.pids()) == 2 and not pool.busy_pids(), timeout=30)
    assert len(set(before) & set(pool.pids())) == 1
    outcome, message = await _timed_job(broker, THUMBNAIL, _jpeg(64, 48), job_id)
    assert (outcome, message) == ("cancelled", "cancelled by alice")
    assert pool.jobs_started == started + 1
    # Another job is not affected.
    outcome, _ = await _timed_job(broker, THUMBNAIL, _jpeg(64, 48), job_id.replace("1", "2"))
    assert outcome == "ok"


async def _timed_job(broker: Broker, pipeline: object, data: bytes, job_id: str) -> tuple[str, str]:
    """(outcome, message) of a job's request: "ok" or the error code and message."""
    try:
        await broker.call_raw(
            topology.IMAGEPROC_RUN,
            RpcMessage({"pipeline": pipeline}, data),
            timeout=60,
            job_id=job_id,
        )
    except RpcError as exc:
        return exc.code, exc.message
    return "ok", ""
