"""An in-memory stand-in for one RabbitMQ vhost (`messaging.testing` builds on it).

It keeps what the mesh relies on of RabbitMQ, nothing more: direct and topic exchanges
(and the default one), queues with their bindings, consumers with a prefetch, acks and
nacks, dead-lettering (a rejected message, one past its quorum queue's delivery limit, and
one whose per-queue TTL ran out, with the `x-death` header the broker writes) and
mandatory publishing (unroutable: raised). Every message goes through pamqp's encoding of
its properties and back, as it would on the wire, and arrives as a real aio-pika
`IncomingMessage`: the code that reads it is the code that reads RabbitMQ's.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aio_pika
from aiormq.abc import DeliveredMessage
from pamqp import commands, frame
from pamqp.header import ContentHeader

from ._core import Unroutable

Callback = Callable[[aio_pika.abc.AbstractIncomingMessage], Awaitable[None]]


@dataclass(eq=False)
class _Consumer:
    tag: str
    callback: Callback
    no_ack: bool
    prefetch: int
    unacked: int = 0


@dataclass(eq=False)
class _Entry:
    """A message in a queue: its encoded properties and body, and where it came from."""

    header: bytes
    body: bytes
    exchange: str
    routing_key: str


@dataclass(eq=False)
class MemoryQueue:
    server: MemoryServer
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    auto_delete: bool = False
    messages: deque[_Entry] = field(default_factory=deque)
    consumers: list[_Consumer] = field(default_factory=list)

    async def bind(self, exchange: str, routing_key: str = "") -> None:
        self.server.bindings.add((exchange, routing_key, self.name))

    async def consume(self, callback: Callback, no_ack: bool = False, **_: Any) -> str:
        tag = f"ctag.{next(self.server.counter)}"
        self.consumers.append(_Consumer(tag, callback, no_ack, self.server.prefetch_of(self)))
        self.server.pump(self)
        return tag

    async def cancel(self, tag: str, **_: Any) -> None:
        self.consumers = [c for c in self.consumers if c.tag != tag]
        if self.auto_delete and not self.consumers:
            self.server.delete(self.name)

    @property
    def declaration_result(self) -> SimpleNamespace:
        return SimpleNamespace(message_count=len(self.messages), consumer_count=len(self.consumers))


class MemoryChannel:
    """What the broker asks of an aio-pika channel: declaring, binding, consuming."""

    def __init__(self, server: MemoryServer) -> None:
        self.server = server
        self.prefetch = 0
        self.is_closed = False

    async def set_qos(self, prefetch_count: int = 0, **_: Any) -> None:
        self.prefetch = prefetch_count

    async def declare_exchange(self, name: str, type: Any, **_: Any) -> str:
        self.server.exchanges[name] = aio_pika.ExchangeType(type)
        return name

    async def declare_queue(
        self,
        name: str | None = None,
        *,
        passive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        **_: Any,
    ) -> MemoryQueue:
        name = name or f"amq.gen-{next(self.server.counter)}"
        queue = self.server.queues.get(name)
        if queue is None:
            if passive:
                raise LookupError(f"no queue {name!r}")
            queue = MemoryQueue(self.server, name, dict(arguments or {}), auto_delete)
            self.server.queues[name] = queue
        self.server.prefetch[name] = self.prefetch
        return queue

    async def close(self) -> None:
        self.is_closed = True


class _Settler:
    """The channel a delivered message is acked, nacked or rejected on."""

    def __init__(self, server: MemoryServer, queue: MemoryQueue, consumer: _Consumer) -> None:
        self.server, self.queue, self.consumer = server, queue, consumer
        self.entry: _Entry | None = None
        self.is_closed = False
        self.connection = SimpleNamespace(basic_nack=True)

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self._settled()

    async def basic_nack(
        self, delivery_tag: int, multiple: bool = False, requeue: bool = True
    ) -> None:
        self._settled(requeue=requeue)

    async def basic_reject(self, delivery_tag: int, requeue: bool = True) -> None:
        self._settled(requeue=requeue)

    def _settled(self, *, requeue: bool | None = None) -> None:
        entry, self.entry = self.entry, None
        if entry is None:
            return
        self.consumer.unacked -= 1
        if requeue is not None:
            self.server.returned(self.queue, entry, requeue=requeue)
        self.server.pump(self.queue)


class MemoryServer:
    """One vhost: exchanges, queues and bindings, shared by every `MemoryBroker` on it.

    `delay_scale` multiplies each queue's message TTL (retry back-offs): 0 (the default)
    sends an expired message on at the next turn of the event loop."""

    def __init__(self, *, delay_scale: float = 0.0) -> None:
        self.delay_scale = delay_scale
        self.exchanges: dict[str, aio_pika.ExchangeType] = {}
        self.queues: dict[str, MemoryQueue] = {}
        self.bindings: set[tuple[str, str, str]] = set()
        self.prefetch: dict[str, int] = {}
        self.counter = itertools.count(1)
        self.published: list[tuple[str, str, aio_pika.Message]] = []
        """Every message published (routed), in order: (exchange, routing key, message)."""
        self.unpublishable: list[str] = []
        """Why each message that could not be encoded was refused (what aiormq raises)."""
        self._running: set[asyncio.Future[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()

    # -- routing -------------------------------------------------------------------------

    def publish(self, exchange: str, routing_key: str, message: aio_pika.Message) -> None:
        """Route `message` as a mandatory publish: Unroutable when no queue takes it."""
        try:
            header = encode(message)
        except Exception as exc:
            self.unpublishable.append(f"{type(exc).__name__}: {exc}")
            raise
        targets = self.route(exchange, routing_key)
        if not targets:
            raise Unroutable(f"no queue bound on {exchange!r} for {routing_key!r}")
        self.published.append((exchange, routing_key, message))
        for name in targets:
            self.enqueue(self.queues[name], _Entry(header, message.body, exchange, routing_key))

    def route(self, exchange: str, routing_key: str) -> list[str]:
        if exchange == "":
            return [routing_key] if routing_key in self.queues else []
        topic = self.exchanges.get(exchange) == aio_pika.ExchangeType.TOPIC
        return sorted(
            {
                queue
                for source, key, queue in self.bindings
                if source == exchange
                and queue in self.queues
                and (topic_matches(key, routing_key) if topic else key == routing_key)
            }
        )

    def enqueue(self, queue: MemoryQueue, entry: _Entry) -> None:
        queue.messages.append(entry)
        ttl = queue.arguments.get("x-message-ttl")
        if isinstance(ttl, int) and not queue.consumers:
            delay = ttl / 1000 * self.delay_scale

            def expire() -> None:
                self._timers.discard(timer)  # busy until it has run, not only until due
                self._expire(queue, entry)

            timer = asyncio.get_running_loop().call_later(delay, expire)
            self._timers.add(timer)
        self.pump(queue)

    def _expire(self, queue: MemoryQueue, entry: _Entry) -> None:
        if entry in queue.messages:
            queue.messages.remove(entry)
            self.dead_letter(queue, entry, "expired")

    def returned(self, queue: MemoryQueue, entry: _Entry, *, requeue: bool) -> None:
        """A nacked or rejected delivery: back to its queue (a quorum queue counts it in
        `x-delivery-count`, up to its delivery limit), or dead-lettered."""
        if not requeue:
            self.dead_letter(queue, entry, "rejected")
            return
        if queue.arguments.get("x-queue-type") == "quorum":
            headers: dict[str, Any] = dict(decode(entry.header).properties.headers or {})
            count = int(headers.get("x-delivery-count", 0)) + 1
            limit = queue.arguments.get("x-delivery-limit")
            if isinstance(limit, int) and count > limit:
                self.dead_letter(queue, entry, "delivery_limit")
                return
            entry = _with_headers(entry, {**headers, "x-delivery-count": count})
        queue.messages.appendleft(entry)

    def dead_letter(self, queue: MemoryQueue, entry: _Entry, reason: str) -> None:
        exchange = queue.arguments.get("x-dead-letter-exchange")
        if exchange is None:
            return  # dropped, as RabbitMQ drops it
        key = queue.arguments.get("x-dead-letter-routing-key", entry.routing_key)
        headers: dict[str, Any] = dict(decode(entry.header).properties.headers or {})
        headers["x-death"] = _deaths(headers.get("x-death"), queue.name, reason, entry)
        headers.pop("x-delivery-count", None)
        moved = _with_headers(entry, headers)
        for name in self.route(exchange, key):
            self.enqueue(self.queues[name], _Entry(moved.header, moved.body, exchange, key))

    # -- delivering ----------------------------------------------------------------------

    def prefetch_of(self, queue: MemoryQueue) -> int:
        return self.prefetch.get(queue.name, 0)

    def pump(self, queue: MemoryQueue) -> None:
        """Hand waiting messages to consumers with room under their prefetch, round robin."""
        while queue.messages:
            ready = [c for c in queue.consumers if not c.prefetch or c.unacked < c.prefetch]
            if not ready:
                return
            consumer = min(ready, key=lambda c: c.unacked)
            self._deliver(queue, consumer, queue.messages.popleft())

    def _deliver(self, queue: MemoryQueue, consumer: _Consumer, entry: _Entry) -> None:
        settler = _Settler(self, queue, consumer)
        if not consumer.no_ack:
            settler.entry = entry
            consumer.unacked += 1
        delivered = DeliveredMessage(
            delivery=commands.Basic.Deliver(
                consumer_tag=consumer.tag,
                delivery_tag=next(self.counter),
                exchange=entry.exchange,
                routing_key=entry.routing_key,
            ),
            header=decode(entry.header),
            body=entry.body,
            channel=settler,  # type: ignore[arg-type]  # the settling part of a channel
        )
        message = aio_pika.IncomingMessage(delivered, no_ack=consumer.no_ack)
        task = asyncio.ensure_future(consumer.callback(message))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def delete(self, name: str) -> None:
        self.queues.pop(name, None)
        self.bindings = {b for b in self.bindings if b[2] != name}

    # -- for tests -----------------------------------------------------------------------

    def waiting(self, queue: str) -> list[aio_pika.IncomingMessage]:
        """The messages waiting in `queue` (a parking lot, say), undelivered, as they would
        arrive: decoded again from their encoded properties."""
        found = self.queues.get(queue)
        return [_incoming(entry) for entry in (found.messages if found else ())]

    def busy(self) -> bool:
        """Whether anything is still on its way: a handler running, a message that a
        consumer will take, or a delayed message not yet due."""
        self._timers = {t for t in self._timers if not t.cancelled()}
        pending = any(q.messages and q.consumers for q in self.queues.values())
        return bool(self._running) or pending or bool(self._timers)

    async def settled(self, timeout: float = 10.0) -> None:
        """Wait until nothing is on its way (`busy`), at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.busy():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the in-memory broker was still busy after {timeout} s")
            await asyncio.sleep(0.001)


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: `*` is one word, `#` zero or more."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), key.split("."))


