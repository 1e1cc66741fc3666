"""`Broker.subscribe(..., dispatch=...)` against the real RabbitMQ: deliveries held by a
scheduler of the consumer's own, handled (ack after work) or handed back unhandled."""

from __future__ import annotations

import uuid
from typing import ClassVar

import pytest

from messaging import Broker, BrokerSettings, Delivery, MessageContext
from messaging.events import Event, ExchangeKind
from messaging.topology import QueueSpec
from tests.waiting import async_wait_for

pytestmark = pytest.mark.integration


class Queued(Event):
    """A test-only event with a routing key no mesh queue binds."""

    type: ClassVar[str] = "test.queued"
    exchange: ClassVar[ExchangeKind] = "events"
    n: int


def _spec() -> QueueSpec:
    return QueueSpec(f"test.dispatch.{uuid.uuid4().hex[:8]}", (("events", Queued.type),))


async def _ready(broker: Broker, name: str) -> int:
    ready, _ = await broker.queue_depth(name)
    return ready


async def test_held_deliveries_wait_for_their_dispatcher_and_are_acked_after_work(
    broker: Broker, broker_settings: BrokerSettings
) -> None:
    spec = _spec()
    handled: list[int] = []
    held: list[Delivery[Queued]] = []

    async def handle(event: Queued, ctx: MessageContext) -> None:
        handled.append(event.n)

    async with Broker(broker_settings, service="tests") as consumer:
        await consumer.subscribe(spec, handle, Queued, prefetch=10, dispatch=held.append)
        for n in range(5):
            await broker.publish(Queued(job_id=f"job-{n}", n=n))
        await async_wait_for(lambda: len(held) == 5, timeout=10)
        assert [d.event.n for d in held] == [0, 1, 2, 3, 4]  # the broker's order
        assert handled == []  # held, not handled
        assert not any(d.stale for d in held)
        for delivery in reversed(held):  # the dispatcher's order, not the queue's
            await delivery.handle()
        assert handled == [4, 3, 2, 1, 0]
        await consumer.stop_consuming()
    # Closing the connection hands back whatever was not acked: nothing was.
    assert await _ready(broker, spec.name) == 0
    parking, _ = await broker.queue_depth(spec.parking_name)
    assert parking == 0


async def test_a_delivery_handed_back_again_and_again_is_neither_an_attempt_nor_parked(
    broker: Broker, broker_settings: BrokerSettings
) -> None:
    """More hand-backs than the quorum queue's delivery limit (5): a nack each time would
    have parked the message; a hand-back is a copy at the tail and an ack."""
    spec = _spec()
    attempts: list[int] = []
    held: list[Delivery[Queued]] = []

    async def handle(event: Queued, ctx: MessageContext) -> None:
        attempts.append(ctx.attempt)

    async with Broker(broker_settings, service="tests") as consumer:
        await consumer.subscribe(spec, handle, Queued, prefetch=4, dispatch=held.append)
        await broker.publish(Queued(job_id="job-1", n=1))
        for round_ in range(1, spec.delivery_limit + 3):
            await async_wait_for(lambda r=round_: len(held) == r, timeout=10)  # type: ignore[misc]
            if round_ < spec.delivery_limit + 2:
                await held[-1].release("held_too_long")
        assert len({d.envelope.id for d in held}) == 1  # the same event every time
        await held[-1].handle()
        assert attempts == [1]
    assert await _ready(broker, spec.name) == 0
    parking, _ = await broker.queue_depth(spec.parking_name)
    assert parking == 0


async def test_stop_consuming_ends_deliveries(
    broker: Broker, broker_settings: BrokerSettings
) -> None:
    spec = _spec()
    held: list[Delivery[Queued]] = []

    async def handle(event: Queued, ctx: MessageContext) -> None:
        return None

    async with Broker(broker_settings, service="tests") as consumer:
        await consumer.subscribe(spec, handle, Queued, prefetch=4, dispatch=held.append)
        await broker.publish(Queued(job_id="job-1", n=1))
        await async_wait_for(lambda: len(held) == 1, timeout=10)
        await consumer.stop_consuming()
        await broker.publish(Queued(job_id="job-2", n=2))
        await async_wait_for(lambda: _ready(broker, spec.name), timeout=10)
        assert len(held) == 1
        await held[0].release("shutdown")  # released after the cancel: stays in the queue
        assert await _ready(broker, spec.name) == 2
