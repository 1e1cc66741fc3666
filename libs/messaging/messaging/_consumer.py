"""Handling one delivered message: parse, handle, then ack, retry later or park."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import structlog
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError
from pydantic import ValidationError

from . import _metrics, topology
from ._context import MessageContext, PermanentError, Publisher
from ._envelope import Envelope, EnvelopeError
from ._identity import Identities, describe, may_send
from .events import Event, MessageParked, RetryScheduled
from .logs import message_context

log = structlog.get_logger("messaging")

E = TypeVar("E", bound=Event)
T = TypeVar("T")
Handler = Callable[[E, MessageContext], Awaitable[None]]
ParkHandler = Callable[[E, MessageContext, str], Awaitable[None]]


def delivery_attempts(headers: Mapping[str, Any] | None, spec: topology.QueueSpec) -> int:
    """How many times the message has already been tried, from the broker's `x-death`:
    each return from one of the queue's delay queues counts one failed attempt."""
    prefix = f"{spec.name}.delay."
    deaths = (headers or {}).get("x-death")
    if not isinstance(deaths, list):
        return 0  # absent, or not what the broker writes: forged headers count nothing
    return sum(
        death["count"]
        for death in deaths
        if isinstance(death, Mapping)
        and type(death.get("count")) is int
        and death["count"] > 0
        and _text(death.get("reason")) == "expired"
        and _text(death.get("queue")).startswith(prefix)
    )


def delivery_count(headers: Mapping[str, Any] | None) -> int:
    """How many times the broker got the message back unacknowledged (quorum queues count
    it in `x-delivery-count`; handing back through `Broker.hand_back` is not counted)."""
    count = (headers or {}).get("x-delivery-count")
    return count if type(count) is int and count > 0 else 0


def retry_delay(attempt: int, delays: tuple[float, ...]) -> float:
    """Back-off after failed attempt number `attempt` (1-based); the last tier is the cap."""
    return delays[min(attempt, len(delays)) - 1]


class ConsumerBroker(Publisher, Protocol):
    """What a consumer needs of the broker: who sent a message, the ways to settle one
    elsewhere (park, retry later, hand back), and counting work in flight. The consuming
    layer of `Broker` is one; a test may give a consumer anything else that is."""

    identities: Identities

    async def park(
        self, queue: str, message: AbstractIncomingMessage, error: str, *, reason: str = "other"
    ) -> None: ...

    async def retry_later(
        self, spec: topology.QueueSpec, message: AbstractIncomingMessage, delay: float, error: str
    ) -> None: ...

    async def hand_back(
        self, spec: topology.QueueSpec, message: AbstractIncomingMessage, reason: str
    ) -> None: ...

    async def tracked(self, work: Awaitable[T]) -> T: ...


