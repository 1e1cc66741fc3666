"""The core of the broker: one robust RabbitMQ connection per process, its publishing
channel (confirmed, mandatory, with this connection's `user_id`), the restartable
consumers every subscription rests on, and the count of work in flight."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import ChannelInvalidStateError, PublishError

from . import topology
from ._envelope import Envelope, follow_up_id, new_event_id
from ._identity import Identities
from ._settings import BrokerSettings
from .events import Event

log = structlog.get_logger("messaging")
T = TypeVar("T")

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


class _BrokerCore:
    """Connection, channels, publishing and consumer upkeep: the layer `Broker` is built on
    (see `_consuming`, `_rpc_broker`)."""

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
        self._depth_channel: AbstractRobustChannel | None = None
        self._depth_lock = asyncio.Lock()
        self._subscriptions: list[_Subscription] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

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

    # -- consumers -------------------------------------------------------------------------

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

    async def tracked(self, work: Awaitable[T]) -> T:
        """Await `work`, counted in flight: `close()` waits for it to finish."""
        self._in_flight += 1
        self._idle.clear()
        try:
            return await work
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    # -- observation -----------------------------------------------------------------------

    async def queue_depth(self, queue_name: str) -> tuple[int, int]:
        """(ready messages, consumers) of a queue, by passive declare, on a channel kept
        for it. Not a channel per call: aio-pika leaves a callback and a finished task
        (~3 KB) on the connection for every channel closed (its close removes them from
        the observer future aiormq 7 makes anew on each `closing` read), and upload asks
        every second. `robust=False`: a robust channel answers a passive declare of a
        queue it declared before from its cache, with the count of then."""
        async with self._depth_lock:
            channel = self._depth_channel
            if channel is None or channel.is_closed:  # a missing queue closes it (404)
                channel = self._depth_channel = await self.connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True, robust=False)
        declared = queue.declaration_result
        return declared.message_count or 0, declared.consumer_count or 0


def _distribution_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "0+unknown"
