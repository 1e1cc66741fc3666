"""Fault 7: duplicate delivery. The same `image.uploaded` event (same id) is published
twice more while the original is still being worked on, as a broker redelivery or a
publisher retry would: one output object, one result, one provenance document per event."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from messaging import Broker, BrokerSettings, Envelope
from messaging.events import ImageUploaded
from tests.conftest import Mesh, job_documents, settings_from
from tests.faults.harness import Batch
from tests.waiting import async_wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

DUPLICATED = 8


async def test_same_upload_event_delivered_three_times(
    fault_mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    batch = Batch(fault_mesh, http)
    settings: BrokerSettings = settings_from(fault_mesh.env, BrokerSettings)
    async with Broker(settings, service="fault-tests") as broker:

        async def duplicate(job_id: str) -> None:
            # Recorded before the 202: the event is in provenance as soon as we have the id.
            docs = await async_wait_for(
                lambda: [
                    d
                    for d in job_documents(fault_mesh.env, job_id)
                    if d["type"] == "image.uploaded"
                ],
                timeout=10,
                interval=0.2,
                what=f"image.uploaded document of {job_id}",
            )
            uploaded = docs[0]
            envelope = Envelope(
                id=uploaded["_id"],
                type=ImageUploaded.type,
                source=uploaded["source"],
                correlation_id=job_id,
                subject=job_id,
            )
            event = ImageUploaded.model_validate(uploaded["data"])
            await asyncio.gather(
                broker.publish(event, envelope=envelope), broker.publish(event, envelope=envelope)
            )

        first = await batch.submit(DUPLICATED)
        await asyncio.gather(*(duplicate(job_id) for job_id in first))
        await batch.submit(30 - DUPLICATED, interval=0.05)
        await batch.wait_terminal()
    # verify() waits until the runner's queue is empty and nothing is unacked: the copies
    # were handled (not merely left waiting), and none was parked.
    await batch.verify()
    print(batch.summary())
