"""What arrives on a queue: deliveries whose properties, headers and bodies start from the
mesh's own messages and drift from them (any value of any AMQP type in any header, odd
times, forged `x-death` histories, bodies that are mutated events, deep or huge JSON, or
not JSON at all), and provenancedb RPC requests built the same way."""

from __future__ import annotations

import functools
import json
import struct
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from messaging import topology
from messaging.events import EVENTS_BY_TYPE
from messaging.jobs import JOB_STATUSES as STATUSES
from messaging.rpc import ERROR_CODE_HEADER, ERROR_MESSAGE_HEADER, JOB_HEADER, META_HEADER

from . import samples
from .forms import JSON_VALUES, json_mutant, mostly, rarely
from .wire import (
    KEYS,
    LONGSTR_BYTES,
    Delivery,
    Wire,
    array,
    decodable,
    header_frame,
    string,
    table,
    wire_values,
)

EVENT_TYPES = sorted(EVENTS_BY_TYPE)
QUEUES = (topology.RUNNER_UPLOADS, topology.PROVENANCE_EVENTS)

_OFFSETS = st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m)))
TIMES = st.one_of(
    st.just(samples.TIME.isoformat()),
    st.datetimes(timezones=st.none() | _OFFSETS).map(datetime.isoformat),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59.999999-14:00",
            "2026-02-30T00:00:00Z",
            "2026-01-01",
            "20260101T000000Z",
            "2026-01-01T00:00:00\x00",
            "now",
            "",
        ]
    ),
)
"""`ce-time` values: valid RFC 3339 of any moment and offset, the extremes, and not-times."""


def _short(text: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """A shortstr's bytes (pamqp refuses a shortstr that is not UTF-8)."""
    return text.map(str.encode).filter(lambda raw: len(raw) < 256)


def _other_or(draw: st.DrawFn, value: bytes) -> bytes:
    """A shortstr property: `value` seven times in eight, any text otherwise."""
    return draw(_any_short()) if rarely(draw, 8) else value


@functools.cache
def _any_short() -> st.SearchStrategy[bytes]:
    return _short(st.text())


def _odd_or(draw: st.DrawFn, value: Wire) -> Wire:
    """`value` seven times in eight; otherwise any value of any type, or a long string of
    any bytes."""
    return draw(_odd()) if rarely(draw, 8) else value


@functools.cache
def _odd() -> st.SearchStrategy[Wire]:
    return st.one_of(wire_values(), LONGSTR_BYTES.map(string))


def _entries(draw: st.DrawFn, standard: list[tuple[str, Wire]]) -> list[tuple[bytes, Wire]]:
    """Header entries: each standard one kept, changed or left out; unknown ones added."""
    entries = [
        (name.encode(), _odd_or(draw, value)) for name, value in standard if not rarely(draw, 16)
    ]
    entries += draw(_unknown_entries())
    return draw(st.permutations(entries)) if rarely(draw, 4) else entries


@functools.cache
def _unknown_entries() -> st.SearchStrategy[list[tuple[bytes, Wire]]]:
    return st.lists(st.tuples(KEYS, wire_values()), max_size=2)


@functools.cache
def _event_types(types: tuple[str, ...]) -> st.SearchStrategy[str]:
    return mostly(st.sampled_from(types), st.sampled_from(EVENT_TYPES), st.text(max_size=20))


@functools.cache
def _content_types() -> st.SearchStrategy[bytes]:
    return mostly(st.just(b"application/json"), _short(st.text(max_size=30)))


@functools.cache
def _death(queue: str) -> st.SearchStrategy[Wire]:
    """One `x-death` record as RabbitMQ writes it, give or take."""
    count: st.SearchStrategy[Wire] = mostly(
        st.integers(1, 20).map(lambda n: (b"l", struct.pack(">q", n))),
        st.integers(-(2**63), 2**63 - 1).map(lambda n: (b"l", struct.pack(">q", n))),
        wire_values(),
    )
    standard = [
        (b"count", count),
        (b"reason", mostly(st.just(string("expired")), _odd())),
        (b"queue", mostly(st.just(string(f"{queue}.delay.5s")), _odd())),
        (b"exchange", st.just(string(""))),
        (b"routing-keys", st.just((b"A", array([string(queue)])))),
    ]
    return (
        st.lists(st.sampled_from(standard), max_size=6)
        .flatmap(lambda chosen: st.tuples(*(st.tuples(st.just(k), v) for k, v in chosen)))
        .map(lambda entries: (b"F", table(list(entries))))
    )


@functools.cache
def x_death(queue: str) -> st.SearchStrategy[Wire]:
    return mostly(
        st.lists(_death(queue), max_size=3).map(lambda deaths: (b"A", array(deaths))),
        wire_values(),
    )


@functools.cache
def event_bodies(event_type: str) -> st.SearchStrategy[bytes]:
    sample = samples.event_json(event_type if event_type in EVENTS_BY_TYPE else "job.failed")
    return mostly(
        json_mutant(sample).map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=200),
        hostile_json(),
    )


