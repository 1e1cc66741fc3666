"""The whole mesh, end to end: HTTP in, RabbitMQ, S3, imageproc, CouchDB out."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import aiohttp
import pytest

from objectstore import S3Settings, open_store
from tests.conftest import Mesh, complete_trail, queue_counts, settings_from
from tests.e2e.helpers import decode, photo, submit, submit_all, wait_finished
from tests.waiting import async_wait_for

pytestmark = pytest.mark.e2e

THUMBNAIL = json.dumps([{"op": "thumbnail", "width": 256, "height": 256}])
DITHER = json.dumps([{"op": "dither"}])


async def test_jpeg_becomes_its_thumbnail_with_provenance(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    response = await submit(http, mesh.upload_url, photo(1200, 800), THUMBNAIL, filename="cat.jpg")
    assert response.status == 202, await response.text()
    body = await response.json()
    assert body["status"] == "queued"
    assert response.headers["Location"] == f"/api/v1/jobs/{body['id']}"
    # Never 404 for a job POST just accepted.
    async with http.get(f"{mesh.upload_url}{response.headers['Location']}") as first:
        assert first.status == 200
        assert (await first.json())["status"] in {"queued", "processing", "succeeded"}

    job = await wait_finished(http, mesh.upload_url, body["id"])
    assert job["status"] == "succeeded", job
    assert job["input"]["width"] == 1200
    assert job["input"]["format"] == "jpeg"
    assert (job["output"]["width"], job["output"]["height"]) == (256, 171)
    assert job["pipeline"] == [
        {"op": "thumbnail", "width": 256, "height": 256, "fit": "inside", "upscale": False}
    ]

    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{body['id']}/result") as result:
        assert result.status == 200
        assert result.content_type == "image/jpeg"
        image = decode(await result.read())
    assert image.size == (256, 171)

    settings = settings_from(mesh.env, S3Settings)
    async with open_store(settings) as store:
        stored = decode(await store.get(settings.s3_output_bucket, f"{body['id']}/output.jpg"))
    assert stored.format == "JPEG"
    assert stored.size == (256, 171)

    docs = await async_wait_for(lambda: complete_trail(mesh.env, body["id"]), timeout=20)
    assert Counter(d["type"] for d in docs) == {
        "upload.received": 1,
        "image.uploaded": 1,
        "job.processing-started": 1,
        "image.processed": 1,
    }
    for doc in docs:
        assert doc["job_id"] == body["id"]
        assert doc["time"].endswith("Z")
        assert doc["prov"]["agent"]
    services = {d["type"]: d["service"] for d in docs}
    assert services == {
        "upload.received": "upload",
        "image.uploaded": "upload",
        "job.processing-started": "imageproc_runner",
        "image.processed": "imageproc_runner",
    }
    received = next(d for d in docs if d["type"] == "upload.received")
    assert received["data"]["filename"] == "cat.jpg"
    assert received["data"]["client"]["address"] == "127.0.0.1"
    # Stored where the job's input says, by content.
    assert received["data"]["input"]["sha256"] == job["input"]["sha256"]
    assert received["location"].endswith(f"/sha256/{job['input']['sha256']}.jpg")
    processed = next(d for d in docs if d["type"] == "image.processed")
    assert processed["input_sha256"] == job["input"]["sha256"]
    assert processed["output_sha256"] == job["output"]["sha256"]
    assert processed["location"].endswith(f"/{body['id']}/output.jpg")
    assert [step["op"] for step in processed["data"]["steps"]] == ["thumbnail"]


async def test_png_becomes_pure_black_and_white(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    response = await submit(http, mesh.upload_url, photo(640, 480, "PNG"), DITHER, filename="x.png")
    assert response.status == 202, await response.text()
    job = await wait_finished(http, mesh.upload_url, (await response.json())["id"])
    assert job["status"] == "succeeded", job
    assert job["output"]["format"] == "png"
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job['id']}/result") as result:
        assert result.content_type == "image/png"
        image = decode(await result.read())
    assert image.size == (640, 480)
    histogram = image.convert("L").histogram()
    assert {value for value, count in enumerate(histogram) if count} == {0, 255}


async def test_a_failing_pipeline_ends_failed_with_a_reason(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    # Valid at upload, but the output would exceed the pixel limit: imageproc refuses it.
    pipeline = json.dumps([{"op": "thumbnail", "width": 10000, "height": 10000, "upscale": True}])
    response = await submit(
        http, mesh.upload_url, photo(200, 200, "PNG"), pipeline, filename="s.png"
    )
    assert response.status == 202, await response.text()
    job = await wait_finished(http, mesh.upload_url, (await response.json())["id"])
    assert job["status"] == "failed"
    assert job["error"]["code"]
    assert job["error"]["message"]
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job['id']}/result") as result:
        assert result.status == 409
        assert (await result.json())["error"]["code"] == "job_failed"


async def test_twenty_jobs_leave_empty_queues_and_one_document_per_step(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    images = [photo(400 + 10 * n, 300, "JPEG" if n % 2 else "PNG") for n in range(20)]
    responses = await submit_all(
        http,
        mesh.upload_url,
        [(image, THUMBNAIL if n % 2 else DITHER) for n, image in enumerate(images)],
    )
    assert [r.status for r in responses] == [202] * 20
    ids = [(await r.json())["id"] for r in responses]
    jobs = await asyncio.gather(*(wait_finished(http, mesh.upload_url, job_id) for job_id in ids))
    assert [job["status"] for job in jobs] == ["succeeded"] * 20

    def drained() -> dict[str, int] | None:
        counts = queue_counts(mesh.env)
        return counts if all(n == 0 for n in counts.values()) else None

    counts = await async_wait_for(drained, timeout=20)
    assert "imageproc_runner.image-uploaded.parking" in counts
    for job_id in ids:

        def complete(job_id: str = job_id) -> list[dict[str, Any]] | None:
            return complete_trail(mesh.env, job_id)

        # One document per step: the trail is complete and no step is recorded twice.
        await async_wait_for(complete, timeout=20)
