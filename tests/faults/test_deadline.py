"""Bounded work per image, end to end through the real mesh: a decode that no kill flag stops
ends at imageproc's deadline as `timeout`, the runner retries it once and no more, and the
slots it held serve the next jobs at once; a pipeline over imageproc's memory ceiling
fails `memory_budget_exceeded` the same way."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
import pyvips
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Mesh, job_documents
from tests.e2e.helpers import photo, submit, wait_finished
from tests.hostile import repeated_scan_jpeg

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

DEADLINE = 1.0
ATTEMPT = DEADLINE + 2.0 + 3.0  # the deadline, imageproc's grace, a loaded machine
THUMBNAIL = json.dumps([{"op": "thumbnail", "width": 64}])


SETTINGS = {
    "IMAGEPROC_CONCURRENCY": "2",
    "PIPELINE_TIMEOUT_SECONDS": str(DEADLINE),
    # Let the slow JPEG past upload's and imageproc's scan limit, to the decoder.
    "IMAGE_MAX_JPEG_SCANS": "100000",
    "IMAGEPROC_MEMORY_LIMIT_MB": "200",  # 100 MiB per worker
}


@pytest.fixture
def mesh_overrides() -> dict[str, str]:
    return SETTINGS


async def _job(http: aiohttp.ClientSession, mesh: Mesh, data: bytes, pipeline: str) -> str:
    response = await submit(http, mesh.upload_url, data, pipeline)
    assert response.status == 202, await response.text()
    return str((await response.json())["id"])


async def _finished(
    http: aiohttp.ClientSession, mesh: Mesh, job_id: str, submitted: float
) -> tuple[dict[str, Any], float]:
    job = await wait_finished(http, mesh.upload_url, job_id, timeout=90)
    return job, time.monotonic() - submitted


async def _runner_jobs(http: aiohttp.ClientSession, mesh: Mesh) -> dict[tuple[str, str], float]:
    """imagemesh_runner_jobs_total by (outcome, error_code)."""
    async with http.get(f"{mesh.ops_url('imageproc_runner')}/metrics") as response:
        text = await response.text()
    return {
        (sample.labels["outcome"], sample.labels["error_code"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "imagemesh_runner_jobs_total"
    }


def _attempts(mesh: Mesh, job_id: str) -> int:
    docs = job_documents(mesh.env, job_id)
    return sum(1 for doc in docs if doc["type"] == "job.processing-started")


async def test_a_decode_past_the_deadline_fails_after_one_retry_and_frees_its_slot(
    fault_mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    # ~20 s each in Pillow's decoder (which libvips' kill flag cannot stop), on both slots,
    # and a normal photo submitted with them.
    slow = repeated_scan_jpeg(3000, 3000, 5000)
    submitted = time.monotonic()
    slow_ids = [await _job(http, fault_mesh, slow, THUMBNAIL) for _ in range(2)]
    normal_id = await _job(http, fault_mesh, photo(800, 600), THUMBNAIL)
    results = await asyncio.gather(
        *(_finished(http, fault_mesh, job_id, submitted) for job_id in [*slow_ids, normal_id])
    )
    for job, seconds in results[:2]:
        assert (job["status"], job["error"]["code"]) == ("failed", "timeout"), job
        # Two attempts (one retry after a short back-off), each ended at the deadline.
        assert seconds < 2 * ATTEMPT + 2, seconds
    normal, seconds = results[2]
    assert normal["status"] == "succeeded", normal
    # It waited for a freed slot (at most the slow jobs' two attempts), not for the decodes.
    assert seconds < 2 * ATTEMPT + 2, seconds
    assert [_attempts(fault_mesh, job_id) for job_id in slow_ids] == [2, 2]
    counts = await _runner_jobs(http, fault_mesh)
    assert counts.get(("retried", "timeout")) == 2
    assert counts.get(("failed", "timeout")) == 2
    assert not any(code == "rpc_timeout" for _, code in counts)
    assert fault_mesh.processes["imageproc"].poll() is None


# Time enough for the dither, so that only the memory ceiling stops it.
@pytest.mark.parametrize("mesh_overrides", [{**SETTINGS, "PIPELINE_TIMEOUT_SECONDS": "30"}])
async def test_a_pipeline_over_the_memory_ceiling_fails_after_one_retry(
    fault_mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    # 49 MP (a 0.7 MB PNG) to dither: ~150 MB in Pillow, over the 100 MiB per worker.
    flat = (pyvips.Image.black(7000, 7000) + 128).cast("uchar").bandjoin([40, 90])
    big = bytes(flat.copy(interpretation="srgb").pngsave_buffer())
    submitted = time.monotonic()
    job_id = await _job(http, fault_mesh, big, json.dumps([{"op": "dither"}]))
    job, _ = await _finished(http, fault_mesh, job_id, submitted)
    assert (job["status"], job["error"]["code"]) == ("failed", "memory_budget_exceeded"), job
    assert _attempts(fault_mesh, job_id) == 2
    counts = await _runner_jobs(http, fault_mesh)
    assert counts.get(("retried", "memory_budget_exceeded")) == 1
    assert counts.get(("failed", "memory_budget_exceeded")) == 1
    # The service lives on and serves the next job.
    normal = await _job(http, fault_mesh, photo(400, 300), THUMBNAIL)
    assert (await _finished(http, fault_mesh, normal, time.monotonic()))[0]["status"] == (
        "succeeded"
    )
