"""The crashes the fuzz targets found, each reduced to one input and held to the documented
outcome; all are fixed. A new finding goes here first, pinned with
`pytest.mark.xfail(strict=True, reason=...)` and listed in `known.KNOWN` until it is fixed."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from messaging import Envelope, EnvelopeError, RpcError, RpcMessage, topology
from messaging._consumer import _Consumer
from messaging.events import ImageUploaded
from messaging.rpc import META_HEADER, RpcHandler, rpc_handler
from messaging.testing import MemoryServer
from pipeline import ImageLimits, harden_vips
from provenancedb.app import Recorder
from provenancedb.history import decode_cursor
from upload.errors import ApiError
from upload.intake import Upload, read_upload

from . import samples
from .images import seeds
from .targets import CouchStandIn, mocked_request, wire_broker
from .wire import Channel, Delivery, header_frame, string, table

# --- upload --------------------------------------------------------------------------------


def _form(*parts: tuple[str, bytes]) -> bytes:
    body = b"".join(
        b'--b\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (name.encode(), data)
        for name, data in parts
    )
    return body + b"--b--\r\n"


async def _upload(body: bytes, *, chunked: bool = False) -> Upload | ApiError:
    harden_vips()
    framing = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(len(body)))
    headers = [("Content-Type", "multipart/form-data; boundary=b"), framing]
    request, feeding = mocked_request(headers, body)
    try:
        return await read_upload(request, max_bytes=64 * 1024, limits=ImageLimits(), max_ops=10)
    except ApiError as exc:
        return exc
    finally:
        feeding.cancel()


async def test_a_long_charset_field_is_a_bad_request() -> None:
    outcome = await _upload(_form(("_charset_", b"x" * 40), ("file", seeds()["png"])))
    assert isinstance(outcome, ApiError)
    assert (outcome.status, outcome.code) == (400, "bad_request")


async def test_a_filename_that_is_not_utf8_never_reaches_the_events() -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="\xff.png"\r\n\r\n'
        + seeds()["png"]
        + b"\r\n--b--\r\n"
    )
    outcome = await _upload(body)
    if isinstance(outcome, ApiError):  # refusing it is as good as cleaning it
        assert (outcome.status, outcome.code) == (400, "bad_request")
        return
    event = samples.events()["upload.received"].model_copy(update={"filename": outcome.filename})
    event.model_dump_json()


async def test_a_chunked_request_is_refused_once_it_outgrows_the_limit() -> None:
    # 4 MiB of a field nobody reads, then a small file: all of it read, then accepted.
    outcome = await _upload(
        _form(("other", b"x" * (4 * 1024 * 1024)), ("file", seeds()["png"])), chunked=True
    )
    assert isinstance(outcome, ApiError)
    # Refused before a byte is read: an upload must say its length.
    assert (outcome.status, outcome.code) == (411, "length_required")


# --- RPC messages --------------------------------------------------------------------------


def _rpc(headers: list[tuple[bytes, tuple[bytes, bytes]]], body: bytes) -> Delivery:
    properties = {"headers": table(headers), "reply_to": b"amq.gen-reply"}
    return Delivery(header_frame(properties, len(body)), body)


def test_rpc_meta_header_that_is_not_utf8_is_malformed() -> None:
    delivery = _rpc([(META_HEADER.encode(), string(b'{"a":"\xff"}'))], b"payload")
    with pytest.raises(RpcError) as refused:
        RpcMessage.from_message(delivery.message())
    assert refused.value.code == "malformed_request"


def test_deeply_nested_rpc_meta_is_malformed() -> None:
    delivery = _rpc([], b"[" * 100_000)
    with pytest.raises(RpcError) as refused:
        RpcMessage.from_message(delivery.message())
    assert refused.value.code == "malformed_request"


def test_rpc_meta_with_a_5000_digit_number_is_malformed() -> None:
    delivery = _rpc([], b'{"limit": ' + b"9" * 5000 + b"}")
    with pytest.raises(RpcError) as refused:
        RpcMessage.from_message(delivery.message())
    assert refused.value.code == "malformed_request"


# --- provenancedb --------------------------------------------------------------------------


async def _record(change_envelope: dict[str, Any], change_event: dict[str, Any]) -> None:
    """Ask provenancedb to record one image.processed event, changed as given."""
    item = samples.record_item("image.processed")
    item["envelope"] |= change_envelope
    item["event"] |= change_event
    await _recorder(topology.PROVENANCE_RECORD)(RpcMessage({"events": [item]}))


def _recorder(route: topology.RpcRoute[Any, Any]) -> RpcHandler:
    """provenancedb's handler of `route` on a stand-in store, as `Broker.serve` runs it."""
    recorder = Recorder(CouchStandIn())  # type: ignore[arg-type]  # the methods it uses
    handlers: dict[str, Any] = {
        topology.PROVENANCE_RECORD.name: recorder.on_record_request,
        topology.PROVENANCE_JOBS.name: recorder.on_jobs_request,
    }
    return rpc_handler(route, handlers[route.name])


