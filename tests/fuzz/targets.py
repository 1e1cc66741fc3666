"""The fuzz targets: the product code each drives, and the property each checks.

- `upload`: `read_upload` on a request whose raw body arrives in chunks;
- `upload-stream`: the same through a real in-process aiohttp server, large streamed
  bodies, with the memory `read_upload` holds measured against `max_bytes`;
- `envelope`: what a consumer reads off a delivery, `Envelope.from_message` and the event;
- `consumer`: `_Consumer.handle` on a delivery, with the real broker on an in-memory
  server (`messaging.testing`: its publishes are encoded as aiormq would, and recorded);
- `rpc`: `RpcMessage.from_message` / `error_from_message`, and `Broker._answer` serving a
  request end to end;
- `input-headers`: the input-only formats' header checks and Pillow decoding
  (`headers`);
- `provenancedb`: provenancedb's RPC handlers on any request meta (validated against each
  route's request model, as `Broker.serve` does), with a store that holds documents to
  what CouchDB would accept.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import tracemalloc
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from unittest import mock

import aio_pika
from aiohttp import StreamReader, web
from aiohttp.test_utils import TestServer, make_mocked_request
from hypothesis import strategies as st
from pydantic import ValidationError

from messaging import (
    BrokerSettings,
    Envelope,
    EnvelopeError,
    MessageContext,
    PermanentError,
    RpcError,
    RpcMessage,
    topology,
)
from messaging._consumer import _Consumer
from messaging.events import ALL_EVENTS, EVENTS_BY_TYPE, Event, ImageUploaded
from messaging.jobs import fold_status
from messaging.logs import message_context
from messaging.rpc import error_from_message, rpc_handler
from messaging.testing import MemoryBroker
from pipeline import (
    ImageLimits,
    ImageRejected,
    check_limits,
    harden_vips,
    parse_pipeline,
    sniff_format,
)
from provenancedb.app import Recorder
from provenancedb.history import decode_cursor, encode_cursor
from upload.errors import ApiError
from upload.intake import MULTIPART_OVERHEAD, BodyRules, Upload, read_upload

from .engine import Target, Violation
from .forms import Form, forms
from .headers import InputHeaders
from .messages import QUEUES, deliveries, provenance_requests, rpc_deliveries
from .streams import Stream, send, streams
from .wire import Channel, Delivery

# --- upload --------------------------------------------------------------------------------

DOCUMENTED = {
    "bad_request": 400,
    "missing_file": 400,
    "invalid_pipeline": 400,
    "body_timeout": 408,
    "length_required": 411,
    "too_large": 413,
    "unsupported_type": 415,
    "undecodable": 422,
    "too_many_pixels": 422,
    "too_large_side": 422,
    "too_many_frames": 422,
    "too_many_scans": 422,
}
"""Every way `read_upload` may refuse (POST /api/v1/jobs in the OpenAPI document)."""
MAX_MESSAGE = 600
"""Error messages quote the client's input: cut, never whole."""
READ_BUFFER = 2**16
"""aiohttp's default read buffer (`read_bufsize`): the request payload's limit."""
IN_FLIGHT = 2 * READ_BUFFER + 256 * 1024
"""What the server may have received beyond what was read: the payload's buffer up to
its high-water mark, and one more socket read (asyncio reads 256 KiB at a time)."""


def refused(exc: ApiError) -> str:
    """The refusal is documented, and its message is short and on one line."""
    if DOCUMENTED.get(exc.code) != exc.status:
        raise Violation("undocumented_refusal", f"{exc.status} {exc.code}: {exc.message}")
    if not exc.message or len(exc.message) > MAX_MESSAGE:
        raise Violation("error_message_length", f"{len(exc.message)} characters")
    if any(ord(char) < 32 or char in "\x7f\u2028\u2029" for char in exc.message):
        raise Violation("error_message_control_characters", repr(exc.message[:200]))
    body = json.loads(exc.response().body)  # type: ignore[arg-type]  # bytes here
    assert body == {"error": {"code": exc.code, "message": exc.message}}
    return f"{exc.status} {exc.code}"


