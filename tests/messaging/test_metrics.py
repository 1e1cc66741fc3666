"""libs/messaging's metrics against the real RabbitMQ: queue wait, handling outcomes,
retries, parking, in-flight work and RPC latency on both sides."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from messaging import (
    Broker,
    BrokerSettings,
    MessageContext,
    PermanentError,
    RpcError,
    RpcMessage,
    RpcUnavailable,
)
from messaging.testing import free_route
from tests.messaging.test_broker import Pinged, _spec
from tests.waiting import async_wait_for

pytestmark = pytest.mark.integration


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def quick(broker_settings: BrokerSettings) -> AsyncIterator[Broker]:
    fast = broker_settings.model_copy(update={"amqp_retry_delays": (0.1,), "amqp_max_attempts": 3})
    async with Broker(fast, service="tests") as connected:
        yield connected


async def test_consumed_messages_are_timed_counted_and_retried_or_parked(quick: Broker) -> None:
    spec = _spec()
    queue = spec.name
    attempts: dict[int, int] = {}

    async def handle(event: Pinged, ctx: MessageContext) -> None:
        attempts[event.n] = attempts.get(event.n, 0) + 1
        assert _value("imagemesh_messages_in_flight", queue=queue) >= 1
        if event.n == 1 and attempts[1] == 1:
            raise ConnectionError("S3 is down")  # retried once, then acked
        if event.n == 2:
            raise PermanentError("never")  # parked at once

    await quick.subscribe(spec, handle, Pinged)
    await quick.publish(Pinged(job_id="job-m1", n=1))
    await quick.publish(Pinged(job_id="job-m2", n=2))

    def handled(outcome: str) -> float:
        return _value("imagemesh_message_handling_seconds_count", queue=queue, outcome=outcome)

    await async_wait_for(lambda: handled("acked") == 1 and handled("parked") == 1, timeout=15)
    assert handled("retry_scheduled") == 1
    assert _value("imagemesh_messages_retried_total", queue=queue) == 1
    assert _value("imagemesh_messages_parked_total", queue=queue, reason="permanent") == 1
    assert _value("imagemesh_queue_wait_seconds_count", queue=queue) == 3
    assert _value("imagemesh_queue_wait_seconds_sum", queue=queue) >= 0.1  # the back-off
    assert _value("imagemesh_messages_in_flight", queue=queue) == 0


async def test_rpc_latency_is_observed_by_route_and_outcome_on_both_sides(broker: Broker) -> None:
    route = free_route(f"imageproc.test.{uuid.uuid4().hex[:8]}")

    async def answer(request: RpcMessage) -> RpcMessage:
        if request.meta.get("fail"):
            raise RpcError("bad_request", "no")
        return RpcMessage({"ok": True})

    await broker.serve_raw(route, answer)
    await broker.call_raw(route, RpcMessage({}), timeout=10)
    with pytest.raises(RpcError):
        await broker.call_raw(route, RpcMessage({"fail": True}), timeout=10)
    unserved = free_route(f"imageproc.test.{uuid.uuid4().hex[:8]}")
    with pytest.raises(RpcUnavailable):
        await broker.call_raw(unserved, RpcMessage({}), timeout=10)

    client = "imagemesh_rpc_client_seconds_count"
    server = "imagemesh_rpc_server_seconds_count"
    assert _value(client, route=route.name, outcome="ok") == 1
    assert _value(client, route=route.name, outcome="error") == 1
    assert _value(client, route=unserved.name, outcome="unavailable") == 1
    # The server observes once its reply is published and the request acked: maybe after
    # the caller has the reply.
    await async_wait_for(
        lambda: (
            _value(server, route=route.name, outcome="ok") == 1
            and _value(server, route=route.name, outcome="error") == 1
            and _value("imagemesh_messages_in_flight", queue=route.queue_name) == 0
        ),
        timeout=10,
    )
