"""messaging.testing: the real Broker on an in-memory RabbitMQ, without any server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from messaging import (
    Delivery,
    MessageContext,
    PermanentError,
    RpcCall,
    RpcError,
    RpcMessage,
    RpcUnavailable,
    topology,
)
from messaging.contracts import EngineReply, EngineRequest, JobCountsRequest, RunReply, RunRequest
from messaging.events import (
    Event,
    ImageRef,
    ImageUploaded,
    JobFailed,
    MessageParked,
    RetryScheduled,
)
from messaging.testing import FreeForm, MemoryBroker, MemoryServer, free_route, topic_matches

SHA = "ab" * 32


def uploaded(job_id: str = "job-1") -> ImageUploaded:
    """A job's `image.uploaded` (its input is not stored anywhere: nothing reads it)."""
    image = ImageRef(
        bucket="in",
        key="k",
        sha256=SHA,
        bytes=5,
        format="png",
        width=1,
        height=1,
        content_type="image/png",
    )
    return ImageUploaded(job_id=job_id, input=image, pipeline=[], created_at=datetime.now(UTC))


async def engine(request: EngineRequest, call: RpcCall) -> EngineReply:
    """imageproc.engine as a test's imageproc answers it."""
    return EngineReply(engine="e")


@pytest.fixture
def server() -> MemoryServer:
    return MemoryServer()


async def test_a_published_event_reaches_the_subscribed_handler(server: MemoryServer) -> None:
    seen: list[tuple[str, str | None, int]] = []

    async def handle(event: ImageUploaded, ctx: MessageContext) -> None:
        seen.append((event.job_id, ctx.envelope.source, ctx.attempt))

    async with (
        MemoryBroker(server, service="imageproc_runner") as runner,
        MemoryBroker(server, service="upload") as upload,
    ):
        await runner.subscribe(topology.RUNNER_UPLOADS, handle, ImageUploaded)
        envelope = await upload.publish(uploaded())
        await server.settled()
    assert seen == [("job-1", "/imagemesh/upload", 1)]
    assert envelope.correlation_id == "job-1"


async def test_an_event_from_a_service_that_does_not_publish_it_is_parked(
    server: MemoryServer,
) -> None:
    handled: list[str] = []

    async def handle(event: ImageUploaded, ctx: MessageContext) -> None:
        handled.append(event.job_id)

    async with (
        MemoryBroker(server, service="imageproc_runner") as runner,
        MemoryBroker(server, service="imageproc") as imageproc,
    ):
        await runner.subscribe(topology.RUNNER_UPLOADS, handle, ImageUploaded)
        await imageproc.publish(uploaded())  # only upload publishes image.uploaded
        await server.settled()
    assert handled == []
    [parked] = server.waiting(topology.RUNNER_UPLOADS.parking_name)
    assert "forbidden sender" in str((parked.headers or {})["x-imagemesh-error"])


async def test_a_failing_handler_is_retried_through_the_delay_queues_then_parked(
    server: MemoryServer,
) -> None:
    attempts: list[int] = []
    records: list[str] = []

    async def fail(event: ImageUploaded, ctx: MessageContext) -> None:
        attempts.append(ctx.attempt)
        raise RuntimeError("down")

    async def record(event: Event, ctx: MessageContext) -> None:
        records.append(event.type)

    async with (
        MemoryBroker(server, service="imageproc_runner") as runner,
        MemoryBroker(server, service="upload") as upload,
        MemoryBroker(server, service="provenancedb") as provenancedb,
    ):
        await provenancedb.subscribe(
            topology.PROVENANCE_EVENTS, record, (RetryScheduled, MessageParked, ImageUploaded)
        )
        await runner.subscribe(topology.RUNNER_UPLOADS, fail, ImageUploaded, record_retries=True)
        await upload.publish(uploaded())
        await server.settled()
    attempts_allowed = runner.settings.amqp_max_attempts
    assert attempts == list(range(1, attempts_allowed + 1))
    assert records.count("job.retry-scheduled") == attempts_allowed - 1
    assert records.count("job.parked") == 1
    assert len(server.waiting(topology.RUNNER_UPLOADS.parking_name)) == 1


