"""The worker pool by itself (real processes, no broker): recycling and shutdown."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pyvips
from PIL import Image

from imageproc import _procmem, workers
from imageproc.operations import ProcessingError
from imageproc.workers import PoolConfig, WorkerPool
from pipeline import ImageLimits, parse_pipeline
from tests.conftest import ROOT
from tests.waiting import async_wait_for, wait_for

pytestmark = pytest.mark.timeout(60)
OPS = parse_pipeline([{"op": "thumbnail", "width": 32}])


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (120, 80), (10, 20, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_a_worker_is_recycled_between_jobs_after_its_task_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workers, "_MAX_TASKS", 2)
    pool = WorkerPool(PoolConfig(workers=1, timeout=30, memory_bytes=0))
    await pool.start()
    try:
        seen = []
        for _ in range(5):
            result = await pool.run(_jpeg(), OPS, limits=ImageLimits())
            assert (result.info.width, result.info.height) == (32, 21)
            seen.append(pool.pids()[0])
    finally:
        await pool.close()
    # A fresh worker after every second job; no job was lost to it.
    assert seen[0] != seen[1] == seen[2] != seen[3] == seen[4]


async def test_close_stops_every_worker() -> None:
    pool = WorkerPool(PoolConfig(workers=2, timeout=30, memory_bytes=256 * 2**20))
    await pool.start()
    pids = pool.pids()
    assert len(pids) == 2
    assert all(_alive(pid) for pid in pids)
    await pool.close()
    assert not any(_alive(pid) for pid in pids)
    assert pool.pids() == []


async def test_output_bytes_cross_intact() -> None:
    pool = WorkerPool(PoolConfig(workers=1, timeout=30, memory_bytes=0))
    await pool.start()
    try:
        big = io.BytesIO()
        Image.effect_noise((1500, 1500), 60).convert("RGB").save(big, "PNG")
        ops = parse_pipeline([{"op": "convert", "format": "png"}])
        result = await pool.run(big.getvalue(), ops, limits=ImageLimits())
    finally:
        await pool.close()
    assert len(result.data) > 1_000_000  # larger than a pipe's buffer, many times over
    assert Image.open(io.BytesIO(result.data)).size == (1500, 1500)
    assert result.output_info["width"] == 1500


async def test_a_peak_over_the_share_between_samples_fails_the_job_and_replaces_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The samples can miss a peak (a loaded machine): the worker's peak, read after the
    job, cannot. With the sampler effectively off, only the peak check sees the dither."""
    monkeypatch.setattr(workers, "_SAMPLE_SECONDS", 3600.0)
    pool = WorkerPool(PoolConfig(workers=1, timeout=30, memory_bytes=100 * 2**20))
    await pool.start()
    try:
        # 49 MP to dither: ~150 MB in Pillow at its peak, over the 100 MiB share.
        flat = (pyvips.Image.black(7000, 7000) + 128).cast("uchar").bandjoin([40, 90])
        big = bytes(flat.copy(interpretation="srgb").pngsave_buffer())
        before = pool.pids()
        with pytest.raises(ProcessingError) as failed:
            await pool.run(big, parse_pipeline([{"op": "dither"}]), limits=ImageLimits())
        assert failed.value.code == "memory_budget_exceeded"
        assert pool.kills == {"memory_budget_exceeded": 1}
        replacement = pool.pids()
        assert len(replacement) == 1
        assert replacement != before
        # The replacement starts with its own peak: a job within the share succeeds.
        result = await pool.run(_jpeg(), OPS, limits=ImageLimits())
        assert (result.info.width, result.info.height) == (32, 21)
        assert pool.pids() == replacement
    finally:
        await pool.close()


_BUSY_SERVICE = """
import asyncio
from imageproc.workers import PoolConfig, WorkerPool
from pipeline import ImageLimits, parse_pipeline
from tests.hostile import repeated_scan_jpeg

async def main():
    pool = WorkerPool(PoolConfig(workers=1, timeout=120, memory_bytes=0))
    await pool.start()
    job = asyncio.create_task(pool.run(
        repeated_scan_jpeg(3000, 3000, 5000),
        parse_pipeline([{"op": "thumbnail", "width": 64}]),
        limits=ImageLimits(max_jpeg_scans=10**6),
    ))
    while not pool.busy_pids():
        await asyncio.sleep(0.05)
    print("busy", pool.busy_pids()[0], flush=True)
    await job

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_a_busy_worker_dies_with_the_service(tmp_path: Path) -> None:
    """Killed outright (SIGKILL, the OOM killer), the service takes its workers along,
    even one deep in a decoder that never reads its pipe."""
    script = tmp_path / "busy_service.py"
    script.write_text(_BUSY_SERVICE)
    service = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert service.stdout is not None
        lines = (service.stdout.readline() for _ in range(50))  # log lines come first
        worker = int(next(line for line in lines if line.startswith("busy ")).split()[1])
        assert _alive(worker)
    finally:
        service.kill()
        service.wait(10)
    wait_for(lambda: not _alive(worker), timeout=10)


async def test_an_idle_worker_gives_a_big_jobs_memory_back() -> None:
    # The worker's memory counts in the service's while the other workers run: after a
    # full-size dither of a 12 MP progressive JPEG (~100 MB at its peak) it returns to
    # near its baseline, not to what glibc would keep (~60-100 MB more).
    image = pyvips.Image.gaussnoise(4000, 3000, sigma=40, mean=128).cast("uchar")
    data = bytes(image.bandjoin([image, image]).jpegsave_buffer(Q=90, interlace=True))
    pool = WorkerPool(PoolConfig(workers=1, timeout=30, memory_bytes=0))
    await pool.start()
    try:
        pid = pool.pids()[0]
        # A small job first: a worker forked from a forkserver that another test started
        # without the engine preloaded imports it on its first job, which would count here.
        small = pyvips.Image.black(64, 64).jpegsave_buffer()
        await pool.run(bytes(small), parse_pipeline([{"op": "grayscale"}]), limits=ImageLimits())
        baseline = _procmem.private_resident(pid)
        for ops in (
            [{"op": "dither"}],
            [{"op": "blur", "sigma": 3}, {"op": "convert", "format": "png"}],
        ):
            await pool.run(data, parse_pipeline(ops), limits=ImageLimits())
            assert _procmem.peak_private_resident(pid) > baseline + 60 * 2**20  # it did grow
            await async_wait_for(
                lambda: _procmem.private_resident(pid) < baseline + 24 * 2**20, timeout=15
            )
    finally:
        await pool.close()