async def test_a_record_request_whose_envelope_is_not_an_object_is_a_bad_request() -> None:
    request = RpcMessage({"events": [{"envelope": "x", "event": {}}]})
    with pytest.raises(RpcError) as refused:
        await _recorder(topology.PROVENANCE_RECORD)(request)
    assert refused.value.code == "bad_request"


async def test_a_record_request_whose_source_is_not_text_is_a_bad_request() -> None:
    with pytest.raises(RpcError) as refused:
        await _record({"source": None}, {})
    assert refused.value.code == "bad_request"


def test_an_envelope_whose_id_is_not_text_is_refused() -> None:
    with pytest.raises(EnvelopeError):
        Envelope.from_dict({**samples.envelope("image.processed").as_dict(), "id": 42})


async def test_a_time_beyond_the_utc_range_is_a_bad_request() -> None:
    with pytest.raises(RpcError) as refused:
        await _record({"time": "0001-01-01T00:00:00+14:00"}, {})
    assert refused.value.code == "bad_request"


async def test_a_huge_duration_is_a_bad_request() -> None:
    with pytest.raises(RpcError) as refused:
        await _record({}, {"duration_ms": 1e300})
    assert refused.value.code == "bad_request"


async def test_a_nan_duration_is_a_bad_request() -> None:
    with pytest.raises(RpcError) as refused:
        await _record({}, {"duration_ms": float("nan")})
    assert refused.value.code == "bad_request"


async def test_a_status_that_is_a_list_is_a_bad_request() -> None:
    with pytest.raises(RpcError) as refused:
        await _recorder(topology.PROVENANCE_JOBS)(RpcMessage({"status": ["queued"], "limit": 1}))
    assert refused.value.code == "bad_request"


def test_a_cursor_holding_deep_json_is_a_bad_request() -> None:
    with pytest.raises(RpcError) as refused:
        decode_cursor(samples.cursor_of_text("[" * 100_000))
    assert refused.value.code == "bad_request"


# --- consuming -----------------------------------------------------------------------------


def _uploaded(headers: list[tuple[bytes, tuple[bytes, bytes]]]) -> Delivery:
    """An image.uploaded delivery on the runner's queue, with extra `headers`."""
    envelope = samples.envelope("image.uploaded")
    body = json.dumps(samples.event_json("image.uploaded")).encode()
    properties = {
        "message_id": envelope.id.encode(),
        "message_type": b"image.uploaded",
        "app_id": envelope.source.encode(),
        "user_id": b"upload",  # the AMQP user that may publish it
        "headers": table(headers),
    }
    return Delivery(header_frame(properties, len(body)), body)


async def _consume(delivery: Delivery, handler_fails: bool) -> MemoryServer:
    broker = await wire_broker()

    async def handler(event: ImageUploaded, ctx: object) -> None:
        if handler_fails:
            raise RuntimeError("handler failed")

    spec = topology.RUNNER_UPLOADS
    consumer = _Consumer(broker, spec, {ImageUploaded.type: ImageUploaded}, handler, None, False)
    channel = Channel()
    await consumer.handle(delivery.message(channel))
    assert channel.settled == ["ack"]
    return broker.server


async def test_a_message_with_a_header_that_is_not_utf8_can_be_retried() -> None:
    server = await _consume(_uploaded([(b"x-trace", string(b"\xff"))]), handler_fails=True)
    assert not server.unpublishable
    assert [key for _, key, _ in server.published] == [topology.RUNNER_UPLOADS.delay_name(1.0)]


async def test_a_message_with_a_forged_x_death_is_handled() -> None:
    # x-death as a string, not an array of tables: RabbitMQ never writes it, anyone may.
    server = await _consume(_uploaded([(b"x-death", string("forged"))]), handler_fails=False)
    assert not server.published


async def test_a_negative_x_death_count_is_not_a_negative_attempt() -> None:
    count = (b"l", struct.pack(">q", -5))
    death = table(
        [
            (b"count", count),
            (b"reason", string("expired")),
            (b"queue", string(f"{topology.RUNNER_UPLOADS.name}.delay.1s")),
        ]
    )
    deaths = (b"A", struct.pack(">I", 1 + len(death)) + b"F" + death)
    server = await _consume(_uploaded([(b"x-death", deaths)]), handler_fails=True)
    assert server.published