class _Consumer(Generic[E]):
    def __init__(
        self,
        broker: ConsumerBroker,
        spec: topology.QueueSpec,
        by_type: dict[str, type[E]],
        handler: Handler[E],
        on_park: ParkHandler[E] | None,
        record_retries: bool,
    ) -> None:
        self._broker = broker
        self._spec = spec
        self._by_type = by_type
        self._handler = handler
        self._on_park = on_park
        self._record_retries = record_retries
        self._wait = _metrics.QUEUE_WAIT.labels(spec.name)

    async def handle(self, message: AbstractIncomingMessage) -> None:
        delivery = await self.receive(message)
        if delivery is not None:
            await self.run(delivery)

    async def receive(self, message: AbstractIncomingMessage) -> Delivery[E] | None:
        """Parse a delivered message. One that can never be handled (too large, malformed)
        is parked at once: None. A good one returns without awaiting anything, so
        deliveries reach a dispatcher in the order the broker sent them."""
        limit = self._broker.settings.amqp_max_message_bytes
        if len(message.body) > limit:
            await self._broker.park(
                self._spec.name,
                message,
                f"too large: {len(message.body)} > {limit} bytes",
                reason="too_large",
            )
            return None
        try:
            envelope, event = self._parse(message)
        except (EnvelopeError, ValidationError) as exc:
            log.error("message_malformed", queue=self._spec.name, error=str(exc))
            await self._broker.park(
                self._spec.name, message, f"malformed: {exc}", reason="malformed"
            )
            return None
        sender = self._broker.identities.sender(message)
        if not may_send(sender, event.published_by):
            # Forged, not failed: parked for an operator to see, and nobody is told about
            # the job it names (no on_park, no record): that would be acting on it.
            error = f"forbidden sender: {describe(sender, message.user_id)} may not publish"
            with message_context(envelope, queue=self._spec.name):
                log.error("message_sender_refused", user=message.user_id, error=error)
                await self._broker.park(
                    self._spec.name, message, f"{error} {envelope.type}", reason="forbidden_sender"
                )
            return None
        return Delivery(self, message, envelope, event)

    async def run(self, delivery: Delivery[E]) -> None:
        """Handle a parsed delivery: the handler, then ack, retry later or park."""
        message, envelope = delivery.message, delivery.envelope
        # Another host's clock may be ahead: a negative wait is no wait.
        self._wait.observe(max(0.0, time.time() - envelope.time.timestamp()))
        with message_context(envelope, queue=self._spec.name):
            started = time.monotonic()
            attempt = delivery_attempts(message.headers, self._spec) + 1
            ctx = MessageContext(envelope, self._broker, attempt)
            returned = delivery_count(message.headers)
            if returned >= self._spec.delivery_limit:
                outcome = await self._crashed_too_often(message, delivery.event, ctx, returned)
            else:
                outcome = await self._run(message, delivery.event, ctx)
            elapsed = time.monotonic() - started
            _metrics.HANDLING.labels(self._spec.name, outcome).observe(elapsed)
            log.info("message_handled", outcome=outcome, duration_ms=round(elapsed * 1000, 2))

    async def run_tracked(self, delivery: Delivery[E]) -> None:
        """`run`, counted in flight (the broker's `close()` waits for it to finish)."""
        with _metrics.IN_FLIGHT.labels(self._spec.name).track_inprogress():
            await self._broker.tracked(self.run(delivery))

    async def release(self, delivery: Delivery[E], reason: str) -> None:
        """Hand a delivery back unhandled, to the tail of its queue (see Delivery.release)."""
        with message_context(delivery.envelope, queue=self._spec.name):
            await self._broker.hand_back(self._spec, delivery.message, reason)

    def _parse(self, message: AbstractIncomingMessage) -> tuple[Envelope, E]:
        envelope = Envelope.from_message(message)
        event_cls = self._by_type.get(envelope.type)
        if event_cls is None:
            raise EnvelopeError(f"unexpected event type {envelope.type!r} on {self._spec.name}")
        return envelope, event_cls.model_validate_json(message.body)

    async def _run(self, message: AbstractIncomingMessage, event: E, ctx: MessageContext) -> str:
        try:
            await self._handler(event, ctx)
        except PermanentError as exc:
            log.warning("message_refused", error=str(exc))
            await self._give_up(message, event, ctx, f"permanent: {exc}", reason="permanent")
            return "parked"
        except Exception as exc:
            return await self._failed(message, event, ctx, f"{type(exc).__name__}: {exc}")
        await settle(message.ack())
        return "acked"

    async def _crashed_too_often(
        self, message: AbstractIncomingMessage, event: E, ctx: MessageContext, returned: int
    ) -> str:
        """This is the last delivery the queue's delivery limit allows: the message came
        back unacknowledged that often (its consumer crashed or lost its channel while on
        it). Parked now, without running the handler again, through the same path as any
        other parking (headers, `on_park`, the `job.parked` record), instead of letting
        the broker dead-letter it bare after one more crash."""
        error = f"delivery limit: came back unacknowledged {returned} times (consumer crashed?)"
        log.error("message_delivery_limit", returned=returned)
        await self._give_up(message, event, ctx, error, reason="delivery_limit")
        return "parked"

    async def _failed(
        self, message: AbstractIncomingMessage, event: E, ctx: MessageContext, error: str
    ) -> str:
        settings = self._broker.settings
        attempt = ctx.attempt
        if ctx.last_attempt:
            log.exception("message_failed", attempt=attempt, final=True)
            await self._give_up(
                message,
                event,
                ctx,
                f"gave up after {attempt} attempts: {error}",
                reason="retries_exhausted",
            )
            return "parked"
        log.warning("message_failed", attempt=attempt, error=error, exc_info=True)
        delay = retry_delay(attempt, settings.amqp_retry_delays)
        await self._record(
            ctx,
            RetryScheduled(
                job_id=event.job_id,
                queue=self._spec.name,
                attempt=attempt,
                delay_seconds=delay,
                error=error[:1000],
            ),
            key=f"attempt-{attempt}",
        )
        await self._broker.retry_later(self._spec, message, delay, error)
        return "retry_scheduled"

    async def _give_up(
        self,
        message: AbstractIncomingMessage,
        event: E,
        ctx: MessageContext,
        error: str,
        *,
        reason: str,
    ) -> None:
        if self._on_park is not None:
            try:
                await self._on_park(event, ctx, error)
            except Exception:
                log.exception("on_park_failed")
        parked = MessageParked(
            job_id=event.job_id,
            queue=self._spec.name,
            parking_queue=topology.parking_name(self._spec.name),
            attempts=ctx.attempt,
            error=error[:1000],
        )
        await self._record(ctx, parked, key=f"attempt-{ctx.attempt}")
        await self._broker.park(self._spec.name, message, error, reason=reason)

    async def _record(self, ctx: MessageContext, event: Event, *, key: str) -> None:
        """Publish a retry or parking as a provenance event of the job (when this queue's
        subscription asked for that). Best effort: the retry or parking itself must happen
        even when the record cannot be published."""
        if not self._record_retries:
            return
        try:
            await ctx.publish(event, key=key)
        except Exception as exc:
            log.warning("retry_record_failed", event_type=event.type, error=repr(exc))