async def test_a_permanent_error_parks_at_once(server: MemoryServer) -> None:
    async def refuse(event: ImageUploaded, ctx: MessageContext) -> None:
        raise PermanentError("never")

    async with (
        MemoryBroker(server, service="imageproc_runner") as runner,
        MemoryBroker(server, service="upload") as upload,
    ):
        await runner.subscribe(topology.RUNNER_UPLOADS, refuse, ImageUploaded)
        await upload.publish(uploaded())
        await server.settled()
    [parked] = server.waiting(topology.RUNNER_UPLOADS.parking_name)
    assert (parked.headers or {})["x-imagemesh-error"] == "permanent: never"


async def test_a_typed_rpc_round_trip_carries_models_and_raw_bytes(server: MemoryServer) -> None:
    callers: list[str | None] = []

    async def run(request: RunRequest, call: RpcCall) -> tuple[RunReply, bytes]:
        callers.append(call.caller)
        reply = RunReply(format="png", width=1, height=2, engine=str(request.pipeline))
        return reply, call.payload[::-1]

    async with (
        MemoryBroker(server, service="imageproc") as imageproc,
        MemoryBroker(server, service="imageproc_runner") as runner,
    ):
        await imageproc.serve(topology.IMAGEPROC_RUN, run)
        reply, payload = await runner.call(
            topology.IMAGEPROC_RUN,
            RunRequest(pipeline=[{"op": "grayscale"}]),
            payload=b"\x00\x01\xff",
            timeout=5,
            job_id="job-1",
        )
    assert isinstance(reply, RunReply)
    assert (reply.format, reply.width, reply.height) == ("png", 1, 2)
    assert reply.engine == "[{'op': 'grayscale'}]"
    assert payload == b"\xff\x01\x00"
    assert callers == ["imageproc_runner"]


async def test_a_request_that_is_not_the_routes_model_is_a_bad_request(
    server: MemoryServer,
) -> None:
    async with (
        MemoryBroker(server, service="imageproc") as imageproc,
        MemoryBroker(server, service="imageproc_runner") as runner,
    ):
        await imageproc.serve(topology.IMAGEPROC_ENGINE, engine)
        route = topology.IMAGEPROC_ENGINE
        for request in (RpcMessage({"pipeline": []}), RpcMessage({}, b"bytes")):
            with pytest.raises(RpcError) as refused:
                await runner.call_raw(route, request, timeout=5)
            assert refused.value.code == "bad_request"
        reply, _ = await runner.call(route, EngineRequest(), timeout=5)
        assert reply.engine == "e"


async def test_a_reply_that_is_not_the_routes_model_is_malformed(server: MemoryServer) -> None:
    async def wrong(request: RpcMessage) -> RpcMessage:
        return RpcMessage({"queued": "many"})

    async with (
        MemoryBroker(server, service="provenancedb") as provenancedb,
        MemoryBroker(server, service="upload") as upload,
    ):
        await provenancedb.serve_raw(topology.PROVENANCE_JOB_COUNTS, wrong)
        before = _client_calls(topology.PROVENANCE_JOB_COUNTS.name, "error")
        with pytest.raises(RpcError) as refused:
            await upload.call(
                topology.PROVENANCE_JOB_COUNTS, JobCountsRequest(owner="alice"), timeout=5
            )
    assert refused.value.code == "malformed_reply"
    # The caller's metrics count it as the error it is, not as an answer.
    assert _client_calls(topology.PROVENANCE_JOB_COUNTS.name, "error") == before + 1


def _client_calls(route: str, outcome: str) -> float:
    labels = {"route": route, "outcome": outcome}
    return REGISTRY.get_sample_value("imagemesh_rpc_client_seconds_count", labels) or 0.0


async def test_a_caller_the_route_does_not_name_is_forbidden(server: MemoryServer) -> None:
    async with (
        MemoryBroker(server, service="imageproc") as imageproc,
        MemoryBroker(server, service="upload") as upload,
    ):
        await imageproc.serve(topology.IMAGEPROC_ENGINE, engine)
        with pytest.raises(RpcError) as refused:
            await upload.call(topology.IMAGEPROC_ENGINE, EngineRequest(), timeout=5)
    assert refused.value.code == "forbidden"


