"""A reused job's progress stream, as a client following it reads it after the fact:
every step with its time and service, the computation it took (the earlier job's
`image.processed`) at the time the runner reused it. `schemathesis run` saw that step
sent with `"time": null, "service": ""`."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.conftest import Mesh
from tests.e2e.helpers import photo, submit, wait_finished
from tests.e2e.test_progress import read_events
from upload.schemas import ProgressStep

pytestmark = pytest.mark.e2e

PIPELINE = json.dumps([{"op": "thumbnail", "width": 48}])


async def test_a_reused_jobs_steps_each_have_a_time_and_a_service(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    base, data = mesh.upload_url, photo(96, 64)
    jobs = []
    for _ in range(2):
        response = await submit(http, base, data, PIPELINE)
        assert response.status == 202, await response.text()
        jobs.append(await wait_finished(http, base, (await response.json())["id"]))
    first, again = jobs
    assert again["reused_from"] == first["id"], again
    async with http.get(f"{base}/api/v1/jobs/{again['id']}/events") as stream:
        events = await read_events(stream, timeout=20)
    steps = {data["type"]: data for name, data in events if name == "step"}
    for step in steps.values():
        ProgressStep.model_validate(step)
        assert isinstance(step["time"], str), step
        assert step["service"], step
    taken, reused = steps["image.processed"], steps["image.reused"]
    assert (taken["time"], taken["service"]) == (reused["time"], "imageproc_runner")
    assert taken["reused_from"] == first["id"]
    assert [steps[kind]["service"] for kind in ("upload.received", "image.uploaded")] == [
        "upload",
        "upload",
    ]
