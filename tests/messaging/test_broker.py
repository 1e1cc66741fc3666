"""libs/messaging against the real RabbitMQ: publishing, consuming, parking, RPC."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import ClassVar

import pytest
from aio_pika.abc import AbstractIncomingMessage

from messaging import (
    Broker,
    BrokerSettings,
    Envelope,
    MessageContext,
    MessageTooLarge,
    RpcError,
    RpcMessage,
    RpcTimeout,
    RpcUnavailable,
    Unroutable,
)
from messaging.events import ErrorInfo, Event, ExchangeKind, JobFailed
from messaging.topology import QueueSpec, RpcRoute
from tests.conftest import async_wait_for, management

pytestmark = pytest.mark.integration


class Pinged(Event):
    """A test-only event with a routing key no mesh queue binds."""

    type: ClassVar[str] = "test.pinged"
    exchange: ClassVar[ExchangeKind] = "events"
    n: int


class Orphaned(Event):
    """No queue ever binds this type."""

    type: ClassVar[str] = "test.orphaned"
    exchange: ClassVar[ExchangeKind] = "events"


def _spec(routing_key: str = Pinged.type) -> QueueSpec:
    return QueueSpec(f"test.{uuid.uuid4().hex[:8]}", (("events", routing_key),))


async def _parked(broker: Broker, spec: QueueSpec, count: int) -> list[AbstractIncomingMessage]:
    channel = await broker.channel()
    queue = await channel.declare_queue(spec.parking_name, passive=True)
    got: list[AbstractIncomingMessage] = []

    async def take() -> bool:
        message = await queue.get(fail=False, no_ack=True)
        if message is not None:
            got.append(message)
        return len(got) >= count

    await async_wait_for(take, timeout=10)
    await channel.close()
    return got


async def test_publish_consume_carries_envelope_and_follow_ups_are_deterministic(
    broker: Broker,
) -> None:
    spec = _spec()
    seen: list[tuple[Pinged, Envelope]] = []
    follow_ups: list[Envelope] = []

    async def handle(event: Pinged, ctx: MessageContext) -> None:
        seen.append((event, ctx.envelope))
        failed = JobFailed(job_id=event.job_id, error=ErrorInfo(code="x", message="y"))
        follow_ups.append(broker.envelope_for(failed, cause=ctx.envelope))

    await broker.subscribe(spec, handle, Pinged)
    sent = await broker.publish(Pinged(job_id="job-1", n=7))
    await async_wait_for(lambda: seen, timeout=10)
    event, envelope = seen[0]
    assert event.n == 7
    assert envelope.id == sent.id
    assert envelope.correlation_id == "job-1"
    assert envelope.source == "/imagemesh/tests"
    assert follow_ups[0].causation_id == sent.id
    assert (
        follow_ups[0].id
        == broker.envelope_for(
            JobFailed(job_id="job-1", error=ErrorInfo(code="x", message="y")), cause=sent
        ).id
    )


async def test_handler_failure_parks_message_with_error(broker: Broker) -> None:
    spec = _spec()

    async def explode(event: Pinged, ctx: MessageContext) -> None:
        raise RuntimeError(f"boom {event.n}")

    await broker.subscribe(spec, explode, Pinged)
    await broker.publish(Pinged(job_id="job-2", n=3))
    [parked] = await _parked(broker, spec, 1)
    assert parked.headers["x-imagemesh-error"] == "RuntimeError: boom 3"
    assert parked.headers["x-imagemesh-queue"] == spec.name
    assert parked.correlation_id == "job-2"


async def test_malformed_message_is_parked_not_dropped(broker: Broker) -> None:
    spec = _spec()
    handled: list[Pinged] = []

    async def handle(event: Pinged, ctx: MessageContext) -> None:
        handled.append(event)

    await broker.subscribe(spec, handle, Pinged)
    envelope = broker.envelope_for(Pinged(job_id="job-3", n=1))
    exchange = await (await broker.channel()).get_exchange(broker.settings.amqp_exchange_events)
    await exchange.publish(
        envelope.to_message(b'{"job_id": "job-3", "n": "not a number"}'), Pinged.type
    )
    [parked] = await _parked(broker, spec, 1)
    assert "malformed" in str(parked.headers["x-imagemesh-error"])
    assert handled == []


async def test_unroutable_publish_is_an_error(broker_settings: BrokerSettings) -> None:
    # provenancedb binds "#" on the mesh's exchanges; a fresh exchange has no bindings.
    lonely = broker_settings.model_copy(update={"amqp_exchange_events": f"test.{uuid.uuid4().hex}"})
    async with Broker(lonely, service="tests") as broker:
        with pytest.raises(Unroutable):
            await broker.publish(Orphaned(job_id="job-4"))


async def test_oversize_publish_is_refused_before_sending(broker_settings: BrokerSettings) -> None:
    small = broker_settings.model_copy(update={"amqp_max_message_bytes": 1024})
    async with Broker(small, service="tests") as broker:
        with pytest.raises(MessageTooLarge, match="1024 byte limit"):
            await broker.call(RpcRoute("nobody"), RpcMessage({}, b"x" * 2000), timeout=1)


async def test_work_queue_is_a_durable_quorum_queue_with_limit_and_parking(
    broker: Broker, test_env: dict[str, str]
) -> None:
    spec = _spec()

    async def handle(event: Pinged, ctx: MessageContext) -> None:
        return None

    await broker.subscribe(spec, handle, Pinged)
    info = management(test_env, "GET", f"/api/queues/{test_env['RABBITMQ_VHOST']}/{spec.name}")
    assert info["durable"] is True
    assert info["arguments"]["x-queue-type"] == "quorum"
    assert info["arguments"]["x-delivery-limit"] == spec.delivery_limit
    assert info["arguments"]["x-dead-letter-exchange"] == "imagemesh.dead-letter"
    exchange = management(
        test_env, "GET", f"/api/exchanges/{test_env['RABBITMQ_VHOST']}/imagemesh.events"
    )
    assert exchange["durable"] is True
    assert exchange["type"] == "topic"


async def test_rpc_round_trip_with_binary_payload(broker: Broker) -> None:
    route = RpcRoute(f"test.echo.{uuid.uuid4().hex[:8]}")

    async def echo(request: RpcMessage) -> RpcMessage:
        return RpcMessage({"size": len(request.payload), **request.meta}, request.payload[::-1])

    await broker.serve(route, echo)
    reply = await broker.call(route, RpcMessage({"k": "v"}, b"\x00\x01\x02"), timeout=10)
    assert reply.meta == {"size": 3, "k": "v"}
    assert reply.payload == b"\x02\x01\x00"


async def test_rpc_error_code_reaches_the_caller(broker: Broker) -> None:
    route = RpcRoute(f"test.fail.{uuid.uuid4().hex[:8]}")

    async def refuse(request: RpcMessage) -> RpcMessage:
        raise RpcError("invalid_pipeline", "operation 1 (thumbnail): width must be positive")

    await broker.serve(route, refuse)
    with pytest.raises(RpcError) as caught:
        await broker.call(route, RpcMessage({}), timeout=10)
    assert caught.value.code == "invalid_pipeline"
    assert "width must be positive" in caught.value.message


async def test_rpc_times_out_when_the_server_is_slow(broker: Broker) -> None:
    route = RpcRoute(f"test.slow.{uuid.uuid4().hex[:8]}")
    release = asyncio.Event()

    async def slow(request: RpcMessage) -> RpcMessage:
        await release.wait()
        return RpcMessage()

    await broker.serve(route, slow)
    with pytest.raises(RpcTimeout):
        await broker.call(route, RpcMessage({}), timeout=0.5)
    release.set()


async def test_rpc_to_a_route_nobody_serves_fails_at_once(broker: Broker) -> None:
    started = datetime.now(UTC)
    with pytest.raises(RpcUnavailable):
        await broker.call(RpcRoute("test.nobody"), RpcMessage({}), timeout=30)
    assert (datetime.now(UTC) - started).total_seconds() < 10
