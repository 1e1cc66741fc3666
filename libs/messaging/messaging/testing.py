"""Messaging without a server, for tests: the real `Broker` on an in-memory RabbitMQ.

In the spirit of FastStream's TestBroker, but replacing less: `MemoryBroker` *is* the
`Broker` the services run (envelopes, confirmed mandatory publishing, subscriptions with
ack after the work, retries through delay queues, parking, watchers, typed RPC with its
caller checks, error replies and metrics); only the connection is replaced, by a
`MemoryServer` (one in-memory vhost, `_memory`). Messages cross it encoded as AMQP
properties and decoded again, so handlers receive what they would receive from RabbitMQ.

Several services' brokers on one `MemoryServer` talk to each other as over RabbitMQ, each
as its service's broker user (so every sender and caller check runs):

    server = MemoryServer()
    async with (
        MemoryBroker(server, service="imageproc") as imageproc,
        MemoryBroker(server, service="imageproc_runner") as runner,
    ):
        await imageproc.serve(topology.IMAGEPROC_ENGINE, on_engine)
        reply, _ = await runner.call(topology.IMAGEPROC_ENGINE, EngineRequest(), timeout=5)
        await server.settled()  # every handler done, nothing left to deliver

`server.waiting(queue)` shows what waits in a queue nobody consumes (a parking lot),
`server.published` every message published.
"""

from __future__ import annotations

from typing import Any, cast

import aio_pika
from aio_pika.abc import AbstractChannel
from pydantic import BaseModel, ConfigDict, SecretStr

from . import topology
from ._broker import Broker
from ._memory import MemoryChannel, MemoryServer, topic_matches
from ._settings import BrokerSettings

__all__ = [
    "FreeForm",
    "MemoryBroker",
    "MemoryServer",
    "free_route",
    "memory_settings",
    "topic_matches",
]


def memory_settings(user: str, **overrides: Any) -> BrokerSettings:
    """Settings for an in-memory broker whose broker user is `user`: the defaults, not the
    environment's (a test's outcome must not depend on the shell it runs in)."""
    values: dict[str, Any] = {"rabbitmq_password": SecretStr("memory"), "rabbitmq_user": user}
    return BrokerSettings.model_construct(**(values | overrides))


class MemoryBroker(Broker):
    """A `Broker` on a `MemoryServer` (a fresh one of its own when none is given). Its
    broker user is `user`, by default the service's own: as `messaging.provision` names
    them, with no prefix (the operator user, `imagemesh`, may send anything)."""

    def __init__(
        self,
        server: MemoryServer | None = None,
        *,
        service: str,
        user: str | None = None,
        settings: BrokerSettings | None = None,
        shutdown_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            settings or memory_settings(user or service),
            service=service,
            version="0+memory",
            host="memory",
            shutdown_timeout=shutdown_timeout,
        )
        self.server = server or MemoryServer()
        self._open = False

    async def connect(self) -> None:
        await topology.declare_exchanges(await self.channel(), self.settings)
        self._open = True

    async def provision(self) -> None:
        """Declare every queue of the mesh, as a provisioned broker holds them: a message
        for a queue nobody consumes yet waits there (not unroutable), and a request to a
        route nobody serves waits for its timeout."""
        channel = await self.channel()
        for spec in topology.ALL_QUEUES:
            await topology.declare_work_queue(channel, self.settings, spec)
        for route in topology.ALL_ROUTES:
            await topology.declare_rpc_queue(channel, route)

    async def close(self) -> None:
        await super().close()
        self._open = False

    def is_healthy(self) -> bool:
        return self._open

    async def accepts_publishes(self) -> bool:
        return self._open

    async def channel(self, *, prefetch: int | None = None) -> AbstractChannel:
        channel = MemoryChannel(self.server)
        if prefetch is not None:
            await channel.set_qos(prefetch_count=prefetch)
        return cast(AbstractChannel, channel)  # the calls the broker and topology make

    async def _publish(self, exchange_name: str, message: aio_pika.Message, key: str) -> None:
        if not self._open:
            raise RuntimeError("MemoryBroker is not connected; use `async with`")
        message.user_id = self.settings.rabbitmq_user
        self.server.publish(exchange_name, key, message)

    async def queue_depth(self, queue_name: str) -> tuple[int, int]:
        queue = self.server.queues.get(queue_name)
        if queue is None:
            raise LookupError(f"no queue {queue_name!r}")
        return len(queue.messages), len(queue.consumers)


class FreeForm(BaseModel):
    """Any JSON object, as a request or reply model: for routes a test makes up."""

    model_config = ConfigDict(extra="allow", frozen=True)


def free_route(
    name: str, callers: tuple[str, ...] = (), *, payload: bool = True
) -> topology.RpcRoute[FreeForm, FreeForm]:
    """A route of a test's own (`<server>.<name>`), taking and answering any object."""
    return topology.RpcRoute(name, callers, request=FreeForm, reply=FreeForm, payload=payload)
