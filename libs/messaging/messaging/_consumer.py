"""Handling one delivered message: parse, handle, then ack, retry later or park."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import structlog
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError
from pydantic import ValidationError

from . import _metrics, topology
from ._context import MessageContext, PermanentError
from ._envelope import Envelope, EnvelopeError
from .events import Event, MessageParked, RetryScheduled
from .logs import message_context

if TYPE_CHECKING:
    from ._broker import Broker

log = structlog.get_logger("messaging")

E = TypeVar("E", bound=Event)
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


def retry_delay(attempt: int, delays: tuple[float, ...]) -> float:
    """Back-off after failed attempt number `attempt` (1-based); the last tier is the cap."""
    return delays[min(attempt, len(delays)) - 1]


class _Consumer(Generic[E]):
    def __init__(
        self,
        broker: Broker,
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
        limit = self._broker.settings.amqp_max_message_bytes
        if len(message.body) > limit:
            await self._broker.park(
                self._spec.name,
                message,
                f"too large: {len(message.body)} > {limit} bytes",
                reason="too_large",
            )
            return
        try:
            envelope, event = self._parse(message)
        except (EnvelopeError, ValidationError) as exc:
            log.error("message_malformed", queue=self._spec.name, error=str(exc))
            await self._broker.park(
                self._spec.name, message, f"malformed: {exc}", reason="malformed"
            )
            return
        # Another host's clock may be ahead: a negative wait is no wait.
        self._wait.observe(max(0.0, time.time() - envelope.time.timestamp()))
        with message_context(envelope, queue=self._spec.name):
            started = time.monotonic()
            attempt = delivery_attempts(message.headers, self._spec) + 1
            ctx = MessageContext(envelope, self._broker, attempt)
            outcome = await self._run(message, event, ctx)
            elapsed = time.monotonic() - started
            _metrics.HANDLING.labels(self._spec.name, outcome).observe(elapsed)
            log.info("message_handled", outcome=outcome, duration_ms=round(elapsed * 1000, 2))

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
