"""`Broker.queue_depth` against the real RabbitMQ: a fresh count every time, and memory
that does not grow with the number of calls (upload asks every second: a channel per
call left ~3 KB behind on the connection each time, aio-pika's callbacks and tasks)."""

from __future__ import annotations

import gc
import uuid
from typing import ClassVar

import pytest

from messaging import Broker, BrokerSettings
from messaging.events import Event, ExchangeKind
from messaging.topology import QueueSpec

pytestmark = pytest.mark.integration


class Counted(Event):
    """A test-only event with a routing key no mesh queue binds."""

    type: ClassVar[str] = "test.counted"
    exchange: ClassVar[ExchangeKind] = "events"


def _live(type_name: str) -> int:
    gc.collect()
    return sum(type(o).__name__ == type_name for o in gc.get_objects())


async def test_the_count_is_fresh_and_calls_leave_nothing_behind(
    broker_settings: BrokerSettings,
) -> None:
    spec = QueueSpec(f"test.depth.{uuid.uuid4().hex[:8]}", (("events", Counted.type),))
    async with Broker(broker_settings, service="tests") as broker:
        await broker.subscribe(spec, _never, Counted, prefetch=1)
        await broker.stop_consuming()  # declared and bound, nobody consuming
        assert await broker.queue_depth(spec.name) == (0, 0)
        await broker.publish(Counted(job_id="job-1"))
        await broker.publish(Counted(job_id="job-2"))
        assert (await broker.queue_depth(spec.name))[0] == 2  # not a cached declaration

        before = _live("OneShotCallback"), _live("Task")
        for _ in range(200):
            await broker.queue_depth(spec.name)
        after = _live("OneShotCallback"), _live("Task")
        assert after[0] - before[0] <= 2, f"channel callbacks kept: {before} -> {after}"
        assert after[1] - before[1] <= 2, f"tasks kept: {before} -> {after}"


async def test_a_missing_queue_fails_and_the_next_call_still_answers(
    broker: Broker,
) -> None:
    spec = QueueSpec(f"test.depth.{uuid.uuid4().hex[:8]}", (("events", Counted.type),))
    with pytest.raises(Exception, match="NOT_FOUND"):
        await broker.queue_depth(f"test.depth.missing.{uuid.uuid4().hex[:8]}")
    await broker.subscribe(spec, _never, Counted, prefetch=1)
    assert await broker.queue_depth(spec.name) == (0, 1)  # the closed channel replaced


async def _never(event: Counted, ctx: object) -> None:
    raise AssertionError("not consumed")