def accepted(
    upload: Upload, body: bytes | None, max_bytes: int, limits: ImageLimits, max_ops: int
) -> str:
    """What an accepted upload promises: in the limits, typed by content, hashed."""
    with upload:  # its spool is gone afterwards, as after a request
        data = upload.spool.reader().read()
    if len(data) != upload.size:
        raise Violation("accepted_size_wrong", f"{upload.size} said, {len(data)} spooled")
    if len(data) > max_bytes:
        raise Violation("accepted_too_large", f"{len(data)} > {max_bytes}")
    if sniff_format(data[:64]) != upload.info.format:
        raise Violation("accepted_wrong_type", f"{upload.info.format} by header")
    try:
        check_limits(upload.info, limits)
    except ImageRejected as exc:
        raise Violation("accepted_over_limits", exc.message) from exc
    if upload.filename is not None and not _is_text(upload.filename):
        # It goes into events next (UploadReceived, ImageUploaded): JSON wants UTF-8.
        raise Violation("filename_not_text", repr(upload.filename))
    if hashlib.sha256(data).hexdigest() != upload.sha256:
        raise Violation("accepted_wrong_hash", upload.sha256)
    if body is not None and data not in body:
        raise Violation("accepted_data_not_sent", f"{len(data)} bytes")
    if len(parse_pipeline(upload.pipeline, max_ops=max_ops)) != len(upload.pipeline):
        raise Violation("accepted_pipeline_changes", repr(upload.pipeline))
    return "202 accepted"


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class UploadForm(Target):
    name = "upload"
    summary = "read_upload on a raw multipart request, its body in chunks"
    suite_examples = 200

    def strategy(self) -> st.SearchStrategy[Form]:
        return forms()

    async def start(self) -> None:
        harden_vips()

    async def check(self, example: Form) -> str:
        request, feeding = mocked_request(example.headers, example.body, example.chunks)
        try:
            upload = await read_upload(
                request,
                max_bytes=example.max_bytes,
                limits=example.limits,
                max_ops=example.max_ops,
            )
        except ApiError as exc:
            return refused(exc)
        finally:
            feeding.cancel()
        return accepted(upload, example.body, example.max_bytes, example.limits, example.max_ops)


class UploadStream(Target):
    name = "upload-stream"
    summary = "read_upload in a real aiohttp server on large streamed bodies, memory measured"
    timeout = 60.0
    suite_examples = 6
    max_bytes = 256 * 1024
    largest = 16 * max_bytes
    slack = 2 * 1024 * 1024
    """Memory `read_upload` may hold beyond its file buffers (aiohttp's read buffers)."""
    body = BodyRules(memory_bytes=64 * 1024)
    """Files past 64 KiB go to disk: the spool's disk path is fuzzed too."""

    def __init__(self) -> None:
        self._outcomes: list[BaseException | Upload] = []
        self._server: TestServer | None = None
        self._read = 0
        self.most_held = 0
        """The most memory one example held (bytes), for the record."""

    def strategy(self) -> st.SearchStrategy[Stream]:
        return streams(self.max_bytes, self.largest)

    async def start(self) -> None:
        harden_vips()
        app = web.Application()
        app.router.add_post("/api/v1/jobs", self._handle)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        tracemalloc.start()

    async def stop(self) -> None:
        tracemalloc.stop()
        if self._server is not None:
            await self._server.close()

    def measures(self) -> dict[str, float]:
        return {"most memory one request held, MiB": round(self.most_held / 2**20, 2)}

    async def _handle(self, request: web.Request) -> web.Response:
        limits = ImageLimits()
        try:
            upload = await read_upload(
                request, max_bytes=self.max_bytes, limits=limits, max_ops=10, body=self.body
            )
        except Exception as exc:
            self._outcomes.append(exc)
            return web.Response(status=exc.status if isinstance(exc, ApiError) else 500)
        finally:
            self._read = request.content.total_bytes
        self._outcomes.append(upload)
        return web.Response(status=202)

    async def check(self, example: Stream) -> str:
        assert self._server is not None
        assert self._server.port is not None
        self._outcomes.clear()
        baseline, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        status = await send(self._server.host, self._server.port, example)
        _, peak = tracemalloc.get_traced_memory()
        held = peak - baseline
        self.most_held = max(self.most_held, held)
        if held > 3 * self.max_bytes + self.slack:
            raise Violation("memory", f"{held} bytes held for a {self.max_bytes} byte limit")
        if not self._outcomes:
            return f"{status} before the handler"
        if self._read > self.max_bytes + MULTIPART_OVERHEAD + IN_FLIGHT:
            raise Violation("unbounded_read", f"read {self._read} bytes before deciding")
        (outcome,) = self._outcomes
        if isinstance(outcome, ApiError):
            return refused(outcome)
        if isinstance(outcome, BaseException):
            raise outcome
        return accepted(outcome, None, self.max_bytes, ImageLimits(), 10)


