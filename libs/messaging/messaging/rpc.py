"""RPC messages: a small JSON `meta` part plus an optional binary `payload`, and the typed
layer over them: each route's request and reply models (`topology.RpcRoute`,
`contracts`), validated on receipt.

Images travel as raw bytes in the payload (never base64 in JSON); meta rides in a header
when there is a payload, and is the JSON body when there is none.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aio_pika import DeliveryMode, Message
from aio_pika.abc import AbstractIncomingMessage
from pydantic import BaseModel, ValidationError

from .topology import RpcRoute

Req = TypeVar("Req", bound=BaseModel)
Rep = TypeVar("Rep", bound=BaseModel)

META_HEADER = "x-rpc-meta"
ERROR_CODE_HEADER = "x-rpc-error-code"
ERROR_MESSAGE_HEADER = "x-rpc-error-message"
JOB_HEADER = "x-job-id"


class RpcError(Exception):
    """The server answered with an error. `code` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RpcTimeout(RpcError):
    def __init__(self, route: str, timeout: float) -> None:
        super().__init__("rpc_timeout", f"no answer from {route} within {timeout:g} s")


class RpcUnavailable(RpcError):
    def __init__(self, route: str) -> None:
        super().__init__("rpc_unavailable", f"no service has ever served {route}")


@dataclass(frozen=True, slots=True)
class RpcMessage:
    meta: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""
    caller: str | None = None
    """On a request a server handles: the calling service, as the broker vouches for it
    (its AMQP `user_id`); None for an operator. Never sent: not part of the message."""
    job_id: str | None = None
    """On a request a server handles: the job it is about (its `x-job-id` header, which
    the caller sets), for logs and for stopping a cancelled job's work. Never sent here:
    `Broker.call` sends it as the header."""

    def to_message(self, **properties: Any) -> Message:
        headers: dict[str, Any] = dict(properties.pop("headers", None) or {})
        if self.payload:
            headers[META_HEADER] = json.dumps(self.meta, separators=(",", ":"))
            body, content_type = self.payload, "application/octet-stream"
        else:
            body, content_type = json.dumps(self.meta).encode(), "application/json"
        return Message(
            body,
            content_type=content_type,
            headers=headers,
            # Requests and replies live only while a caller waits; a restart loses the
            # caller too, so there is nothing to persist.
            delivery_mode=DeliveryMode.NOT_PERSISTENT,
            **properties,
        )

    @classmethod
    def from_message(cls, message: AbstractIncomingMessage) -> RpcMessage:
        headers = message.headers or {}
        if META_HEADER in headers:
            raw = headers[META_HEADER]
            try:
                text = raw.decode() if isinstance(raw, bytes) else str(raw)
            except UnicodeDecodeError as exc:
                raise RpcError("malformed_request", "RPC meta is not UTF-8 text") from exc
            return cls(meta=_json_object(text), payload=message.body)
        if not message.body:
            return cls()
        return cls(meta=_json_object(message.body.decode("utf-8", "replace")))


def error_from_message(message: AbstractIncomingMessage) -> RpcError | None:
    headers = message.headers or {}
    code = headers.get(ERROR_CODE_HEADER)
    if code is None:
        return None
    text = headers.get(ERROR_MESSAGE_HEADER, "")
    return RpcError(_str(code), _str(text))


def _str(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # not JSON, too deep, a number too long
        raise RpcError("malformed_request", f"RPC meta is not JSON: {exc}"[:300]) from exc
    if not isinstance(value, dict):
        raise RpcError("malformed_request", "RPC meta must be a JSON object")
    return value


# --- the typed layer ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RpcCall:
    """What a server knows of a request beside its model."""

    payload: bytes = b""
    caller: str | None = None
    """The calling service, as the broker vouches for it; None for an operator."""
    job_id: str | None = None
    """The job the request is about, as the caller said (`x-job-id`), if it said."""


RpcHandler = Callable[[RpcMessage], Awaitable[RpcMessage]]
"""A server of raw messages (`Broker.serve_raw`)."""
RpcServer = Callable[[Req, RpcCall], Awaitable[Rep | tuple[Rep, bytes]]]
"""A typed server (`Broker.serve`): the validated request in; its route's reply out, with
a binary payload beside it on routes that carry one."""


def validation_message(exc: ValidationError) -> str:
    """What was wrong with a message, in one line (never the value sent)."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "message"
    return f"{where}: {error['msg']}"[:300]


def request_of(route: RpcRoute[Req, Any], message: RpcMessage) -> Req:
    """The route's request model from a received request; RpcError `bad_request` when it
    is not one (a payload where the route takes none included)."""
    if message.payload and not route.payload:
        raise RpcError("bad_request", f"{route.name} takes no payload")
    try:
        return route.request.model_validate(message.meta)
    except ValidationError as exc:
        raise RpcError("bad_request", validation_message(exc)) from None


def request_message(route: RpcRoute[Req, Any], request: Req, payload: bytes) -> RpcMessage:
    if payload and not route.payload:
        raise ValueError(f"{route.name} takes no payload")
    return RpcMessage(request.model_dump(mode="json"), payload)


def reply_of(route: RpcRoute[Any, Rep], message: RpcMessage) -> tuple[Rep, bytes]:
    """The route's reply model from a received reply; RpcError `malformed_reply` when the
    server answered something else."""
    try:
        return route.reply.model_validate(message.meta), message.payload
    except ValidationError as exc:
        reason = f"{route.name} answered {validation_message(exc)}"
        raise RpcError("malformed_reply", reason) from None


def rpc_handler(route: RpcRoute[Req, Rep], server: RpcServer[Req, Rep]) -> RpcHandler:
    """`server` as a handler of raw messages: the request validated against the route,
    the answer encoded as its reply (what `Broker.serve` runs; tests call it directly)."""

    async def handle(message: RpcMessage) -> RpcMessage:
        request = request_of(route, message)
        answer = await server(request, RpcCall(message.payload, message.caller, message.job_id))
        reply, payload = answer if isinstance(answer, tuple) else (answer, b"")
        return RpcMessage(reply.model_dump(mode="json"), payload)

    return handle
