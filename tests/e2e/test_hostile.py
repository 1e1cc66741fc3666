"""The hostile corpus through the public API: refused at upload with its documented status,
or processed to its documented outcome; no worker crash, nothing parked or lost."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.conftest import Mesh, queue_counts
from tests.e2e.helpers import submit, wait_finished
from tests.hostile import corpus
from tests.waiting import async_wait_for

pytestmark = pytest.mark.e2e


async def test_every_hostile_input_ends_as_documented(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    pipeline = json.dumps([{"op": "thumbnail", "width": 64}])
    outcomes: dict[str, str] = {}
    for item in corpus():
        response = await submit(
            http, mesh.upload_url, item.data, pipeline, filename=f"{item.name}.jpg"
        )
        if item.upload is not None:
            body = await response.json()
            assert (response.status, body["error"]["code"]) == item.upload, item.name
            outcomes[item.name] = "refused"
            continue
        assert response.status == 202, (item.name, await response.text())
        job = await wait_finished(http, mesh.upload_url, (await response.json())["id"])
        outcome = job["status"] if job["status"] == "succeeded" else job["error"]["code"]
        assert outcome == item.job, (item.name, job)
        outcomes[item.name] = outcome
    assert len(outcomes) == len(corpus())
    assert mesh.processes["imageproc"].poll() is None, "imageproc crashed"

    def drained() -> bool:
        return all(count == 0 for count in queue_counts(mesh.env).values())

    await async_wait_for(drained, timeout=20)
