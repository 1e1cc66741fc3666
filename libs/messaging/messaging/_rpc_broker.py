"""The RPC layer of the broker: serving a route (caller checks, answering, error replies)
and calling one (a reply queue of this process's own, replies matched to their calls)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from dataclasses import replace
from functools import cached_property
from typing import Any, TypeVar

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import AMQPError

from . import _metrics, topology
from ._consumer import settle
from ._consuming import _ConsumingBroker
from ._core import MessageTooLarge, Unroutable, _Subscription
from ._identity import OPERATOR, describe, may_send
from .rpc import (
    ERROR_CODE_HEADER,
    ERROR_MESSAGE_HEADER,
    JOB_HEADER,
    Rep,
    Req,
    RpcError,
    RpcHandler,
    RpcMessage,
    RpcServer,
    RpcTimeout,
    RpcUnavailable,
    error_from_message,
    reply_of,
    request_message,
    rpc_handler,
)

log = structlog.get_logger("messaging")
Route = topology.RpcRoute[Any, Any]
T = TypeVar("T")


class _RpcBroker(_ConsumingBroker):
    """RPC server and client on top of the consuming layer."""

    _reply_queue: str | None = None
    _reply_channel: AbstractChannel | None = None

    @cached_property
    def _replies(self) -> dict[str, tuple[asyncio.Future[AbstractIncomingMessage], str]]:
        """Calls waiting for their reply, by correlation id: (future, the serving service)."""
        return {}

    @cached_property
    def _reply_lock(self) -> asyncio.Lock:
        return asyncio.Lock()

    # -- RPC, typed --------------------------------------------------------------------------

    async def serve(
        self,
        route: topology.RpcRoute[Req, Rep],
        server: RpcServer[Req, Rep],
        *,
        prefetch: int = 4,
    ) -> None:
        """Answer requests on `route` with `server`: each request validated against the
        route's request model (`bad_request` if it is not one), each answer encoded as
        its reply. Errors as `serve_raw` says."""
        await self.serve_raw(route, rpc_handler(route, server), prefetch=prefetch)

    async def call(
        self,
        route: topology.RpcRoute[Req, Rep],
        request: Req,
        *,
        payload: bytes = b"",
        timeout: float,
        job_id: str | None = None,
    ) -> tuple[Rep, bytes]:
        """Ask `route`: its reply model (validated: `malformed_reply` if the server
        answered something else) and the reply's binary payload. Errors as `call_raw`."""
        message = request_message(route, request, payload)

        async def ask() -> tuple[Rep, bytes]:
            answer = await self._call(route, message, timeout=timeout, job_id=job_id)
            return reply_of(route, answer)

        return await self._measured(route, ask())

    # -- RPC, raw messages -----------------------------------------------------------------

    async def serve_raw(self, route: Route, handler: RpcHandler, *, prefetch: int = 4) -> None:
        """Answer requests on `route` with a handler of raw messages (meta unchecked).
        Handler errors become error replies (RpcError keeps its code; anything else is
        `internal`); the request is acked once answered."""
        in_flight = _metrics.IN_FLIGHT.labels(route.queue_name)

        async def on_request(message: AbstractIncomingMessage) -> None:
            with in_flight.track_inprogress():
                await self.tracked(self._answer(route, handler, message))

        async def declare(channel: AbstractChannel) -> AbstractQueue:
            return await topology.declare_rpc_queue(channel, route)

        await self._start(_Subscription(route.queue_name, prefetch, declare, on_request))
        log.info("serving", route=route.name, prefetch=prefetch)

    async def _answer(
        self, route: Route, handler: RpcHandler, message: AbstractIncomingMessage
    ) -> None:
        job_id = (message.headers or {}).get(JOB_HEADER)
        job_id = job_id if isinstance(job_id, str) else None
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
                request = RpcMessage.from_message(message)
                reply = await handler(replace(request, caller=caller, job_id=job_id))
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

    def _caller(self, route: Route, message: AbstractIncomingMessage) -> str | None:
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

    async def call_raw(
        self,
        route: Route,
        request: RpcMessage,
        *,
        timeout: float,
        job_id: str | None = None,
    ) -> RpcMessage:
        """Send a request and wait at most `timeout` seconds for its reply.

        Raises RpcTimeout, RpcUnavailable (nobody ever served the route), MessageTooLarge,
        or RpcError with the server's code."""
        return await self._measured(
            route, self._call(route, request, timeout=timeout, job_id=job_id)
        )

    async def _measured(self, route: Route, call: Awaitable[T]) -> T:
        """`call`, timed by outcome (the reply's validation included)."""
        started = time.monotonic()
        outcome = "error"
        try:
            result = await call
        except RpcError as exc:
            outcome = _metrics.RPC_OUTCOMES.get(exc.code, "error")
            raise
        except MessageTooLarge:
            outcome = "too_large"
            raise
        else:
            outcome = "ok"
            return result
        finally:
            elapsed = time.monotonic() - started
            _metrics.RPC_CLIENT.labels(route.name, outcome).observe(elapsed)

    async def _call(
        self,
        route: Route,
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


def _error_headers(code: str, message: str) -> dict[str, Any]:
    return {ERROR_CODE_HEADER: code, ERROR_MESSAGE_HEADER: message[:2000]}
