"""RPC messages: a small JSON `meta` part plus an optional binary `payload`.

Images travel as raw bytes in the payload (never base64 in JSON); meta rides in a header
when there is a payload, and is the JSON body when there is none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aio_pika import DeliveryMode, Message
from aio_pika.abc import AbstractIncomingMessage

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
