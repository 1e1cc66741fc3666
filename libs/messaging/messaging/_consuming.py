"""The consuming layer of the broker: work queues (ack after the work, retries, parking,
hand-backs) and live watchers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError

from . import _metrics, topology
from ._consumer import Delivery, E, Handler, ParkHandler, _Consumer, settle
from ._core import (
    LAST_ERROR_HEADER,
    PARK_ERROR_HEADER,
    QUEUE_HEADER,
    REQUEUE_PAUSE,
    _BrokerCore,
    _Subscription,
)
from ._envelope import Envelope, EnvelopeError, copy_of
from ._identity import SENDER_HEADER, may_send
from .events import EVENTS_BY_TYPE, Event, ExchangeKind

log = structlog.get_logger("messaging")

Watcher = Callable[[Envelope, Event], None]
"""Told of each event as it passes (synchronously: hand work off, never block)."""
Dispatch = Callable[[Delivery[Any]], None]
"""Takes each parsed delivery of a subscription (synchronously: store it, never block) and
later calls its `handle()` or `release()`: a scheduler of the consumer's own."""


class _ConsumingBroker(_BrokerCore):
    """Subscriptions, watchers, and the re-publishing that settles a message elsewhere
    (parking, delayed retries, hand-backs)."""

    # -- consuming -------------------------------------------------------------------------

    async def subscribe(
        self,
        spec: topology.QueueSpec,
        handler: Handler[E],
        accepts: type[E] | tuple[type[E], ...],
        *,
        prefetch: int = 8,
        on_park: ParkHandler[E] | None = None,
        record_retries: bool = False,
        dispatch: Dispatch | None = None,
    ) -> None:
        """Consume `spec` with `handler`. A message is acked only after the handler (and the
        publishes it awaited) finished. A failure is retried after a back-off delay; after
        the last attempt, or at once for PermanentError and malformed messages, the message
        is parked with its error (and `on_park` is told, for messages that parsed).

        `record_retries` publishes each retry and parking as a provenance event of the job.
        Not for provenancedb's own queue: there a retry record would feed the queue it is
        recording, and while CouchDB is down every retry would make another.

        Without `dispatch`, each message is handled as it arrives (`prefetch` at once).
        With it, each parsed message is given to `dispatch` as a `Delivery`, which decides
        when to `handle()` it (then as above) or `release()` it unhandled: `prefetch` is
        then how many it may hold; `stop_consuming()` before releasing what it holds."""
        by_type = {cls.type: cls for cls in (accepts if isinstance(accepts, tuple) else (accepts,))}
        consumer = _Consumer(self, spec, by_type, handler, on_park, record_retries)
        in_flight = _metrics.IN_FLIGHT.labels(spec.name)

        async def on_message(message: AbstractIncomingMessage) -> None:
            if dispatch is not None:
                delivery = await self.tracked(consumer.receive(message))
                if delivery is not None:
                    dispatch(delivery)
                return
            with in_flight.track_inprogress():
                await self.tracked(consumer.handle(message))

        async def declare(channel: AbstractChannel) -> AbstractQueue:
            return await topology.declare_work_queue(channel, self.settings, spec)

        await self._start(_Subscription(spec.name, prefetch, declare, on_message))
        log.info("consuming", queue=spec.name, prefetch=prefetch)

    async def watch(
        self,
        callback: Watcher,
        bindings: tuple[tuple[ExchangeKind, str], ...] = topology.EVERY_EVENT,
    ) -> None:
        """Follow the events `bindings` name (every event of the mesh by default) as they
        happen, on a queue of this process's own (see `topology.declare_live_queue`): for
        live views such as progress streams. Nothing is acknowledged or retried; an
        unreadable message is skipped."""
        name = f"live.{self.service}.{uuid.uuid4().hex}"

        async def on_message(message: AbstractIncomingMessage) -> None:
            try:
                envelope = Envelope.from_message(message)
                event_cls = EVENTS_BY_TYPE[envelope.type]
                if not may_send(self.identities.sender(message), event_cls.published_by):
                    log.warning(
                        "event_sender_refused", event_type=envelope.type, user=message.user_id
                    )
                    return
                event = event_cls.model_validate_json(message.body)
            except (KeyError, EnvelopeError, ValidationError):
                return
            try:
                callback(envelope, event)
            except Exception:
                log.exception("watcher_failed", event_type=envelope.type)

        async def declare(channel: AbstractChannel) -> AbstractQueue:
            return await topology.declare_live_queue(channel, self.settings, name, bindings)

        await self._start(_Subscription(name, 256, declare, on_message, no_ack=True))
        log.info("watching", queue=name)

    async def park(
        self, queue: str, message: AbstractIncomingMessage, error: str, *, reason: str = "other"
    ) -> None:
        """Move a message to `queue`'s parking lot with the error attached, then ack it.
        `reason` is one word for the metrics (see `_metrics.PARKED`)."""
        headers = dict(message.headers or {})
        headers[PARK_ERROR_HEADER] = error[:1000]
        headers["x-imagemesh-parked-at"] = datetime.now(UTC).isoformat()
        headers[QUEUE_HEADER] = queue
        if await self._republish(message, topology.DEAD_LETTER_EXCHANGE, queue, headers):
            _metrics.PARKED.labels(queue, reason).inc()
            log.warning(
                "message_parked", queue=queue, parking=topology.parking_name(queue), error=error
            )

    async def retry_later(
        self, spec: topology.QueueSpec, message: AbstractIncomingMessage, delay: float, error: str
    ) -> None:
        """Send a message to its delay queue for `delay` seconds, then ack it."""
        headers = {**(message.headers or {}), LAST_ERROR_HEADER: error[:1000]}
        delay_queue = spec.delay_name(delay)
        if await self._republish(message, topology.DELAY_EXCHANGE, delay_queue, headers):
            _metrics.RETRIED.labels(spec.name).inc()
            log.info("message_retry_scheduled", queue=spec.name, delay_s=delay, error=error)

    async def hand_back(
        self, spec: topology.QueueSpec, message: AbstractIncomingMessage, reason: str
    ) -> None:
        """Put an unhandled message back at the tail of its queue: a copy with the same
        headers (its attempts stay counted in `x-death`) through the retry exchange, where
        only its own queue is bound; then ack it. Not a nack: a quorum queue counts every
        nack towards its delivery limit and would park a message handed back often."""
        # The copy is a new message to the queue: none of the original's returns count.
        headers = {k: v for k, v in (message.headers or {}).items() if k != "x-delivery-count"}
        if await self._republish(message, topology.RETRY_EXCHANGE, spec.name, headers):
            _metrics.HANDED_BACK.labels(spec.name, reason).inc()
            log.info("message_handed_back", queue=spec.name, reason=reason)

    def _with_sender(
        self, message: AbstractIncomingMessage, headers: dict[str, Any]
    ) -> dict[str, Any]:
        """Headers for a copy of `message` this service re-publishes (with its own
        `user_id`): plus the user that first published it, so that the copy is judged by
        its first sender, never by whoever re-published it."""
        headers = {key: value for key, value in headers.items() if key != SENDER_HEADER}
        origin = self.identities.origin_user(message)
        if origin:
            headers[SENDER_HEADER] = origin
        return headers

    async def _republish(
        self,
        message: AbstractIncomingMessage,
        exchange: str,
        routing_key: str,
        headers: dict[str, Any],
    ) -> bool:
        """Publish a copy (confirmed), then ack the original; on failure hand it back
        after a pause (no hot loop: the queue's delivery limit counts every hand-back)."""
        copy = copy_of(message, self._with_sender(message, headers))
        try:
            await self._publish(exchange, copy, routing_key)
        except Exception:
            log.exception("republish_failed", routing_key=routing_key)
            await asyncio.sleep(REQUEUE_PAUSE)
            await settle(message.nack(requeue=True))
            return False
        await settle(message.ack())
        return True