def mocked_request(
    headers: Iterable[tuple[str, str]], body: bytes, chunks: tuple[int, ...] = ()
) -> tuple[web.Request, asyncio.Task[None]]:
    """A POST /api/v1/jobs request (on the running loop) and the task feeding it `body`,
    `chunks` bytes at a time (all at once if none), then the end of the body."""
    payload = StreamReader(mock.Mock(), READ_BUFFER, loop=asyncio.get_running_loop())
    request = make_mocked_request("POST", "/api/v1/jobs", headers=list(headers), payload=payload)
    return request, asyncio.create_task(_feed(payload, body, chunks))


async def _feed(payload: StreamReader, body: bytes, chunks: tuple[int, ...]) -> None:
    sizes = itertools.cycle(chunks) if chunks else itertools.repeat(len(body))
    at = 0
    while at < len(body):
        size = next(sizes)
        payload.feed_data(body[at : at + size])
        at += size
        await asyncio.sleep(0)
    payload.feed_eof()


# --- messages ------------------------------------------------------------------------------

REPLY_TO = "amq.gen-reply"
"""The reply queue of every RPC delivery that names one (`messages.rpc_deliveries`)."""
SETTINGS = BrokerSettings(rabbitmq_password="unused", amqp_max_message_bytes=1024 * 1024)


def envelope_holds(envelope: Envelope) -> None:
    """An envelope from a message is typed as declared and survives its own round trips."""
    for name in ("id", "type", "source", "datacontenttype", "specversion"):
        if not isinstance(getattr(envelope, name), str):
            raise Violation("envelope_attribute_type", f"{name}={getattr(envelope, name)!r}")
    for name in ("subject", "correlation_id", "causation_id", "agent_version", "agent_host"):
        if not isinstance(getattr(envelope, name), str | None):
            raise Violation("envelope_attribute_type", f"{name}={getattr(envelope, name)!r}")
    if not isinstance(envelope.time, datetime) or envelope.time.tzinfo is None:
        raise Violation("envelope_time", repr(envelope.time))
    if Envelope.from_dict(envelope.as_dict()) != envelope:
        raise Violation("envelope_round_trip", repr(envelope))
    with message_context(envelope, queue="q"):
        envelope.headers()


class EnvelopeDecoding(Target):
    name = "envelope"
    summary = "Envelope.from_message + EVENTS_BY_TYPE[type].model_validate_json on a delivery"
    suite_examples = 200

    def strategy(self) -> st.SearchStrategy[Delivery]:
        return deliveries()

    async def check(self, example: Delivery) -> str:
        message = example.message()
        try:
            envelope = Envelope.from_message(message)
        except EnvelopeError:
            return "EnvelopeError"
        envelope_holds(envelope)
        event_cls = EVENTS_BY_TYPE.get(envelope.type)
        if event_cls is None:
            return "unknown type"
        try:
            event_cls.model_validate_json(message.body)
        except ValidationError:
            return "ValidationError"
        return "event"


async def wire_broker() -> MemoryBroker:
    """The real Broker (publishing, parking, retrying, answering RPCs) on an in-memory
    server holding the mesh's queues (`messaging.testing`): every publish is encoded as
    aiormq would encode it (`server.unpublishable` says why one could not be), routed, and
    recorded (`server.published`). The RPC deliveries' caller has its reply queue."""
    broker = MemoryBroker(service="fuzz", settings=SETTINGS)
    await broker.connect()
    await broker.provision()
    replies = await (await broker.channel()).declare_queue(REPLY_TO)
    await replies.bind(topology.REPLY_EXCHANGE, REPLY_TO)
    return broker


