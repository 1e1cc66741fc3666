"""Admission by the header's size against a memory budget: the pure parts (header
reading, the estimate, the budget's queue) and the wait through the real worker pool."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from typing import Any

import pytest
import pyvips

from imageproc import admission
from imageproc._header import read_header
from imageproc.admission import Budget, estimate
from imageproc.workers import PoolConfig, WorkerPool
from pipeline import parse_pipeline
from tests.imageproc.images import LIMITS, ramp

MiB = 2**20


def _jpeg(width: int, height: int, **options: Any) -> bytes:
    return bytes(ramp(width, height).jpegsave_buffer(Q=85, **options))


def _coefficients(width: int, height: int, chroma_share: float) -> int:
    """Blocks of 64 coefficients per MCU-aligned plane (multiples of 16 at 4:2:0)."""
    mcu = 16 if chroma_share < 1 else 8
    luma = math.ceil(width / mcu) * mcu * math.ceil(height / mcu) * mcu
    return int(luma * (1 + 2 * chroma_share))


# --- the header -------------------------------------------------------------------------


def test_a_progressive_jpeg_holds_two_bytes_per_coefficient_of_the_whole_image() -> None:
    header = read_header(_jpeg(1000, 600, interlace=True, subsample_mode="on"))
    assert header is not None
    assert (header.format, header.width, header.height) == ("jpeg", 1000, 600)
    assert header.held_bytes == 2 * _coefficients(1000, 600, 0.25)
    full = read_header(_jpeg(1000, 600, interlace=True, subsample_mode="off"))
    assert full is not None
    assert full.held_bytes == 2 * _coefficients(1000, 600, 1.0)


def test_a_baseline_jpeg_streams() -> None:
    header = read_header(_jpeg(1000, 600))
    assert header is not None
    assert (header.width, header.height, header.held_bytes) == (1000, 600, 0)


def test_the_frame_header_is_found_past_large_metadata() -> None:
    image = ramp(300, 200).copy()
    image.set_type(pyvips.GValue.blob_type, "xmp-data", b"<x>" + b" " * 60_000 + b"</x>")
    header = read_header(bytes(image.jpegsave_buffer(interlace=True, keep="all")))
    assert header is not None
    assert (header.width, header.height) == (300, 200)
    assert header.held_bytes > 0


def test_png_webp_and_gif_sizes() -> None:
    image = ramp(321, 123)
    interlaced = read_header(bytes(image.pngsave_buffer(interlace=True)))
    assert interlaced is not None
    assert (interlaced.width, interlaced.height, interlaced.held_bytes) == (321, 123, 321 * 123 * 3)
    plain = read_header(bytes(image.pngsave_buffer()))
    assert plain is not None
    assert plain.held_bytes == 0
    for options in ({}, {"lossless": True}, {"keep": "all", "lossless": False}):
        webp = read_header(bytes(image.webpsave_buffer(**options)))
        assert webp is not None
        assert (webp.format, webp.width, webp.height) == ("webp", 321, 123)
    gif = read_header(bytes(image.gifsave_buffer()))
    assert gif is not None
    assert (gif.width, gif.height) == (321, 123)


def test_other_formats_and_damage_are_unknown_never_an_error() -> None:
    assert read_header(bytes(ramp(50, 40).tiffsave_buffer())) is None
    assert read_header(b"not an image at all") is None
    data = _jpeg(200, 100, interlace=True)
    rng = random.Random(1)
    for _ in range(300):  # truncated and corrupted headers
        cut = bytearray(data[: rng.randrange(2, 700)])
        if cut and rng.random() < 0.5:
            cut[rng.randrange(len(cut))] = rng.randrange(256)
        header = read_header(bytes(cut))
        assert header is None or header.width > 0 < header.height


# --- the estimate -----------------------------------------------------------------------

FIT = parse_pipeline([{"op": "thumbnail", "width": 256}, {"op": "convert", "format": "jpeg"}])


def test_the_estimate_follows_the_decoder_and_the_pipeline() -> None:
    baseline = _jpeg(2000, 1500)
    progressive = _jpeg(2000, 1500, interlace=True)
    plain = estimate(baseline, FIT, unknown=0)
    assert plain == admission.FIXED_BYTES + 2 * len(baseline)
    held = read_header(progressive).held_bytes  # type: ignore[union-attr]
    assert (
        estimate(progressive, FIT, unknown=0) == admission.FIXED_BYTES + 2 * len(progressive) + held
    )
    dither = parse_pipeline([{"op": "dither"}])
    assert estimate(baseline, dither, unknown=0) == plain + 4 * 2000 * 1500
    small_first = parse_pipeline([{"op": "thumbnail", "width": 200}, {"op": "dither"}])
    assert estimate(baseline, small_first, unknown=0) == plain + 4 * 200 * 150
    # The decoder is let go before the dither holds the image: the two do not add up.
    dithered = 4 * 2000 * 1500
    assert estimate(progressive, dither, unknown=0) == admission.FIXED_BYTES + 2 * len(
        progressive
    ) + max(held + dithered // 4, dithered)
    bayer = parse_pipeline([{"op": "dither", "method": "bayer"}])
    assert estimate(baseline, bayer, unknown=0) == plain  # streams in libvips
    assert estimate(bytes(ramp(50, 40).tiffsave_buffer()), FIT, unknown=12345) == 12345


# --- the budget -------------------------------------------------------------------------


async def _started(task: asyncio.Task[None]) -> bool:
    """Whether the task got past ``acquire`` (after letting the loop run)."""
    for _ in range(5):
        await asyncio.sleep(0)
    return task.done()


async def test_jobs_that_fit_run_together_and_one_that_does_not_waits() -> None:
    budget = Budget(100)
    await budget.acquire(40)
    await budget.acquire(50)
    late = asyncio.create_task(budget.acquire(20))
    assert not await _started(late)
    budget.release(40)
    assert await _started(late)
    assert (budget.in_use, budget.running, budget.waited) == (70, 2, 1)


async def test_arrival_order_is_kept_and_a_job_over_the_budget_runs_alone() -> None:
    budget = Budget(100)
    await budget.acquire(30)
    big = asyncio.create_task(budget.acquire(500))
    small = asyncio.create_task(budget.acquire(10))  # would fit, but arrived after big
    assert not await _started(big)
    assert not await _started(small)
    budget.release(30)
    assert await _started(big)
    assert not await _started(small)
    budget.release(500)
    assert await _started(small)


async def test_a_cancelled_waiter_lets_the_next_one_in() -> None:
    budget = Budget(100)
    await budget.acquire(60)
    first = asyncio.create_task(budget.acquire(80))
    second = asyncio.create_task(budget.acquire(30))
    assert not await _started(first)
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    assert await _started(second)
    assert (budget.in_use, budget.running) == (90, 2)


async def test_no_budget_admits_everything() -> None:
    budget = Budget(0)
    for _ in range(5):
        await budget.acquire(10**12)
    assert (budget.running, budget.waited) == (5, 0)


# --- through the real pool ---------------------------------------------------------------


async def _most_busy(pool: WorkerPool, jobs: list[tuple[bytes, Any]]) -> int:
    """Run the jobs at once; the most workers seen busy together."""
    most = 0

    async def watch() -> None:
        nonlocal most
        while True:
            most = max(most, len(pool.busy_pids()))
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    try:
        results = await asyncio.gather(*(pool.run(d, ops, limits=LIMITS) for d, ops in jobs))
    finally:
        watcher.cancel()
    assert all(result.info.width == 300 for result in results)
    return most


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("budget_mib", "together"), [(0, 2), (1, 1)])
async def test_jobs_over_the_budget_wait_for_a_slot_through_the_pool(
    budget_mib: int, together: int
) -> None:
    # Every job is estimated at more than 1 MiB: with that budget they run one at a time,
    # without one (0) side by side; each long enough (a blur of 3000x3000) to be seen.
    ops = parse_pipeline([{"op": "blur", "sigma": 8}, {"op": "thumbnail", "width": 300}])
    data = _jpeg(3000, 3000, interlace=True)
    config = PoolConfig(workers=2, timeout=30, memory_bytes=0, admission_bytes=budget_mib * MiB)
    pool = WorkerPool(config)
    await pool.start()
    try:
        assert await _most_busy(pool, [(data, ops), (data, ops)]) == together
        assert pool.budget.waited == (1 if budget_mib else 0)
        assert (pool.budget.running, pool.budget.in_use) == (0, 0)
    finally:
        await pool.close()
