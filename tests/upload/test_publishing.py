"""A new job's intake as upload publishes it (`publishing.py`), for a submission and for a
retry, on the real `Broker` over an in-memory RabbitMQ (`messaging.testing`): the events
in order, each caused by the one before, the job remembered live; and what happens when
the broker refuses a publish: a refused intake is a 503 and the job is marked
not_accepted in the background, a refused `job.retried` leaves the 202 standing and is
published in the background (the retried job shows the link live at once)."""

from __future__ import annotations

import json
from typing import Any

import aio_pika
import pytest

from messaging import Envelope
from messaging.events import ClientInfo, ImageRef
from messaging.testing import MemoryBroker, MemoryServer
from tests.waiting import async_wait_for
from upload.errors import ApiError
from upload.live import LiveJobs
from upload.publishing import Intake, IntakePublisher

OLD = "0b1d2e3f-4a5b-4c6d-8e7f-a0b1c2d3e4f5"
NEW = "1c2d3e4f-5a6b-4d7e-8f90-b1c2d3e4f5a6"
IMAGE = ImageRef(
    bucket="imagemesh-input",
    key=f"sha256/{'a' * 64}.png",
    sha256="a" * 64,
    bytes=1234,
    format="png",
    width=20,
    height=10,
    content_type="image/png",
)
CLIENT = ClientInfo(address="203.0.113.7", user_agent="curl/8.5.0")


def _intake(retry_of: str | None = None) -> Intake:
    pipeline = [{"op": "grayscale"}]
    return Intake(NEW, IMAGE, pipeline, "cat.png", "alice", CLIENT, retry_of=retry_of)


class RefusingBroker(MemoryBroker):
    """upload's broker, refusing the first `times` publishes of the event type `refuse`
    (the broker gone for a moment)."""

    def __init__(self, server: MemoryServer, refuse: str = "", times: int = 0) -> None:
        super().__init__(server, service="upload")
        self.refuse, self.times = refuse, times

    async def connect(self) -> None:
        await super().connect()
        await self.provision()  # every queue, as a provisioned broker holds them

    async def _publish(self, exchange_name: str, message: aio_pika.Message, key: str) -> None:
        if key == self.refuse and self.times > 0:
            self.times -= 1
            raise ConnectionError("the broker went away")
        await super()._publish(exchange_name, message, key)


def _published(server: MemoryServer) -> list[tuple[Envelope, dict[str, Any]]]:
    return [
        (Envelope.from_message(message), json.loads(message.body))  # type: ignore[arg-type]
        for _, _, message in server.published
    ]


async def test_a_submission_publishes_its_intake_in_order_and_remembers_the_job() -> None:
    server, live = MemoryServer(), LiveJobs()
    async with RefusingBroker(server) as broker:
        await IntakePublisher(broker, live).publish(_intake())
    (received, received_data), (uploaded, uploaded_data) = _published(server)
    assert (received.type, uploaded.type) == ("upload.received", "image.uploaded")
    assert uploaded.causation_id == received.id
    assert received_data["client"] == CLIENT.model_dump()
    assert (received_data["sha256"], received_data["bytes"]) == (IMAGE.sha256, IMAGE.bytes)
    assert (uploaded_data["principal"], uploaded_data["retry_of"]) == ("alice", None)
    job = live.status(NEW)
    assert job is not None
    assert (job["status"], job["owner"]) == ("queued", "alice")


async def test_a_retry_marks_the_retried_job_caused_by_the_new_intake() -> None:
    server, live = MemoryServer(), LiveJobs()
    async with RefusingBroker(server) as broker:
        await IntakePublisher(broker, live).publish(_intake(retry_of=OLD))
    steps = _published(server)
    assert [envelope.type for envelope, _ in steps] == [
        "upload.received",
        "image.uploaded",
        "job.retried",
    ]
    (_, _), (uploaded, uploaded_data), (retried, retried_data) = steps
    assert uploaded_data["retry_of"] == OLD
    assert retried.causation_id == uploaded.id
    assert retried_data == {"job_id": OLD, "retry": NEW, "principal": "alice"}
    assert live.annotated({"id": OLD, "status": "failed"})["retried_by"] == [NEW]


async def test_a_refused_intake_is_503_and_the_job_is_marked_not_accepted() -> None:
    server, live = MemoryServer(), LiveJobs()
    async with RefusingBroker(server, refuse="image.uploaded", times=1) as broker:
        publisher = IntakePublisher(broker, live)
        with pytest.raises(ApiError) as refused:
            await publisher.publish(_intake())
        assert (refused.value.status, refused.value.code) == (503, "unavailable")

        def marked() -> dict[str, Any] | None:
            failed = [
                data for envelope, data in _published(server) if envelope.type == "job.failed"
            ]
            return failed[0] if failed else None

        failed = await async_wait_for(marked, timeout=5, what="job.failed not_accepted")
        await publisher.close()
    assert failed["error"]["code"] == "not_accepted"
    assert live.status(NEW) is None  # never remembered: it was not accepted


async def test_a_refused_retry_mark_is_published_later_and_shown_at_once() -> None:
    server, live = MemoryServer(), LiveJobs()
    async with RefusingBroker(server, refuse="job.retried", times=1) as broker:
        publisher = IntakePublisher(broker, live)
        await publisher.publish(_intake(retry_of=OLD))  # no 503: the new job is queued
        assert live.annotated({"id": OLD, "status": "failed"})["retried_by"] == [NEW]

        def published() -> list[Envelope]:
            return [e for e, _ in _published(server) if e.type == "job.retried"] or []

        (retried,) = await async_wait_for(published, timeout=5, what="job.retried published")
        await publisher.close()
    uploaded = next(e for e, _ in _published(server) if e.type == "image.uploaded")
    assert retried.causation_id == uploaded.id
