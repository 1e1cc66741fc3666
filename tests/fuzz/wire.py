"""AMQP deliveries as they come off the wire: a content header frame encoded here, byte by
byte, and decoded by pamqp exactly as aiormq decodes it, into a real aio-pika
`IncomingMessage`.

Encoding by hand lets the examples hold what pamqp itself would never encode but a
publisher (any other client library) may send and pamqp will decode: long strings that are
not UTF-8 (they decode to `bytes`), byte arrays, doubles, decimals, timestamps, voids,
nested tables and arrays, duplicate keys, in any header.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aiormq.abc import DeliveredMessage
from hypothesis import assume
from hypothesis import strategies as st
from pamqp import commands
from pamqp.header import ContentHeader

Wire = tuple[bytes, bytes]
"""One field value on the wire: its type tag and its encoded bytes."""


@dataclass
class Channel:
    """The channel an incoming message is settled on: records what was done to it."""

    settled: list[str] = field(default_factory=list)
    is_closed: bool = False

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.settled.append("ack")

    async def basic_nack(
        self, delivery_tag: int, multiple: bool = False, requeue: bool = True
    ) -> None:
        self.settled.append(f"nack requeue={requeue}")

    async def basic_reject(self, delivery_tag: int, requeue: bool = True) -> None:
        self.settled.append(f"reject requeue={requeue}")


@dataclass(frozen=True)
class Delivery:
    """A delivered message: its content header frame (as sent) and its body."""

    header_frame: bytes
    body: bytes

    def header(self) -> ContentHeader:
        header = ContentHeader()
        header.unmarshal(self.header_frame)
        return header

    def message(self, channel: Channel | None = None) -> aio_pika.IncomingMessage:
        delivered = DeliveredMessage(
            delivery=commands.Basic.Deliver(
                consumer_tag="fuzz", delivery_tag=1, exchange="imagemesh.events", routing_key="k"
            ),
            header=self.header(),
            body=self.body,
            channel=channel or Channel(),  # type: ignore[arg-type]  # the settling part only
        )
        return aio_pika.IncomingMessage(delivered)

    def __repr__(self) -> str:
        properties = self.header().properties
        shown = {
            name: getattr(properties, name)
            for name in properties.__slots__
            if getattr(properties, name, None) not in (None, "")
        }
        return f"Delivery(properties={shown!r}, body={self.body[:300]!r})"

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:
        """How Hypothesis shows a falsifying example: decoded, not as frame bytes."""
        printer.text(repr(self))


# --- Encoding ----------------------------------------------------------------------------


def shortstr(value: bytes) -> bytes:
    return struct.pack(">B", len(value)) + value


def longstr(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def table(entries: list[tuple[bytes, Wire]]) -> bytes:
    """A field table (keys may repeat: the last one wins when decoded)."""
    return longstr(b"".join(shortstr(key) + tag + data for key, (tag, data) in entries))


def array(values: list[Wire]) -> bytes:
    return longstr(b"".join(tag + data for tag, data in values))


_PROPERTIES: tuple[tuple[str, int, str], ...] = (
    ("content_type", 0x8000, "shortstr"),
    ("content_encoding", 0x4000, "shortstr"),
    ("headers", 0x2000, "table"),
    ("delivery_mode", 0x1000, "octet"),
    ("priority", 0x0800, "octet"),
    ("correlation_id", 0x0400, "shortstr"),
    ("reply_to", 0x0200, "shortstr"),
    ("expiration", 0x0100, "shortstr"),
    ("message_id", 0x0080, "shortstr"),
    ("timestamp", 0x0040, "timestamp"),
    ("message_type", 0x0020, "shortstr"),
    ("user_id", 0x0010, "shortstr"),
    ("app_id", 0x0008, "shortstr"),
)


def header_frame(properties: dict[str, bytes], body_size: int) -> bytes:
    """A Basic content header frame's payload; `properties` holds each present property
    already encoded (a shortstr's bytes without length, a table as `table()` made it)."""
    flags, encoded = 0, []
    for name, flag, kind in _PROPERTIES:
        if name in properties:
            flags |= flag
            value = properties[name]
            encoded.append(shortstr(value) if kind == "shortstr" else value)
    return struct.pack(">HHQH", 60, 0, body_size, flags) + b"".join(encoded)


# --- Strategies --------------------------------------------------------------------------


def _packed(tag: bytes, fmt: str) -> Callable[[Any], Wire]:
    return lambda value: (tag, struct.pack(fmt, value))


_TEXT = st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass"))
LONGSTR_BYTES = st.one_of(_TEXT, st.binary(max_size=40))
"""Long string contents: mostly UTF-8, some not (pamqp decodes those to bytes)."""


@functools.cache
def _scalar_values() -> st.SearchStrategy[Wire]:
    return st.one_of(
        st.tuples(st.just(b"S"), LONGSTR_BYTES.map(longstr)),
        st.integers(0, 1).map(_packed(b"t", ">B")),
        st.integers(-(2**7), 2**7 - 1).map(_packed(b"b", ">b")),
        st.integers(0, 2**8 - 1).map(_packed(b"B", ">B")),
        st.integers(-(2**15), 2**15 - 1).map(_packed(b"s", ">h")),
        st.integers(0, 2**16 - 1).map(_packed(b"u", ">H")),
        st.integers(-(2**31), 2**31 - 1).map(_packed(b"I", ">i")),
        st.integers(0, 2**32 - 1).map(_packed(b"i", ">I")),
        st.integers(-(2**63), 2**63 - 1).map(_packed(b"l", ">q")),
        st.floats(width=32).map(_packed(b"f", ">f")),
        st.floats().map(_packed(b"d", ">d")),
        st.tuples(st.integers(0, 255), st.integers(0, 2**32 - 1)).map(
            lambda d: (b"D", struct.pack(">BI", *d))
        ),
        st.integers(0, 2**35).map(_packed(b"T", ">Q")),
        st.just((b"V", b"")),
        st.binary(max_size=40).map(lambda b: (b"x", longstr(b))),
    )


KEYS = st.text(max_size=12).map(lambda s: s.encode()).filter(lambda k: len(k) < 256)


@functools.cache
def wire_values() -> st.SearchStrategy[Wire]:
    return st.recursive(
        _scalar_values(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4).map(lambda values: (b"A", array(values))),
            st.lists(st.tuples(KEYS, inner), max_size=4).map(lambda e: (b"F", table(e))),
        ),
        max_leaves=10,
    )


def string(text: str | bytes) -> Wire:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return (b"S", longstr(raw))


def decodable(delivery: Delivery) -> Delivery:
    """Keep only deliveries pamqp decodes (aiormq would close the connection otherwise)."""
    try:
        delivery.header()
    except Exception:
        assume(False)
    return delivery