@functools.cache
def hostile_json() -> st.SearchStrategy[bytes]:
    """JSON texts that trip parsers up: deep nesting, numbers of many digits, bad UTF-8."""
    depth = st.integers(1, 50_000)
    return st.one_of(
        depth.map(lambda n: b"[" * n + b"]" * n),
        depth.map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        st.integers(1, 10_000).map(lambda n: b'{"job_id":' + b"7" * n + b"}"),
        st.integers(1, 10_000).map(lambda n: b"9" * n),
        st.sampled_from([b"", b"null", b"NaN", b'{"a":NaN}', b'"\xff\xfe"', b"\xef\xbb\xbf{}"]),
    )


@st.composite
def deliveries(
    draw: st.DrawFn, queue: str = "q", types: tuple[str, ...] = tuple(EVENT_TYPES)
) -> Delivery:
    """A delivery on a work queue: an event (mostly of `types`), its envelope, its history."""
    event_type = draw(_event_types(types))
    sample = samples.envelope(event_type)
    in_properties = draw(st.booleans())
    properties: dict[str, bytes] = {}
    if not rarely(draw, 6):
        properties["content_type"] = draw(_content_types())
    if in_properties:
        for name, value in (
            ("message_id", sample.id),
            ("message_type", event_type),
            ("app_id", sample.source),
        ):
            if not rarely(draw, 16):
                properties[name] = _other_or(draw, value.encode())
    if not rarely(draw, 6):
        properties["correlation_id"] = _other_or(draw, samples.JOB.encode())
    if rarely(draw, 4):
        properties["timestamp"] = struct.pack(">Q", draw(st.integers(0, 2**35)))
    standard = [
        ("ce-specversion", string("1.0")),
        ("ce-time", string(draw(TIMES))),
        ("ce-subject", string(samples.JOB)),
        ("ce-causationid", string(sample.causation_id or "")),
        ("ce-agentversion", string("0.1.0")),
        ("ce-agenthost", string("host-1")),
    ]
    if not in_properties:
        standard += [
            ("ce-id", string(sample.id)),
            ("ce-type", string(event_type)),
            ("ce-source", string(sample.source)),
        ]
    entries = _entries(draw, standard)
    if rarely(draw, 3):
        entries.append((b"x-death", draw(x_death(queue))))
    properties["headers"] = table(entries)
    properties["user_id"] = draw(_senders(event_type))
    body = draw(event_bodies(event_type))
    return decodable(Delivery(header_frame(properties, len(body)), body))


OPERATOR_USER = b"imagemesh"
"""The broker user the fuzz targets' settings trust as an operator (the default)."""


@st.composite
def _senders(draw: st.DrawFn, event_type: str) -> bytes:
    """The AMQP user_id: mostly a service that publishes the event (or an operator), so
    that deliveries reach the handler; rarely someone who may not (the consumer parks it)."""
    owners = EVENTS_BY_TYPE[event_type].published_by if event_type in EVENTS_BY_TYPE else ()
    if rarely(draw, 8) or not owners:
        return draw(st.sampled_from([b"", b"imageproc", b"nobody", b"upload\x00"]))
    return draw(st.sampled_from([*(owner.encode() for owner in owners), OPERATOR_USER]))


@functools.cache
def _rpc_metas() -> st.SearchStrategy[str]:
    return mostly(provenance_metas().map(json.dumps), JSON_VALUES.map(json.dumps))