class Consuming(Target):
    name = "consumer"
    summary = "_Consumer.handle on a delivery: handled, retried or parked, never raising"
    suite_examples = 120

    def strategy(self) -> st.SearchStrategy[tuple[int, str, bool, Delivery]]:
        return st.integers(0, len(QUEUES) - 1).flatmap(
            lambda n: st.tuples(
                st.just(n),
                st.sampled_from(["ok", "fails", "refuses"]),
                st.booleans(),
                deliveries(QUEUES[n].name, tuple(cls.type for cls in _accepts(n))),
            )
        )

    async def check(self, example: tuple[int, str, bool, Delivery]) -> str:
        queue, outcome, record_retries, delivery = example
        spec = QUEUES[queue]
        broker = await wire_broker()

        async def handler(event: Event, ctx: MessageContext) -> None:
            if outcome == "fails":
                raise RuntimeError("handler failed")
            if outcome == "refuses":
                raise PermanentError("handler refused")

        consumer = _Consumer(
            broker, spec, {cls.type: cls for cls in _accepts(queue)}, handler, None, record_retries
        )
        channel = Channel()
        await consumer.handle(delivery.message(channel))
        if broker.server.unpublishable:
            raise Violation("unpublishable_copy", broker.server.unpublishable[0])
        if channel.settled != ["ack"]:
            raise Violation("not_settled_once", repr(channel.settled))
        return f"handler {outcome}: {_disposal(broker)}"


def _accepts(queue: int) -> tuple[type[Event], ...]:
    """What the service consuming QUEUES[queue] subscribes to."""
    return (ImageUploaded,) if QUEUES[queue] is topology.RUNNER_UPLOADS else ALL_EVENTS


def _disposal(broker: MemoryBroker) -> str:
    """What became of a message: parked, sent to a delay queue, answered, or only acked."""
    routes = [(exchange, key) for exchange, key, _ in broker.server.published]
    if any(exchange == topology.DEAD_LETTER_EXCHANGE for exchange, _ in routes):
        return "parked"
    for _, key in routes:
        if ".delay." in key:
            return f"retry via {key.rsplit('.', 1)[-1]}"
    return f"published to {routes[0][0] or 'the default exchange'}" if routes else "acked"


MALFORMED = "malformed_request"
"""The code `RpcMessage.from_message` refuses a request with."""


class RpcDecoding(Target):
    name = "rpc"
    summary = "RpcMessage.from_message, error_from_message, and Broker._answer serving it"
    suite_examples = 200

    def strategy(self) -> st.SearchStrategy[Delivery]:
        return rpc_deliveries()

    async def check(self, example: Delivery) -> str:
        label = _rpc_parse(example.message())
        error = error_from_message(example.message())
        if error is not None and not (
            isinstance(error.code, str) and isinstance(error.message, str)
        ):
            raise Violation("rpc_error_fields", repr(error))
        broker = await wire_broker()
        channel = Channel()

        async def echo(request: RpcMessage) -> RpcMessage:
            return request

        await broker._answer(topology.PROVENANCE_JOBS, echo, example.message(channel))
        published = broker.server.published
        if broker.server.unpublishable:
            raise Violation("unpublishable_copy", broker.server.unpublishable[0])
        if channel.settled != ["ack"] or len(published) != 1:
            raise Violation("rpc_not_answered_once", f"{channel.settled} {published}")
        return f"{label}, {_disposal(broker)}"


def _rpc_parse(message: aio_pika.IncomingMessage) -> str:
    try:
        request = RpcMessage.from_message(message)
    except RpcError as exc:
        if exc.code != MALFORMED:
            raise Violation("rpc_refusal_code", exc.code) from exc
        return f"RpcError {exc.code}"
    if not isinstance(request.meta, dict):
        raise Violation("rpc_meta_type", repr(request.meta))
    return "request"


