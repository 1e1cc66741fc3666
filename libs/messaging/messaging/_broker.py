"""One robust RabbitMQ connection per process: confirmed publishing, consuming with
ack-after-work and parking of failures, and RPC."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from types import TracebackType
from typing import Any, Self, TypeVar

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, PublishError
from pydantic import ValidationError

from . import _metrics, topology
from ._consumer import Delivery, E, Handler, ParkHandler, _Consumer, settle
from ._envelope import Envelope, EnvelopeError, copy_of, follow_up_id, new_event_id
from ._identity import OPERATOR, SENDER_HEADER, Identities, describe, may_send
from ._settings import BrokerSettings
from .events import EVENTS_BY_TYPE, Event
from .rpc import (
    ERROR_CODE_HEADER,
    ERROR_MESSAGE_HEADER,
    JOB_HEADER,
    RpcError,
    RpcMessage,
    RpcTimeout,
    RpcUnavailable,
    error_from_message,
)

log = structlog.get_logger("messaging")
T = TypeVar("T")

RpcHandler = Callable[[RpcMessage], Awaitable[RpcMessage]]
Watcher = Callable[[Envelope, Event], None]
"""Told of each event as it passes (synchronously: hand work off, never block)."""
Dispatch = Callable[[Delivery[Any]], None]
"""Takes each parsed delivery of a subscription (synchronously: store it, never block) and
later calls its `handle()` or `release()`: a scheduler of the consumer's own."""
PUBLISH_TIMEOUT = 30.0
REQUEUE_PAUSE = 1.0
WATCHDOG_INTERVAL = 5.0
FLOW_CHECK_TIMEOUT = 0.05
PARK_ERROR_HEADER = "x-imagemesh-error"
LAST_ERROR_HEADER = "x-imagemesh-last-error"
QUEUE_HEADER = "x-imagemesh-queue"