def encode(message: aio_pika.Message) -> bytes:
    """The message's content header frame, as aiormq sends it (raises what it raises)."""
    header = ContentHeader(properties=message.properties, body_size=len(message.body))
    return frame.marshal(header, 1)[7:-1]  # the frame payload: no frame header or end


def decode(header: bytes) -> ContentHeader:
    decoded = ContentHeader()
    decoded.unmarshal(header)
    return decoded


def _incoming(entry: _Entry) -> aio_pika.IncomingMessage:
    delivered = DeliveredMessage(
        delivery=commands.Basic.Deliver(
            consumer_tag="", delivery_tag=0, exchange=entry.exchange, routing_key=entry.routing_key
        ),
        header=decode(entry.header),
        body=entry.body,
        channel=SimpleNamespace(is_closed=False),  # type: ignore[arg-type]  # never settled
    )
    return aio_pika.IncomingMessage(delivered)


def _with_headers(entry: _Entry, headers: dict[str, Any]) -> _Entry:
    header = decode(entry.header)
    header.properties.headers = headers
    fresh = ContentHeader(properties=header.properties, body_size=len(entry.body))
    return _Entry(frame.marshal(fresh, 1)[7:-1], entry.body, entry.exchange, entry.routing_key)


def _deaths(previous: object, queue: str, reason: str, entry: _Entry) -> list[dict[str, Any]]:
    """`x-death` with this dead-lettering counted, as RabbitMQ keeps it: one entry per
    (queue, reason), most recent first."""
    listed = previous if isinstance(previous, list) else []
    deaths = [dict(death) for death in listed if isinstance(death, dict)]
    for death in deaths:
        if _text(death.get("queue")) == queue and _text(death.get("reason")) == reason:
            death["count"] = int(death.get("count", 0)) + 1
            deaths.remove(death)
            return [death, *deaths]
    new = {
        "count": 1,
        "reason": reason,
        "queue": queue,
        "exchange": entry.exchange,
        "routing-keys": [entry.routing_key],
    }
    return [new, *deaths]


def _text(value: object) -> str:
    return bytes(value).decode() if isinstance(value, bytes | bytearray) else str(value)