class CouchStandIn:
    """What provenancedb's handlers ask of the store, holding every document to what
    CouchDB accepts: a text `_id` and strict JSON (no NaN, no infinities)."""

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []

    async def record(self, doc: dict[str, Any]) -> bool:
        return (await self.record_all([doc]))[0]

    async def record_all(self, docs: list[dict[str, Any]]) -> list[bool]:
        for doc in docs:
            if not isinstance(doc.get("_id"), str):
                raise Violation("document_id_type", repr(doc.get("_id")))
            try:
                json.dumps(doc, allow_nan=False)
            except ValueError as exc:
                raise Violation("document_not_json", str(exc)) from exc
        self.documents += docs
        return [True] * len(docs)

    async def job_documents(self, job_id: str) -> list[dict[str, Any]]:
        return [doc for doc in self.documents if doc.get("job_id") == job_id]

    async def job_status(self, job_id: str) -> dict[str, Any] | None:
        return fold_status(job_id, await self.job_documents(job_id))

    async def job_page(
        self, *, owner: str | None, status: str | None, limit: int, before: list[str] | None
    ) -> list[tuple[list[str], dict[str, Any]]]:
        return []

    async def job_counts(self, owner: str) -> dict[str, int]:
        return dict.fromkeys(("queued", "processing", "succeeded", "failed"), 0)

    async def job_owners(self, job_ids: list[str]) -> dict[str, str]:
        return {}

    async def jobs_using(self, sha256: str) -> list[str]:
        return []

    async def image(self, sha256: str) -> list[dict[str, Any]]:
        return []

    async def lineage(
        self, sha256: str, direction: str, *, owner: str | None = None
    ) -> list[dict[str, Any]]:
        return []


class ProvenanceRequests(Target):
    name = "provenancedb"
    summary = "provenancedb's RPC handlers (record, job-status, jobs...) on any request meta"
    suite_examples = 300

    def strategy(self) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
        # A request's meta is always an object: RpcMessage.from_message sees to that.
        return provenance_requests().filter(lambda request: isinstance(request[1], dict))

    async def check(self, example: tuple[str, dict[str, Any]]) -> str:
        route, meta = example
        recorder = Recorder(CouchStandIn())  # type: ignore[arg-type]  # the methods it uses
        handler = {
            "record": rpc_handler(topology.PROVENANCE_RECORD, recorder.on_record_request),
            "job-status": rpc_handler(topology.PROVENANCE_JOB_STATUS, recorder.on_status_request),
            "job-provenance": rpc_handler(
                topology.PROVENANCE_JOB_PROV, recorder.on_provenance_request
            ),
            "lineage": rpc_handler(topology.PROVENANCE_LINEAGE, recorder.on_lineage_request),
            "jobs": rpc_handler(topology.PROVENANCE_JOBS, recorder.on_jobs_request),
            "job-counts": rpc_handler(
                topology.PROVENANCE_JOB_COUNTS, recorder.on_job_counts_request
            ),
        }[route]
        if route == "jobs" and isinstance(meta.get("before"), str) and meta["before"]:
            _cursor_holds(meta["before"])
        try:
            reply = await handler(RpcMessage(meta))
        except RpcError as exc:
            if exc.code != "bad_request":
                raise Violation("provenance_refusal_code", exc.code) from exc
            return f"{route}: bad_request"
        RpcMessage(reply.meta).to_message()
        json.dumps(reply.meta, allow_nan=False)
        return f"{route}: answered"


def _cursor_holds(cursor: str) -> None:
    try:
        key = decode_cursor(cursor)
    except RpcError as exc:
        if exc.code != "bad_request":
            raise Violation("provenance_refusal_code", exc.code) from exc
        return
    if decode_cursor(encode_cursor(key)) != key:
        raise Violation("cursor_round_trip", repr(key))


TARGETS: dict[str, type[Target]] = {
    target.name: target
    for target in (
        UploadForm,
        UploadStream,
        EnvelopeDecoding,
        Consuming,
        RpcDecoding,
        ProvenanceRequests,
        InputHeaders,
    )
}