@st.composite
def rpc_deliveries(draw: st.DrawFn) -> Delivery:
    """An RPC request or reply: meta in the body or in a header beside a binary payload,
    perhaps an error code and message."""
    meta = draw(_rpc_metas())
    entries: list[tuple[bytes, Wire]] = []
    if draw(st.booleans()):
        entries.append((META_HEADER.encode(), _odd_or(draw, string(meta))))
        body = draw(st.binary(max_size=100))
    elif rarely(draw, 8):
        body = draw(st.one_of(hostile_json(), st.binary(max_size=100)))
    else:
        body = meta.encode()
    if rarely(draw, 4):
        entries.append((ERROR_CODE_HEADER.encode(), _odd_or(draw, string("bad_request"))))
        if draw(st.booleans()):
            entries.append((ERROR_MESSAGE_HEADER.encode(), _odd_or(draw, string("no"))))
    if draw(st.booleans()):
        entries.append((JOB_HEADER.encode(), _odd_or(draw, string(samples.JOB))))
    entries += draw(_unknown_entries())
    properties = {"headers": table(entries), "correlation_id": b"c0ffee"}
    if not rarely(draw, 6):
        properties["reply_to"] = b"amq.gen-reply"
    # Mostly a caller of the route the rpc target serves (provenancedb's), rarely not.
    properties["user_id"] = b"imageproc" if rarely(draw, 8) else b"upload"
    return decodable(Delivery(header_frame(properties, len(body)), body))


# --- provenancedb RPC requests -----------------------------------------------------------

ROUTES = ("record", "job-status", "job-provenance", "lineage", "jobs", "job-counts")


@functools.cache
def _record_requests() -> st.SearchStrategy[dict[str, Any]]:
    items = st.lists(st.sampled_from(EVENT_TYPES), min_size=1, max_size=3).map(
        lambda types: [samples.record_item(t) for t in types]
    )
    return items.flatmap(lambda found: st.builds(_record_edit, st.just(found), _record_edits()))


@functools.cache
def _record_edits() -> st.SearchStrategy[tuple[str, str, Any]]:
    """Targeted edits of one item: the envelope's fields, the event's durations."""
    fields = st.sampled_from(["id", "type", "source", "time", "subject", "causation_id"])
    return st.one_of(
        st.tuples(st.just("envelope"), fields, JSON_VALUES),
        st.tuples(st.just("envelope"), st.just("time"), TIMES),
        st.tuples(st.just("event"), st.just("duration_ms"), st.floats() | st.integers()),
        st.tuples(st.just("item"), st.sampled_from(["envelope", "event"]), JSON_VALUES),
        st.tuples(st.just("none"), st.just(""), st.none()),
    )


def _record_edit(found: list[dict[str, Any]], edit: tuple[str, str, Any]) -> dict[str, Any]:
    where, name, value = edit
    first = found[0]
    if where == "item":
        first[name] = value
    elif where != "none":
        first[where][name] = value
    return {"events": found}


@functools.cache
def _cursors() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.just(samples.cursor(["2026-03-04T05:06:07.891011Z", samples.JOB])),
        JSON_VALUES.map(samples.cursor),
        st.integers(1, 20_000).map(lambda n: samples.cursor_of_text("[" * n)),
        st.integers(1, 10_000).map(lambda n: samples.cursor_of_text("9" * n)),
        st.text(max_size=40),
        JSON_VALUES,
    )


@functools.cache
def _jobs_metas() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "status": mostly(st.sampled_from(sorted(STATUSES)), JSON_VALUES),
            "limit": mostly(st.integers(1, 100), JSON_VALUES),
            "before": _cursors(),
            "owner": mostly(st.sampled_from(["local", "alice@example.org"]), JSON_VALUES),
        },
    )


@functools.cache
def _record_metas() -> st.SearchStrategy[dict[str, Any]]:
    return _record_requests().flatmap(lambda meta: mostly(st.just(meta), json_mutant(meta)))


@functools.cache
def provenance_metas() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        _record_metas(),
        _jobs_metas(),
        st.fixed_dictionaries({"job_id": mostly(st.just(samples.JOB), JSON_VALUES)}),
        st.fixed_dictionaries({"sha256": mostly(st.just(samples.SHA), JSON_VALUES)}),
        st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4),
    )


@functools.cache
def provenance_requests() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(route, meta): mostly a meta made for the route, sometimes any meta to any route."""
    job = st.fixed_dictionaries({"job_id": mostly(st.just(samples.JOB), JSON_VALUES)})
    return st.one_of(
        st.tuples(st.just("record"), _record_metas()),
        st.tuples(st.just("jobs"), _jobs_metas()),
        st.tuples(st.sampled_from(["job-status", "job-provenance"]), job),
        st.tuples(
            st.just("lineage"),
            st.fixed_dictionaries(
                {"sha256": mostly(st.just(samples.SHA), JSON_VALUES)},
                optional={"owner": mostly(st.just("local"), JSON_VALUES)},
            ),
        ),
        st.tuples(
            st.just("job-counts"),
            st.fixed_dictionaries({"owner": mostly(st.just("local"), JSON_VALUES)}),
        ),
        st.tuples(st.sampled_from(ROUTES), provenance_metas()),
    )
