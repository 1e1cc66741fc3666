"""libs/messaging against the real RabbitMQ: publishing, consuming, parking, RPC."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import ClassVar

import pytest
import stack
from aio_pika.abc import AbstractIncomingMessage
from pydantic import SecretStr

from messaging import (
    Broker,
    BrokerSettings,
    Envelope,
    MessageContext,
    MessageTooLarge,
    PermanentError,
    RpcError,
    RpcMessage,
    RpcTimeout,
    RpcUnavailable,
    Unroutable,
    delivery_attempts,
    retry_delay,
)
from messaging.events import (
    ErrorInfo,
    Event,
    ExchangeKind,
    JobFailed,
    MessageParked,
    RetryScheduled,
)
from messaging.testing import free_route
from messaging.topology import QueueSpec
from tests.conftest import isolated_env, management, settings_from
from tests.waiting import async_wait_for

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


@pytest.fixture
async def quick(broker_settings: BrokerSettings) -> AsyncIterator[Broker]:
    """A broker with fast back-off: 0.2 s, then 0.4 s (repeating), 4 attempts."""
    fast = broker_settings.model_copy(
        update={"amqp_retry_delays": (0.2, 0.4), "amqp_max_attempts": 4}
    )
    async with Broker(fast, service="tests") as connected:
        yield connected


async def test_a_failing_handler_is_retried_with_back_off_until_it_succeeds(quick: Broker) -> None:
    spec = _spec()
    attempts: list[tuple[float, int]] = []
    started = time.monotonic()

    async def flaky(event: Pinged, ctx: MessageContext) -> None:
        attempts.append((time.monotonic() - started, len(attempts) + 1))
        if len(attempts) < 3:
            raise ConnectionError("S3 is down")

    await quick.subscribe(spec, flaky, Pinged)
    await quick.publish(Pinged(job_id="job-r", n=1))
    await async_wait_for(lambda: len(attempts) >= 3, timeout=10)
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.2
    assert gaps[1] >= 0.4
    parked, _ = await quick.queue_depth(spec.parking_name)
    assert parked == 0


async def test_a_handler_that_keeps_failing_is_parked_after_its_last_attempt(quick: Broker) -> None:
    spec = _spec()
    calls: list[int] = []
    told: list[str] = []

    async def explode(event: Pinged, ctx: MessageContext) -> None:
        calls.append(event.n)
        raise RuntimeError(f"boom {event.n}")

    async def on_park(event: Pinged, ctx: MessageContext, error: str) -> None:
        told.append(error)

    await quick.subscribe(spec, explode, Pinged, on_park=on_park)
    await quick.publish(Pinged(job_id="job-2", n=3))
    [parked] = await _parked(quick, spec, 1)
    assert len(calls) == 4
    assert told == ["gave up after 4 attempts: RuntimeError: boom 3"]
    assert parked.headers["x-imagemesh-error"] == told[0]
    assert parked.headers["x-imagemesh-queue"] == spec.name
    assert parked.correlation_id == "job-2"
    assert delivery_attempts(parked.headers, spec) == 3


async def test_retries_and_parking_are_recorded_as_provenance_events(
    broker_settings: BrokerSettings,
) -> None:
    # A provenance exchange of its own: the session's provenancedb must not record this
    # test's job (it would be a job without an intake for the completeness check).
    async with Broker(
        broker_settings.model_copy(
            update={
                "amqp_retry_delays": (0.2, 0.4),
                "amqp_max_attempts": 4,
                "amqp_exchange_prov": f"test.provenance.{uuid.uuid4().hex[:8]}",
            }
        ),
        service="tests",
    ) as quick:
        await _retries_and_parking_are_recorded(quick)


async def _retries_and_parking_are_recorded(quick: Broker) -> None:
    spec = _spec()
    attempts: list[int] = []
    recorded: list[tuple[Event, Envelope]] = []
    job_id = f"job-{uuid.uuid4().hex[:8]}"

    async def explode(event: Pinged, ctx: MessageContext) -> None:
        attempts.append(ctx.attempt)
        raise ConnectionError("S3 is down")

    async def record(event: Event, ctx: MessageContext) -> None:
        if event.job_id == job_id:
            recorded.append((event, ctx.envelope))

    witness = QueueSpec(
        f"test.{uuid.uuid4().hex[:8]}",
        (("provenance", RetryScheduled.type), ("provenance", MessageParked.type)),
    )
    recordable: tuple[type[Event], ...] = (RetryScheduled, MessageParked)
    await quick.subscribe(witness, record, recordable)
    await quick.subscribe(spec, explode, Pinged, record_retries=True)
    sent = await quick.publish(Pinged(job_id=job_id, n=5))
    await _parked(quick, spec, 1)
    await async_wait_for(lambda: len(recorded) >= 4, timeout=10)

    assert attempts == [1, 2, 3, 4]
    retries = sorted(
        (e for e, _ in recorded if isinstance(e, RetryScheduled)), key=lambda e: e.attempt
    )
    assert [(r.attempt, r.delay_seconds) for r in retries] == [(1, 0.2), (2, 0.4), (3, 0.4)]
    assert {r.queue for r in retries} == {spec.name}
    assert all("S3 is down" in r.error for r in retries)
    [parked] = [e for e, _ in recorded if isinstance(e, MessageParked)]
    assert (parked.attempts, parked.parking_queue) == (4, spec.parking_name)
    assert {envelope.causation_id for _, envelope in recorded} == {sent.id}
    # Ids derive from the message and the attempt: a redelivery records nothing twice.
    assert len({envelope.id for _, envelope in recorded}) == 4


async def test_a_permanent_error_is_parked_at_once(quick: Broker) -> None:
    spec = _spec()
    calls: list[int] = []

    async def refuse(event: Pinged, ctx: MessageContext) -> None:
        calls.append(1)
        raise PermanentError("cannot ever work")

    await quick.subscribe(spec, refuse, Pinged)
    await quick.publish(Pinged(job_id="job-p", n=1))
    [parked] = await _parked(quick, spec, 1)
    assert calls == [1]
    assert parked.headers["x-imagemesh-error"] == "permanent: cannot ever work"


async def test_an_oversized_message_is_parked_unread(
    broker: Broker, broker_settings: BrokerSettings
) -> None:
    spec = _spec()
    small = broker_settings.model_copy(update={"amqp_max_message_bytes": 1024})
    handled: list[Pinged] = []

    async def handle(event: Pinged, ctx: MessageContext) -> None:
        handled.append(event)

    async with Broker(small, service="tests") as strict:
        await strict.subscribe(spec, handle, Pinged)
        envelope = broker.envelope_for(Pinged(job_id="job-big", n=1))
        exchange = await (await broker.channel()).get_exchange(broker.settings.amqp_exchange_events)
        await exchange.publish(envelope.to_message(b" " * 2048), Pinged.type)
        [parked] = await _parked(broker, spec, 1)
    assert "too large" in str(parked.headers["x-imagemesh-error"])
    assert handled == []


async def test_an_rpc_request_nobody_can_answer_is_parked(broker: Broker) -> None:
    route = free_route(f"imageproc.test.noreply.{uuid.uuid4().hex[:8]}")

    async def echo(request: RpcMessage) -> RpcMessage:
        return request

    await broker.serve_raw(route, echo)
    exchange = await (await broker.channel()).get_exchange(route.exchange)
    await exchange.publish(RpcMessage({"a": 1}).to_message(), route.name)
    channel = await broker.channel()
    queue = await channel.declare_queue(route.parking_name, passive=True)
    parked = await async_wait_for(lambda: queue.get(fail=False, no_ack=True), timeout=10)
    assert "without reply_to" in str(parked.headers["x-imagemesh-error"])


def test_attempts_are_counted_from_x_death_of_the_queues_own_delay_queues() -> None:
    spec = QueueSpec("q", (("events", "x"),))
    headers = {
        "x-death": [
            {"queue": "q.delay.1s", "reason": "expired", "count": 2},
            {"queue": "q.delay.5s", "reason": "expired", "count": 1},
            {"queue": "other.delay.1s", "reason": "expired", "count": 7},
            {"queue": "q", "reason": "rejected", "count": 1},
        ]
    }
    assert delivery_attempts(headers, spec) == 3
    assert delivery_attempts({}, spec) == 0
    assert [retry_delay(n, (1.0, 5.0, 30.0)) for n in (1, 2, 3, 4, 9)] == [
        1.0,
        5.0,
        30.0,
        30.0,
        30.0,
    ]


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
            await broker.call_raw(
                free_route("imageproc.nobody"), RpcMessage({}, b"x" * 2000), timeout=1
            )


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
    route = free_route(f"imageproc.test.echo.{uuid.uuid4().hex[:8]}")

    async def echo(request: RpcMessage) -> RpcMessage:
        return RpcMessage({"size": len(request.payload), **request.meta}, request.payload[::-1])

    await broker.serve_raw(route, echo)
    reply = await broker.call_raw(route, RpcMessage({"k": "v"}, b"\x00\x01\x02"), timeout=10)
    assert reply.meta == {"size": 3, "k": "v"}
    assert reply.payload == b"\x02\x01\x00"


async def test_rpc_error_code_reaches_the_caller(broker: Broker) -> None:
    route = free_route(f"imageproc.test.fail.{uuid.uuid4().hex[:8]}")

    async def refuse(request: RpcMessage) -> RpcMessage:
        raise RpcError("invalid_pipeline", "operation 1 (thumbnail): width must be positive")

    await broker.serve_raw(route, refuse)
    with pytest.raises(RpcError) as caught:
        await broker.call_raw(route, RpcMessage({}), timeout=10)
    assert caught.value.code == "invalid_pipeline"
    assert "width must be positive" in caught.value.message


async def test_rpc_times_out_when_the_server_is_slow(broker: Broker) -> None:
    route = free_route(f"imageproc.test.slow.{uuid.uuid4().hex[:8]}")
    release = asyncio.Event()

    async def slow(request: RpcMessage) -> RpcMessage:
        await release.wait()
        return RpcMessage()

    await broker.serve_raw(route, slow)
    with pytest.raises(RpcTimeout):
        await broker.call_raw(route, RpcMessage({}), timeout=0.5)
    release.set()


async def test_rpc_to_a_route_nobody_serves_fails_at_once(broker: Broker) -> None:
    started = datetime.now(UTC)
    with pytest.raises(RpcUnavailable):
        await broker.call_raw(free_route("imageproc.test.nobody"), RpcMessage({}), timeout=30)
    assert (datetime.now(UTC) - started).total_seconds() < 10


async def test_a_publishing_channel_left_closed_is_replaced(broker: Broker) -> None:
    # aio-pika sometimes fails to restore a robust channel after a broker restart and leaves
    # it closed for good; closing it by hand puts the broker in exactly that state.
    spec = _spec()
    seen: list[int] = []

    async def handle(event: Pinged, ctx: MessageContext) -> None:
        seen.append(event.n)

    await broker.subscribe(spec, handle, Pinged)
    assert broker._publish_channel is not None
    await broker._publish_channel.close()
    await broker.publish(Pinged(job_id="job-heal", n=5))
    await async_wait_for(lambda: seen == [5], timeout=10)
    assert broker.is_healthy()


async def test_a_consumer_channel_left_closed_is_restarted(broker: Broker) -> None:
    spec = _spec()
    seen: list[int] = []

    async def handle(event: Pinged, ctx: MessageContext) -> None:
        seen.append(event.n)

    await broker.subscribe(spec, handle, Pinged)
    [subscription] = [s for s in broker._subscriptions if s.name == spec.name]
    assert subscription.channel is not None
    await subscription.channel.close()
    assert not broker.is_healthy()
    await broker.publish(Pinged(job_id="job-heal", n=6))
    await async_wait_for(lambda: seen == [6], timeout=20)
    assert broker.is_healthy()


async def test_an_rpc_call_while_the_broker_is_away_is_broker_unavailable(
    broker_settings: BrokerSettings,
) -> None:
    # Mid-reconnect the connection refuses new channels; a caller must get the RpcError a
    # service maps to 503, never an unexpected exception (a 500 at the API).
    async with Broker(broker_settings, service="test-away") as away:
        await away.connection.close()
        with pytest.raises(RpcError) as raised:
            await away.call_raw(free_route("imageproc.test.anything"), RpcMessage({}), timeout=5)
    assert raised.value.code == "broker_unavailable"


async def test_a_live_view_skips_an_event_from_a_sender_that_may_not_publish_it(
    stack_config: dict[str, str],
) -> None:
    """A watcher that trusts no operator takes `job.failed` from upload's broker user, and
    skips the same event type from the administrator (for it, nobody)."""
    # A vhost of its own: on the session's, the session mesh's provenancedb would record
    # these two failures, jobs without an intake, and the completeness check
    # (tests/e2e/test_provenance.py) would rightly report them.
    with isolated_env(stack_config, "liveview") as env:
        stack.provision_service_users(stack.Config.of(env))
        admin: BrokerSettings = settings_from(env, BrokerSettings)
        user, password = stack.service_rabbit_user(stack.Config.of(env), "upload")
        as_upload = admin.model_copy(
            update={
                "rabbitmq_user": user,
                "rabbitmq_password": SecretStr(password),
                "amqp_declare_exchanges": False,
            }
        )
        strict = admin.model_copy(update={"amqp_operator_users": ()})
        seen: list[str] = []
        forged, genuine = f"job-{uuid.uuid4().hex[:8]}", f"job-{uuid.uuid4().hex[:8]}"
        async with (
            Broker(admin, service="tests") as broker,
            Broker(strict, service="tests") as watcher,
        ):
            await watcher.watch(lambda envelope, event: seen.append(event.job_id))
            failed = ErrorInfo(code="x", message="y")
            await broker.publish(JobFailed(job_id=forged, error=failed))  # confirmed first
            async with Broker(as_upload, service="upload") as upload:
                await upload.publish(JobFailed(job_id=genuine, error=failed))
            await async_wait_for(lambda: genuine in seen, timeout=10)
    assert forged not in seen
