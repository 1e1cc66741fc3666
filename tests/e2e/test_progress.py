"""Live progress (server-sent events), history, the input image and the about document,
against the running mesh."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Mesh, free_port
from tests.e2e.helpers import photo, submit, wait_finished
from tests.waiting import async_wait_for

pytestmark = pytest.mark.e2e

PIPELINE = json.dumps([{"op": "thumbnail", "width": 120}, {"op": "grayscale"}])
TRAIL = ("upload.received", "image.uploaded", "job.processing-started", "image.processed")


async def read_events(
    response: aiohttp.ClientResponse, *, timeout: float = 30.0
) -> list[tuple[str, dict[str, Any]]]:
    """Every (event, data) of a server-sent event stream, until the server ends it."""
    events: list[tuple[str, dict[str, Any]]] = []
    name, data = "message", []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"the stream did not end within {timeout} s: {events}"
        line = await asyncio.wait_for(response.content.readline(), remaining)
        if not line:
            return events
        text = line.decode().rstrip("\n")
        if text.startswith("event: "):
            name = text[7:]
        elif text.startswith("data: "):
            data.append(text[6:])
        elif text == "" and data:
            events.append((name, json.loads("\n".join(data))))
            name, data = "message", []


async def test_progress_streams_every_step_live_until_the_job_ends(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    mesh.stop("imageproc_runner")  # the job waits queued while we start following it
    try:
        response = await submit(http, mesh.upload_url, photo(400, 300), PIPELINE)
        accepted = await response.json()
        assert accepted["links"]["events"] == f"/api/v1/jobs/{accepted['id']}/events"
        stream = await http.get(f"{mesh.upload_url}{accepted['links']['events']}")
        assert stream.status == 200
        assert stream.content_type == "text/event-stream"
        assert stream.headers["Cache-Control"] == "no-cache"
    finally:
        mesh.start("imageproc_runner")
    async with stream:
        events = await read_events(stream)

    statuses = [data["status"] for name, data in events if name == "status"]
    assert statuses == ["queued", "processing", "succeeded"]
    final = events[-1][1]
    assert events[-1][0] == "status"
    assert final["output"]["width"] == 120
    assert not {"output_ref", "input_ref"} & set(final)
    steps = [data for name, data in events if name == "step"]
    kinds = [step["type"] for step in steps]
    # Every step of the job once: the intake (recorded before the stream opened) first,
    # or at the latest before the final status. The mesh records no step per operation
    # nor per stored image: image.processed lists every operation applied, in order.
    assert sorted(kinds, key=TRAIL.index) == list(TRAIL), kinds
    processed = steps[kinds.index("image.processed")]
    assert [s["operation"] for s in processed["operations"]] == ["thumbnail", "grayscale"]
    assert [s["index"] for s in processed["operations"]] == [0, 1]
    assert all(s["duration_ms"] >= 0 for s in processed["operations"])
    assert all(step["time"].endswith("Z") and step["service"] for step in steps)


async def test_a_finished_job_streams_its_status_and_ends(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    response = await submit(http, mesh.upload_url, photo(64, 64), "[]")
    job = await wait_finished(http, mesh.upload_url, (await response.json())["id"])
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job['id']}/events") as stream:
        events = await read_events(stream, timeout=10)
    assert events[-1] == ("status", job)

    # Its steps first: the same events as the job page's timeline, once provenance has
    # recorded the last (the stream may come from this replica's live view before).
    async def recorded() -> dict[str, Any] | None:
        url = f"{mesh.upload_url}/api/v1/jobs/{job['id']}/provenance"
        async with http.get(url) as response:
            found: dict[str, Any] = (await response.json()).get("activity") or {}
        return found if len(found) >= len(TRAIL) else None

    activities = await async_wait_for(recorded, timeout=20, what="the recorded steps")
    assert [name for name, _ in events[:-1]] == ["step"] * len(TRAIL)
    assert [data["type"] for _, data in events[:-1]] == list(TRAIL)
    assert {f"imagemesh:event/{data['id']}" for _, data in events[:-1]} == set(activities)


async def test_progress_of_an_unknown_job_is_404_json(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{unknown}/events") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"


async def test_history_lists_recent_jobs_newest_first_paged_and_filtered(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    ids = []
    for n in range(3):
        response = await submit(http, mesh.upload_url, photo(50 + n, 40), "[]")
        ids.append((await response.json())["id"])
    bad = json.dumps([{"op": "thumbnail", "width": 10000, "height": 10000, "upscale": True}])
    failing = (await (await submit(http, mesh.upload_url, photo(40, 40), bad)).json())["id"]
    for job_id in [*ids, failing]:
        await wait_finished(http, mesh.upload_url, job_id)

    async with http.get(f"{mesh.upload_url}/api/v1/jobs?limit=2") as response:
        assert response.status == 200
        first = await response.json()
    assert [job["id"] for job in first["jobs"]] == [failing, ids[2]]
    assert first["next"]
    async with http.get(f"{mesh.upload_url}/api/v1/jobs?limit=2&before={first['next']}") as page:
        second = await page.json()
    assert [job["id"] for job in second["jobs"]] == [ids[1], ids[0]]
    assert all("output_ref" not in job for job in first["jobs"] + second["jobs"])

    async with http.get(f"{mesh.upload_url}/api/v1/jobs?status=failed&limit=5") as response:
        failed = await response.json()
    assert failed["jobs"][0]["id"] == failing
    assert {job["status"] for job in failed["jobs"]} == {"failed"}

    for query in ("status=lost", "limit=0", "limit=x", "before=not-a-cursor"):
        async with http.get(f"{mesh.upload_url}/api/v1/jobs?{query}") as response:
            assert response.status == 400, query
            assert (await response.json())["error"]["code"] == "bad_request"


async def test_the_input_image_is_served_as_uploaded(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    original = photo(90, 60)
    response = await submit(http, mesh.upload_url, original, "[]")
    job_id = (await response.json())["id"]
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job_id}/input") as answer:
        assert answer.status == 200
        assert answer.content_type == "image/jpeg"
        assert await answer.read() == original


async def test_about_links_the_documents_and_consoles(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{mesh.upload_url}/api/v1/about") as response:
        about = await response.json()
        # Only our own scripts and styles, never framed.
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
    assert about["version"]
    assert about["links"]["fauxton"].startswith("http")
    assert about["links"]["rabbitmq_console"].startswith("http")
    assert about["limits"]["image_max_bytes"] == int(mesh.env.get("IMAGE_MAX_BYTES", 26214400))
    assert about["limits"]["pipeline_max_ops"] >= 1
    for document in ("openapi", "asyncapi"):
        async with http.get(f"{mesh.upload_url}{about['links'][document]}") as response:
            assert response.status == 200
            body = await response.json()
        assert body["info"]["version"] == about["version"]


async def test_any_upload_replica_streams_a_job_another_one_accepted(
    mesh: Mesh, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # A second upload replica on the same vhost: one live queue each, both see every event.
    replica = Mesh({**mesh.env, "UPLOAD_PORT": str(free_port())}, tmp_path)
    replica.start("upload")
    try:
        replica.wait_ready("upload")
        mesh.stop("imageproc_runner")
        try:
            response = await submit(http, mesh.upload_url, photo(200, 150), PIPELINE)
            job_id = (await response.json())["id"]
            stream = await http.get(f"{replica.upload_url}/api/v1/jobs/{job_id}/events")
            assert stream.status == 200
        finally:
            mesh.start("imageproc_runner")
        async with stream:
            events = await read_events(stream)
    finally:
        replica.stop("upload")
    assert [data["status"] for name, data in events if name == "status"] == [
        "queued",
        "processing",
        "succeeded",
    ]
    (processed,) = [data for name, data in events if data.get("type") == "image.processed"]
    assert len(processed["operations"]) == 2
