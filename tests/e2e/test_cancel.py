"""Cancelling a job through the real mesh: upload publishes `job.cancel-requested`, the
runner (its own broker user, least privilege) hears it on its live queue and drops the
output of the pipeline imageproc was running, which imageproc, hearing it too, stops; the
job ends `cancelled`, nothing is stored, and provenance has a complete trail naming who
asked.

The job is slow on purpose (two blurs of sigma 100 on 6 MP: ~6 s of work): the cancellation is
sent once the job is seen `processing` and arrives long before imageproc answers. The
runner only decides after imageproc answers, so no timing but that one is involved.
Cancelling a queued job: tests/imageproc_runner/test_cancel.py (the same runner code)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import aiohttp
import pytest

from objectstore import S3Settings, open_store
from tests.conftest import Mesh, complete_trail, settings_from
from tests.e2e.helpers import photo, submit, wait_finished
from tests.e2e.test_metrics import scrape, value
from tests.waiting import async_wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SLOW = json.dumps([{"op": "blur", "sigma": 100}] * 2 + [{"op": "convert", "format": "png"}])
"""~6 s of imageproc's work on 6 MP (one such blur takes under 1 s, three ~18 s)."""
FAST = json.dumps([{"op": "grayscale"}])


async def _job(http: aiohttp.ClientSession, mesh: Mesh, pipeline: str, size: int = 3000) -> str:
    response = await submit(http, mesh.upload_url, photo(size, size * 2 // 3), pipeline)
    assert response.status == 202, await response.text()
    return str((await response.json())["id"])


async def _status(http: aiohttp.ClientSession, mesh: Mesh, job_id: str) -> dict[str, Any]:
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job_id}") as response:
        assert response.status == 200, await response.text()
        job: dict[str, Any] = await response.json()
        return job


async def _cancel(
    http: aiohttp.ClientSession, mesh: Mesh, job_id: str
) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{mesh.upload_url}/api/v1/jobs/{job_id}/cancel") as response:
        return response.status, await response.json()


async def test_a_processing_job_cancelled_ends_cancelled_with_no_output(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    stopped_before = await _stopped_pipelines(http, mesh)
    job_id = await _job(http, mesh, SLOW)

    async def processing() -> bool:
        status = str((await _status(http, mesh, job_id))["status"])
        assert status in {"queued", "processing"}, f"the slow job is already {status}"
        return status == "processing"

    await async_wait_for(processing, timeout=60, interval=0.05, what="the job processing")
    code, body = await _cancel(http, mesh, job_id)
    assert (code, body["id"], body["status"]) == (202, job_id, "processing"), body

    job = await wait_finished(http, mesh.upload_url, job_id, timeout=120)
    assert (job["status"], job["cancelled_by"]) == ("cancelled", "local"), job
    assert "output" not in job
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job_id}/result") as result:
        assert result.status == 409
        assert (await result.json())["error"]["code"] == "job_cancelled"
    code, body = await _cancel(http, mesh, job_id)  # finished now: nothing to cancel
    assert (code, body["error"]["code"]) == (409, "job_finished")

    settings = settings_from(mesh.env, S3Settings)
    async with open_store(settings) as store:
        stored = [o async for o in store.objects(settings.s3_output_bucket, f"{job_id}/")]
    assert stored == []

    docs = await async_wait_for(lambda: complete_trail(mesh.env, job_id), timeout=20)
    assert Counter(d["type"] for d in docs) == {
        "upload.received": 1,
        "image.uploaded": 1,
        "job.processing-started": 1,
        "job.cancel-requested": 1,
        "job.cancelled": 1,
    }
    by_type = {d["type"]: d for d in docs}
    assert by_type["job.cancel-requested"]["service"] == "upload"
    assert by_type["job.cancelled"]["service"] == "imageproc_runner"
    assert by_type["job.cancelled"]["data"]["principal"] == "local"
    assert by_type["job.cancelled"]["data"]["while_processing"] is True
    # imageproc heard the request too: it stopped the pipeline (or refused it, had the
    # request come first) rather than finishing the ~6 s of work for nothing.
    assert await _stopped_pipelines(http, mesh) == stopped_before + 1


async def _stopped_pipelines(http: aiohttp.ClientSession, mesh: Mesh) -> float:
    samples = await scrape(http, mesh, "imageproc")
    return value(samples, "imagemesh_imageproc_pipeline_seconds_count", outcome="cancelled")


async def test_a_finished_or_unknown_job_cannot_be_cancelled(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    job_id = await _job(http, mesh, FAST, size=64)
    job = await wait_finished(http, mesh.upload_url, job_id)
    assert job["status"] == "succeeded"
    code, body = await _cancel(http, mesh, job_id)
    assert (code, body["error"]["code"]) == (409, "job_finished")
    assert (await _status(http, mesh, job_id))["status"] == "succeeded"
    code, body = await _cancel(http, mesh, "00000000-0000-4000-8000-000000000000")
    assert (code, body["error"]["code"]) == (404, "not_found")


RUNNER_CONCURRENCY = 4
"""The test mesh's runner takes this many jobs at once (RUNNER_CONCURRENCY, .env.example):
one more slow job waits queued until one of them ends."""


async def test_a_queued_job_cancelled_never_starts(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    assert mesh.env.get("RUNNER_CONCURRENCY", "4") == str(RUNNER_CONCURRENCY)
    busy = [await _job(http, mesh, SLOW) for _ in range(RUNNER_CONCURRENCY)]
    waiting = await _job(http, mesh, SLOW)

    async def runner_full() -> bool:
        statuses = [(await _status(http, mesh, job_id))["status"] for job_id in busy]
        assert "succeeded" not in statuses, "a slow job ended before the runner was full"
        return statuses == ["processing"] * RUNNER_CONCURRENCY

    await async_wait_for(runner_full, timeout=60, interval=0.05, what="the runner full")
    code, body = await _cancel(http, mesh, waiting)  # before any slot is free again
    assert (code, body["status"]) == (202, "queued"), body
    for job_id in busy:  # done with them: they store nothing either
        assert (await _cancel(http, mesh, job_id))[0] == 202

    job = await wait_finished(http, mesh.upload_url, waiting, timeout=120)
    assert (job["status"], job["cancelled_by"]) == ("cancelled", "local"), job
    docs = await async_wait_for(lambda: complete_trail(mesh.env, waiting), timeout=20)
    types = Counter(d["type"] for d in docs)
    assert "job.processing-started" not in types, "a job cancelled while queued started"
    (cancelled,) = [d for d in docs if d["type"] == "job.cancelled"]
    assert cancelled["data"]["while_processing"] is False
    for job_id in busy:
        ended = await wait_finished(http, mesh.upload_url, job_id, timeout=120)
        assert ended["status"] == "cancelled", ended