class MessageTooLarge(ValueError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the {limit} byte limit")
        self.size = size
        self.limit = limit


class Unroutable(RuntimeError):
    """The broker could not route a mandatory message: no queue is bound for it."""


@dataclass(eq=False)
class _Subscription:
    """A consumer, and how to start it again on a fresh channel."""

    name: str
    prefetch: int
    declare: Callable[[AbstractChannel], Awaitable[AbstractQueue]]
    callback: Callable[[AbstractIncomingMessage], Awaitable[None]]
    no_ack: bool = False
    channel: AbstractChannel | None = None
    consumer: tuple[AbstractQueue, str] | None = None


class Broker:
    """The gateway between a service and RabbitMQ. Use as `async with Broker(...) as broker`."""

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        service: str,
        version: str | None = None,
        host: str | None = None,
        shutdown_timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self.shutdown_timeout = shutdown_timeout
        self.service = service
        self.version = version or _distribution_version(f"imagemesh-{service.replace('_', '-')}")
        self.host = host or socket.gethostname()
        self.identities = Identities.of(settings)
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._publisher_lock = asyncio.Lock()
        self._subscriptions: list[_Subscription] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._replies: dict[str, tuple[asyncio.Future[AbstractIncomingMessage], str]] = {}
        """Calls waiting for their reply, by correlation id: (future, the serving service)."""
        self._reply_queue: str | None = None
        self._reply_channel: AbstractChannel | None = None
        self._reply_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self.settings.amqp_url(),
            client_properties={"connection_name": f"{self.service}@{self.host}"},
        )
        await self._open_publisher()
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        log.info(
            "broker_connected", host=self.settings.rabbitmq_host, vhost=self.settings.rabbitmq_vhost
        )

    async def _open_publisher(self) -> None:
        # on_return_raises: an unroutable mandatory publish raises instead of vanishing.
        channel = await self.connection.channel(on_return_raises=True)
        self._exchanges = await topology.declare_exchanges(
            channel, self.settings, passive=not self.settings.amqp_declare_exchanges
        )
        self._publish_channel = channel

    def _on_reconnect(self, *_args: Any) -> None:
        log.warning("broker_reconnected", host=self.settings.rabbitmq_host)

    async def _publisher(self, name: str) -> AbstractExchange:
        """The exchange `name` ("" = default) on a publishing channel that is open.

        aio-pika's robust channel sometimes fails to restore itself after a broker restart
        (its close callback races the closing connection) and then stays closed for good:
        a closed publishing channel is replaced here instead."""
        async with self._publisher_lock:
            channel = self._publish_channel
            if channel is None or channel.is_closed:
                log.warning("publish_channel_reopened")
                await self._open_publisher()
                channel = self._publish_channel
            assert channel is not None
        return channel.default_exchange if name == "" else self._exchanges[name]

    async def close(self) -> None:
        """Stop taking messages, let in-flight handlers finish (within the shutdown timeout),
        then disconnect."""
        await self.stop_consuming()
        try:
            await asyncio.wait_for(self._idle.wait(), self.shutdown_timeout)
        except TimeoutError:
            log.warning("drain_timeout", in_flight=self._in_flight)
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        log.info("broker_closed")

    async def stop_consuming(self) -> None:
        """Cancel every consumer: no new deliveries (those already received stay with
        their handlers or dispatchers). The first step of `close()`."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for queue, tag in (s.consumer for s in self._subscriptions if s.consumer):
            try:
                await queue.cancel(tag)
            except Exception as exc:  # the connection may already be gone
                log.warning("consumer_cancel_failed", queue=queue.name, error=str(exc))
        self._subscriptions.clear()

    @property
    def connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("Broker is not connected; use `async with Broker(...)`")
        return self._connection

    async def accepts_publishes(self) -> bool:
        """False while disconnected or while the broker blocks publishers (memory or disk
        alarm): a publish now would wait instead of being confirmed."""
        transport = getattr(self._connection, "transport", None)
        if transport is None or not self.is_healthy():
            return False
        try:
            await asyncio.wait_for(transport.connection.ready(), FLOW_CHECK_TIMEOUT)
        except TimeoutError:
            return False
        return True

    async def ping(self) -> bool:
        """Readiness: connected, with an open channel."""
        return self.is_healthy()

    def is_healthy(self) -> bool:
        channel = self._publish_channel
        return (
            self._connection is not None
            and self._connection.connected.is_set()  # false while reconnecting
            and channel is not None
            and not channel.is_closed
            and all(s.channel is None or not s.channel.is_closed for s in self._subscriptions)
        )

    async def channel(self, *, prefetch: int | None = None) -> AbstractChannel:
        channel = await self.connection.channel(on_return_raises=True)
        if prefetch is not None:
            await channel.set_qos(prefetch_count=prefetch)
        return channel

    # -- publishing ------------------------------------------------------------------------

    def envelope_for(
        self, event: Event, *, cause: Envelope | None = None, key: str = ""
    ) -> Envelope:
        return Envelope(
            id=follow_up_id(cause.id, event.type, key) if cause else new_event_id(),
            type=event.type,
            source=f"/imagemesh/{self.service}",
            subject=event.job_id,
            correlation_id=event.job_id,
            causation_id=cause.id if cause else None,
            agent_version=self.version,
            agent_host=self.host,
        )

    async def publish(
        self,
        event: Event,
        *,
        cause: Envelope | None = None,
        key: str = "",
        envelope: Envelope | None = None,
    ) -> Envelope:
        """Publish persistently, mandatory, and wait for the broker's confirm."""
        envelope = envelope or self.envelope_for(event, cause=cause, key=key)
        body = event.model_dump_json().encode()
        self._check_size(len(body))
        exchange = topology.exchange_name(self.settings, event.exchange)
        await self._publish(exchange, envelope.to_message(body), event.type)
        log.debug("event_published", event_type=event.type, event_id=envelope.id)
        return envelope

    async def _publish(self, exchange_name: str, message: aio_pika.Message, key: str) -> None:
        """Publish persistently, mandatory, confirmed; once more on a fresh channel if the
        publishing channel turned out to be closed. Every message names this connection's
        user (AMQP `user_id`): the broker refuses any other, so receivers can trust it."""
        message.user_id = self.settings.rabbitmq_user
        for attempt in (1, 2):
            exchange = await self._publisher(exchange_name)
            try:
                await exchange.publish(
                    message, routing_key=key, mandatory=True, timeout=PUBLISH_TIMEOUT
                )
            except PublishError as exc:
                raise Unroutable(f"no queue bound on {exchange_name!r} for {key!r}") from exc
            except ChannelInvalidStateError:
                if attempt == 2:
                    raise
                continue
            return

    def _check_size(self, size: int) -> None:
        if size > self.settings.amqp_max_message_bytes:
            raise MessageTooLarge(size, self.settings.amqp_max_message_bytes)

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
                delivery = await self._tracked(consumer.receive(message))
                if delivery is not None:
                    dispatch(delivery)
                return
            with in_flight.track_inprogress():
                await self._tracked(consumer.handle(message))

        async def declare(channel: AbstractChannel) -> AbstractQueue:
            return await topology.declare_work_queue(channel, self.settings, spec)

        await self._start(_Subscription(spec.name, prefetch, declare, on_message))
        log.info("consuming", queue=spec.name, prefetch=prefetch)

    async def watch(self, callback: Watcher) -> None:
        """Follow every event of the mesh as it happens, on a queue of this process's own
        (see `topology.declare_live_queue`): for live views such as progress streams.
        Nothing is acknowledged or retried; an unreadable message is skipped."""
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
            return await topology.declare_live_queue(channel, self.settings, name)

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

    async def _tracked(self, work: Awaitable[T]) -> T:
        self._in_flight += 1
        self._idle.clear()
        try:
            return await work
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    # -- RPC -------------------------------------------------------------------------------

    async def serve(
        self, route: topology.RpcRoute, handler: RpcHandler, *, prefetch: int = 4
    ) -> None:
        """Answer requests on `route`. Handler errors become error replies (RpcError keeps
        its code; anything else is `internal`); the request is acked once answered."""
        in_flight = _metrics.IN_FLIGHT.labels(route.queue_name)

        async def on_request(message: AbstractIncomingMessage) -> None:
            with in_flight.track_inprogress():
                await self._tracked(self._answer(route, handler, message))

        async def declare(channel: AbstractChannel) -> AbstractQueue:
            return await topology.declare_rpc_queue(channel, route)

        await self._start(_Subscription(route.queue_name, prefetch, declare, on_request))
        log.info("serving", route=route.name, prefetch=prefetch)

    async def _start(self, subscription: _Subscription) -> None:
        channel = await self.channel(prefetch=subscription.prefetch)
        queue = await subscription.declare(channel)
        subscription.channel = channel
        consumer_tag = await queue.consume(subscription.callback, no_ack=subscription.no_ack)
        subscription.consumer = (queue, consumer_tag)
        if subscription not in self._subscriptions:
            self._subscriptions.append(subscription)
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch_consumers())

    async def _watch_consumers(self) -> None:
        """Restart consumers whose channel aio-pika failed to restore after a reconnect
        (the race described in _publisher): otherwise a service would quietly stop
        consuming while looking alive."""
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL)
            if self._connection is None or not self._connection.connected.is_set():
                continue
            for subscription in self._subscriptions:
                if subscription.channel is not None and subscription.channel.is_closed:
                    try:
                        await self._start(subscription)
                        log.warning("consumer_restored", queue=subscription.name)
                    except Exception as exc:
                        log.warning(
                            "consumer_restore_failed", queue=subscription.name, error=repr(exc)
                        )

    async def _answer(
        self, route: topology.RpcRoute, handler: RpcHandler, message: AbstractIncomingMessage
    ) -> None:
        job_id = (message.headers or {}).get(JOB_HEADER)
        with structlog.contextvars.bound_contextvars(job_id=job_id, rpc=route.name):
            if not message.reply_to:
                await self.park(
                    route.queue_name,
                    message,
                    "request without reply_to: nobody to answer",
                    reason="no_reply_to",
                )
                return
            started = time.monotonic()
            headers: dict[str, Any] = {}
            outcome = "ok"
            try:
                self._check_size(len(message.body))
                caller = self._caller(route, message)
                reply = await handler(replace(RpcMessage.from_message(message), caller=caller))
            except MessageTooLarge as exc:
                reply, headers = RpcMessage(), _error_headers("too_large", str(exc))
                outcome = "too_large"
            except RpcError as exc:
                reply, headers = RpcMessage(), _error_headers(exc.code, exc.message)
                outcome = "error"
            except Exception as exc:
                log.exception("rpc_failed")
                reply, headers = (
                    RpcMessage(),
                    _error_headers("internal", f"{type(exc).__name__}: {exc}"),
                )
                outcome = "internal"
            await self._reply(message, reply, headers)
            await settle(message.ack())
            elapsed = time.monotonic() - started
            _metrics.RPC_SERVER.labels(route.name, outcome).observe(elapsed)
            log.info(
                "rpc_answered",
                duration_ms=round(elapsed * 1000, 2),
                error=headers.get(ERROR_CODE_HEADER),
            )

    def _caller(self, route: topology.RpcRoute, message: AbstractIncomingMessage) -> str | None:
        """The calling service (None for an operator), or RpcError `forbidden` when the
        request's broker user is not one of the route's callers."""
        sender = self.identities.sender(message)
        if not may_send(sender, route.callers):
            who = describe(sender, message.user_id)
            log.warning("rpc_caller_refused", user=message.user_id, sender=sender)
            raise RpcError("forbidden", f"{who} may not call {route.name}")
        return None if sender == OPERATOR else sender

    async def _reply(
        self, request: AbstractIncomingMessage, reply: RpcMessage, headers: dict[str, Any]
    ) -> None:
        assert request.reply_to is not None
        message = reply.to_message(correlation_id=request.correlation_id, headers=headers)
        try:
            await self._publish(topology.REPLY_EXCHANGE, message, request.reply_to)
        except Unroutable:
            log.warning("rpc_caller_gone", reply_to=request.reply_to)

    async def call(
        self,
        route: topology.RpcRoute,
        request: RpcMessage,
        *,
        timeout: float,
        job_id: str | None = None,
    ) -> RpcMessage:
        """Send a request and wait at most `timeout` seconds for its reply.

        Raises RpcTimeout, RpcUnavailable (nobody ever served the route), MessageTooLarge,
        or RpcError with the server's code."""
        started = time.monotonic()
        outcome = "error"
        try:
            reply = await self._call(route, request, timeout=timeout, job_id=job_id)
        except RpcError as exc:
            outcome = _metrics.RPC_OUTCOMES.get(exc.code, "error")
            raise
        except MessageTooLarge:
            outcome = "too_large"
            raise
        else:
            outcome = "ok"
            return reply
        finally:
            elapsed = time.monotonic() - started
            _metrics.RPC_CLIENT.labels(route.name, outcome).observe(elapsed)

    async def _call(
        self,
        route: topology.RpcRoute,
        request: RpcMessage,
        *,
        timeout: float,
        job_id: str | None,
    ) -> RpcMessage:
        try:
            reply_to = await self._ensure_reply_queue()
        except (AMQPError, ConnectionError, RuntimeError, TimeoutError) as exc:
            # Mid-reconnect the connection refuses new channels: the broker is away, which
            # callers must see as such (a 503 upstream), not as an unexpected error.
            raise RpcError("broker_unavailable", f"no reply queue: {exc!r}") from exc
        correlation_id = str(uuid.uuid4())
        headers = {JOB_HEADER: job_id} if job_id else {}
        message = request.to_message(
            correlation_id=correlation_id,
            reply_to=reply_to,
            expiration=timeout,
            type=route.name,
            app_id=f"/imagemesh/{self.service}",
            headers=headers,
        )
        self._check_size(len(message.body))
        future: asyncio.Future[AbstractIncomingMessage] = asyncio.get_running_loop().create_future()
        self._replies[correlation_id] = (future, route.server)
        try:
            try:
                await self._publish(route.exchange, message, route.name)
            except Unroutable as exc:
                raise RpcUnavailable(route.name) from exc
            except (AMQPError, ConnectionError, RuntimeError, TimeoutError) as exc:
                # RuntimeError: aio-pika's ChannelInvalidStateError, or "connection closed".
                message_text = f"could not send to {route.name}: {exc!r}"
                raise RpcError("broker_unavailable", message_text) from exc
            try:
                answer = await asyncio.wait_for(future, timeout)
            except TimeoutError as exc:
                raise RpcTimeout(route.name, timeout) from exc
        finally:
            self._replies.pop(correlation_id, None)
        error = error_from_message(answer)
        if error is not None:
            raise error
        return RpcMessage.from_message(answer)

    async def _ensure_reply_queue(self) -> str:
        async with self._reply_lock:
            if self._reply_channel is not None and self._reply_channel.is_closed:
                log.warning("reply_channel_reopened")  # see _publisher: same aio-pika race
                self._reply_queue = None
            if self._reply_queue is None:
                channel = self._reply_channel = await self.channel()
                # A fixed name (not server-named) so the robust connection re-declares the
                # same queue after a reconnect and in-flight calls still get their replies.
                name = f"rpc-reply.{self.service}.{uuid.uuid4().hex}"
                queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)
                await queue.bind(topology.REPLY_EXCHANGE, routing_key=name)
                await queue.consume(self._on_reply, no_ack=True)
                self._reply_queue = name
            return self._reply_queue

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        waiting = self._replies.get(message.correlation_id or "")
        if waiting is None or waiting[0].done():
            log.info("rpc_late_reply", correlation_id=message.correlation_id)
            return
        future, server = waiting
        # Only the route's own server answers (the reply exchange takes every server's
        # replies): anyone else's is ignored, and the call waits for the real one.
        if not may_send(self.identities.sender(message), (server,)):
            log.warning("rpc_reply_refused", user=message.user_id, expected=server)
            return
        future.set_result(message)

    # -- observation -----------------------------------------------------------------------

    async def queue_depth(self, queue_name: str) -> tuple[int, int]:
        """(ready messages, consumers) of a queue, by passive declare."""
        channel = await self.connection.channel()
        try:
            queue = await channel.declare_queue(queue_name, passive=True)
            declared = queue.declaration_result
            return declared.message_count or 0, declared.consumer_count or 0
        finally:
            await channel.close()


def _distribution_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _error_headers(code: str, message: str) -> dict[str, Any]:
    return {ERROR_CODE_HEADER: code, ERROR_MESSAGE_HEADER: message[:2000]}
