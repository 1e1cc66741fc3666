"""The CloudEvents 1.0 envelope, carried as AMQP properties and `ce-` headers."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aio_pika import DeliveryMode, Message
from aio_pika.abc import AbstractIncomingMessage

SPECVERSION = "1.0"
JSON = "application/json"
# Deterministic ids for follow-up events: the same cause always yields the same id, so a
# redelivered message republishes identical events and consumers can deduplicate on id.
_FOLLOW_UP_NAMESPACE = uuid.UUID("6f1c7a52-3a0e-4a8e-9d0b-0c1f4b1e2d3a")


class EnvelopeError(ValueError):
    """An incoming message lacks the attributes every imagemesh event carries."""


def new_event_id() -> str:
    return str(uuid.uuid4())


def follow_up_id(cause_id: str, event_type: str, key: str = "") -> str:
    return str(uuid.uuid5(_FOLLOW_UP_NAMESPACE, f"{cause_id}/{event_type}/{key}"))


@dataclass(frozen=True, slots=True)
class Envelope:
    """Who said what, when, about which job, and in answer to which earlier event."""

    id: str
    type: str
    source: str
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    correlation_id: str | None = None
    """The job id: every event of a job carries it."""
    causation_id: str | None = None
    """The id of the event that caused this one (None for a job's first event)."""
    agent_version: str | None = None
    """Extension attribute: version of the service that emitted the event (provenance agent)."""
    agent_host: str | None = None
    """Extension attribute: host (container, pod) the emitting service ran on."""
    datacontenttype: str = JSON
    specversion: str = SPECVERSION

    @property
    def job_id(self) -> str | None:
        return self.correlation_id

    def headers(self) -> dict[str, Any]:
        headers: dict[str, Any] = {
            "ce-specversion": self.specversion,
            "ce-id": self.id,
            "ce-type": self.type,
            "ce-source": self.source,
            "ce-time": self.time.isoformat(),
        }
        if self.subject is not None:
            headers["ce-subject"] = self.subject
        for name, value in (
            ("ce-causationid", self.causation_id),
            ("ce-agentversion", self.agent_version),
            ("ce-agenthost", self.agent_host),
        ):
            if value is not None:
                headers[name] = value
        return headers

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready attributes, for carrying an envelope inside another message."""
        return {**asdict(self), "time": self.time.isoformat()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Envelope:
        if not isinstance(data, Mapping):
            raise EnvelopeError("not an envelope: not an object")
        for name in ("id", "type", "source"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise EnvelopeError(f"not an envelope: {name} must be non-empty text")
        for name in _OPTIONAL_TEXT:
            if data.get(name) is not None and not isinstance(data[name], str):
                raise EnvelopeError(f"not an envelope: {name} must be text")
        known = {f.name for f in fields(cls)}
        try:
            attributes = {k: v for k, v in data.items() if k in known}
            attributes["time"] = _parse_time(data["time"], None)
            return cls(**attributes)
        except (KeyError, TypeError) as exc:
            raise EnvelopeError(f"not an envelope: {exc}") from exc

    def to_message(self, body: bytes, *, headers: dict[str, Any] | None = None) -> Message:
        return Message(
            body,
            content_type=self.datacontenttype,
            message_id=self.id,
            type=self.type,
            app_id=self.source,
            correlation_id=self.correlation_id,
            timestamp=self.time,
            delivery_mode=DeliveryMode.PERSISTENT,
            headers={**(headers or {}), **self.headers()},
        )

    @classmethod
    def from_message(cls, message: AbstractIncomingMessage) -> Envelope:
        headers = message.headers or {}
        event_id = message.message_id or _text(headers.get("ce-id"))
        event_type = message.type or _text(headers.get("ce-type"))
        source = message.app_id or _text(headers.get("ce-source"))
        if not (event_id and event_type and source):
            raise EnvelopeError("message lacks id, type or source (CloudEvents attributes)")
        return cls(
            id=event_id,
            type=event_type,
            source=source,
            time=_parse_time(headers.get("ce-time"), message.timestamp),
            subject=_text(headers.get("ce-subject")),
            correlation_id=message.correlation_id,
            causation_id=_text(headers.get("ce-causationid")),
            agent_version=_text(headers.get("ce-agentversion")),
            agent_host=_text(headers.get("ce-agenthost")),
            datacontenttype=message.content_type or JSON,
            specversion=_text(headers.get("ce-specversion")) or SPECVERSION,
        )


def copy_of(message: AbstractIncomingMessage, headers: dict[str, Any]) -> Message:
    """A persistent copy of a delivered message (to retry, park or re-publish it), with
    its properties kept and its headers replaced."""
    return Message(
        message.body,
        headers=republishable(headers),
        content_type=message.content_type,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        type=message.type,
        app_id=message.app_id,
        timestamp=message.timestamp,
        reply_to=message.reply_to,
        delivery_mode=DeliveryMode.PERSISTENT,
    )


FLOAT32_MAX = 3.4028234663852886e38
INT32_LIMIT = 2**31


def republishable(value: Any) -> Any:
    """Header values as pamqp can encode them again. A delivery may carry what it decodes
    but cannot encode (a long string that is not UTF-8 arrives as bytes, a double beyond
    float32, a decimal beyond 32 bits): a copy to retry or park must still be publishable."""
    if isinstance(value, dict):
        return {key: republishable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [republishable(item) for item in value]
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, float) and not -FLOAT32_MAX <= value <= FLOAT32_MAX:
        return repr(value)
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        if not isinstance(exponent, int) or not value.is_finite():
            return str(value)
        unscaled = int(value.scaleb(-exponent))
        if not -INT32_LIMIT < unscaled < INT32_LIMIT or not 0 <= -exponent <= 255:
            return str(value)
    return value


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


_OPTIONAL_TEXT = (
    "subject",
    "correlation_id",
    "causation_id",
    "agent_version",
    "agent_host",
    "datacontenttype",
    "specversion",
)
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def _parse_time(value: object, fallback: datetime | None) -> datetime:
    text = _text(value)
    if text:
        try:
            parsed = datetime.fromisoformat(text)
            parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            in_utc = parsed.astimezone(UTC)
        except (ValueError, OverflowError) as exc:
            raise EnvelopeError(f"ce-time is not RFC 3339: {text[:64]!r}") from exc
        if not _EARLIEST <= in_utc <= _LATEST:
            raise EnvelopeError(f"ce-time is out of range: {text[:64]!r}")
        return parsed
    if fallback is not None:
        return fallback if fallback.tzinfo else fallback.replace(tzinfo=UTC)
    return datetime.now(UTC)