async def test_unserved_routes_fail_at_once_and_errors_keep_their_code(
    server: MemoryServer,
) -> None:
    route = free_route("imageproc.test.fails", ("imageproc_runner",))

    async def fail(request: FreeForm, call: RpcCall) -> FreeForm:
        raise RpcError("undecodable", "not an image")

    async with (
        MemoryBroker(server, service="imageproc") as imageproc,
        MemoryBroker(server, service="imageproc_runner") as runner,
    ):
        with pytest.raises(RpcUnavailable):
            await runner.call(route, FreeForm(), timeout=5)
        await imageproc.serve(route, fail)
        with pytest.raises(RpcError) as refused:
            await runner.call(route, FreeForm(), timeout=5)
    assert (refused.value.code, refused.value.message) == ("undecodable", "not an image")


async def test_malformed_messages_are_parked(server: MemoryServer) -> None:
    """Not JSON on a work queue: parked like the real broker parks it."""
    async with (
        MemoryBroker(server, service="imageproc_runner") as runner,
        MemoryBroker(server, service="upload") as upload,
    ):

        async def handle(event: ImageUploaded, ctx: MessageContext) -> None:
            raise AssertionError("a malformed message reached the handler")

        await runner.subscribe(topology.RUNNER_UPLOADS, handle, ImageUploaded)
        envelope = upload.envelope_for(uploaded())
        message = envelope.to_message(b"{not json")
        await upload._publish(upload.settings.amqp_exchange_events, message, "image.uploaded")
        await server.settled()
    [parked] = server.waiting(topology.RUNNER_UPLOADS.parking_name)
    assert str((parked.headers or {})["x-imagemesh-error"]).startswith("malformed")


async def test_a_failed_job_event_reaches_every_bound_queue(server: MemoryServer) -> None:
    got: list[str] = []

    async def record(event: JobFailed, ctx: MessageContext) -> None:
        got.append(event.error.code)

    async with (
        MemoryBroker(server, service="provenancedb") as provenancedb,
        MemoryBroker(server, service="imageproc_runner") as runner,
    ):
        await provenancedb.subscribe(topology.PROVENANCE_EVENTS, record, JobFailed)
        failed = JobFailed(job_id="j", error={"code": "undecodable", "message": "no"})
        await runner.publish(failed)
        await server.settled()
        assert await provenancedb.queue_depth(topology.PROVENANCE_EVENTS.name) == (0, 1)
    assert got == ["undecodable"]


def test_topic_patterns_match_as_amqp_says() -> None:
    assert topic_matches("#", "image.uploaded")
    assert topic_matches("image.*", "image.uploaded")
    assert not topic_matches("image.*", "image.uploaded.x")
    assert topic_matches("image.#", "image")
    assert not topic_matches("job.failed", "image.uploaded")


async def test_a_watcher_sees_every_event_and_a_dispatcher_may_hand_one_back(
    server: MemoryServer,
) -> None:
    """What upload's live view and the runner's fair dispatcher use: `watch`, and
    `subscribe(dispatch=...)` with `Delivery.release` (back to the tail of the queue)."""
    watched: list[str] = []
    held: list[Delivery[ImageUploaded]] = []
    handled: list[str] = []

    async def handle(event: ImageUploaded, ctx: MessageContext) -> None:
        handled.append(event.job_id)

    async with (
        MemoryBroker(server, service="upload") as upload,
        MemoryBroker(server, service="imageproc_runner") as runner,
    ):
        await upload.watch(lambda envelope, event: watched.append(event.job_id))
        await runner.subscribe(topology.RUNNER_UPLOADS, handle, ImageUploaded, dispatch=held.append)
        await upload.publish(uploaded("job-1"))
        await server.settled()
        assert [delivery.event.job_id for delivery in held] == ["job-1"]
        await held.pop().release("held_too_long")
        await server.settled()
        assert [delivery.event.job_id for delivery in held] == ["job-1"]  # once more
        await held.pop().handle()
        await server.settled()
    assert watched == ["job-1"]
    assert handled == ["job-1"]