class Delivery(Generic[E]):
    """A message taken off its work queue and parsed, not handled yet: what a dispatcher
    (`Broker.subscribe(..., dispatch=...)`) holds until it decides to run it. Each
    delivery must end in exactly one `handle()` or `release()`; until then the broker
    counts it as unacknowledged (and, past its `consumer_timeout`, closes the channel)."""

    def __init__(
        self,
        consumer: _Consumer[E],
        message: AbstractIncomingMessage,
        envelope: Envelope,
        event: E,
    ) -> None:
        self._consumer = consumer
        self.message = message
        self.envelope = envelope
        self.event = event
        self.received = time.monotonic()
        """When it arrived (monotonic seconds): how long it has been held."""

    @property
    def stale(self) -> bool:
        """Its channel closed (a reconnect): it can no longer be acked, and the broker
        delivers it again on the new channel, so it must not be handled from here."""
        try:
            return bool(self.message.channel.is_closed)
        except ChannelInvalidStateError:
            return True

    async def handle(self) -> None:
        """Run the handler; ack after it, retry later or park, as `subscribe` does."""
        await self._consumer.run_tracked(self)

    async def release(self, reason: str) -> None:
        """Give it back unhandled: a copy (headers kept, so no attempt is counted) goes to
        the tail of its queue, then this delivery is acked. Unlike a nack, this does not
        count towards the quorum queue's delivery limit. `reason` is one word for the
        logs and metrics (e.g. `held_too_long`, `shutdown`)."""
        await self._consumer.release(self, reason)


async def settle(settlement: Awaitable[None]) -> None:
    """Ack/nack; after a reconnect the delivery belongs to a dead channel and the broker
    redelivers it anyway, so a failed settlement is logged, not raised."""
    try:
        await settlement
    except ChannelInvalidStateError as exc:
        log.warning("settle_failed_after_reconnect", error=str(exc))


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) else ""
