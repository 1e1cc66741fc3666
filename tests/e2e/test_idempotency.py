"""A redelivered upload event creates no second output and no second provenance document."""

from __future__ import annotations

import json
from collections import Counter

import aiohttp
import pytest

from messaging import Broker, Envelope
from messaging.events import ImageUploaded
from tests.conftest import Mesh, complete_trail, job_documents
from tests.e2e.helpers import photo, submit, wait_finished
from tests.waiting import async_wait_for

pytestmark = pytest.mark.e2e


async def test_redelivered_upload_is_a_no_op(
    mesh: Mesh, broker: Broker, http: aiohttp.ClientSession
) -> None:
    response = await submit(
        http, mesh.upload_url, photo(300, 200), json.dumps([{"op": "grayscale"}])
    )
    job = await wait_finished(http, mesh.upload_url, (await response.json())["id"])
    assert job["status"] == "succeeded"
    docs = await async_wait_for(lambda: complete_trail(mesh.env, job["id"]))
    uploaded = next(d for d in docs if d["type"] == ImageUploaded.type)
    processed = next(d for d in docs if d["type"] == "image.processed")

    # Publish the very same event (same id) again, as a broker redelivery would.
    envelope = Envelope(
        id=uploaded["_id"],
        type=ImageUploaded.type,
        source=uploaded["source"],
        correlation_id=job["id"],
        subject=job["id"],
    )
    await broker.publish(ImageUploaded.model_validate(uploaded["data"]), envelope=envelope)

    def processed_again() -> bool:
        # The runner redid the work and provenancedb refused the repeated documents.
        lines = [
            json.loads(line)
            for line in mesh.log_tail("provenancedb", 400).splitlines()
            if line.startswith("{")
        ]
        return any(
            line.get("event") == "provenance_duplicate" and line.get("doc_id") == processed["_id"]
            for line in lines
        )

    await async_wait_for(processed_again, timeout=30)
    after = job_documents(mesh.env, job["id"])
    assert Counter(d["_id"] for d in after) == Counter(d["_id"] for d in docs)
    parked, _ = await broker.queue_depth("imageproc_runner.image-uploaded.parking")
    assert parked == 0
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job['id']}") as again:
        assert (await again.json())["output"] == job["output"]
