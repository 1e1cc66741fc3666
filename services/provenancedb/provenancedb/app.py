from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from messaging import (
    Broker,
    Envelope,
    EnvelopeError,
    MessageContext,
    RpcError,
    RpcMessage,
    topology,
)
from messaging.constants import PROVENANCEDB
from messaging.events import ALL_EVENTS, EVENTS_BY_TYPE, Event
from messaging.queries import JobCountsRequest, LineageRequest
from servicekit import add_ops_routes, resource

from .documents import to_document
from .history import bad_request_message, jobs_request, recent_jobs
from .lineage import image_lineage
from .provview import merge_prov
from .settings import Settings
from .store import ProvenanceStore, open_store

log = structlog.get_logger("provenancedb")

_Request = TypeVar("_Request", bound=BaseModel)

BROKER = web.AppKey("broker", Broker)
STORE = web.AppKey("store", ProvenanceStore)


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    add_ops_routes(app)

    def broker() -> Broker:
        return Broker(
            settings, service=PROVENANCEDB, shutdown_timeout=settings.shutdown_timeout_seconds
        )

    async def consume(app: web.Application) -> AsyncIterator[None]:
        broker, recorder = app[BROKER], Recorder(app[STORE])
        await broker.subscribe(
            topology.PROVENANCE_EVENTS,
            recorder.on_event,
            ALL_EVENTS,
            prefetch=settings.provenancedb_prefetch,
        )
        await broker.serve(topology.PROVENANCE_RECORD, recorder.on_record_request)
        await broker.serve(topology.PROVENANCE_JOB_STATUS, recorder.on_status_request)
        await broker.serve(topology.PROVENANCE_JOB_PROV, recorder.on_provenance_request)
        await broker.serve(topology.PROVENANCE_LINEAGE, recorder.on_lineage_request)
        await broker.serve(topology.PROVENANCE_JOBS, recorder.on_jobs_request)
        await broker.serve(topology.PROVENANCE_JOB_COUNTS, recorder.on_job_counts_request)
        yield

    async def check_store(app: web.Application) -> AsyncIterator[None]:
        # Say at once what is wrong; /readyz keeps failing (and logging why) until fixed.
        try:
            await app[STORE].ready()
        except Exception as exc:
            log.error("couchdb_not_ready", reason=str(exc) or repr(exc))
        yield

    app.cleanup_ctx.extend(
        [
            resource(
                STORE,
                lambda: open_store(
                    settings,
                    settings.login(),
                    linger=settings.provenancedb_commit_linger_ms / 1000,
                ),
                readiness=("couchdb", ProvenanceStore.ready),
            ),
            check_store,
            resource(BROKER, broker, readiness=("rabbitmq", Broker.ping)),
            consume,
        ]
    )
    return app


class Recorder:
    """Writes events as documents and answers job-status questions."""

    def __init__(self, store: ProvenanceStore) -> None:
        self._store = store

    async def on_event(self, event: Event, ctx: MessageContext) -> None:
        await self._record(ctx.envelope, event)

    async def _record(self, envelope: Envelope, event: Event) -> bool:
        created = await self._store.record(to_document(envelope, event))
        # The consumer's `message_handled` line already says each event was taken: a second
        # line per event only for a duplicate (a redelivery), which is worth seeing.
        if created:
            log.debug("provenance_recorded", doc_id=envelope.id)
        else:
            log.info("provenance_duplicate", doc_id=envelope.id)
        return created

    async def on_record_request(self, request: RpcMessage) -> RpcMessage:
        """Record events synchronously, in order: the upload service records a job's intake
        this way before it answers 202, so the job exists for `GET /api/v1/jobs/{id}` the
        moment the client has its id.

        Each event's type must be one the calling service publishes (`published_by`, by
        the request's AMQP user): recording is publishing, and no caller records around
        the broker's per-event-type topic permissions."""
        events = request.meta.get("events")
        if not isinstance(events, list) or not events:
            raise RpcError("bad_request", "events must be a non-empty list")
        parsed = [_event_from_meta(item) for item in events]
        for _, event in parsed:
            if request.caller is not None and request.caller not in event.published_by:
                log.warning("record_refused", caller=request.caller, event_type=event.type)
                raise RpcError("forbidden", f"{request.caller} may not record {event.type}")
        created = await self._store.record_all([to_document(*pair) for pair in parsed])
        for (envelope, _), new in zip(parsed, created, strict=True):
            log.info("provenance_recorded" if new else "provenance_duplicate", doc_id=envelope.id)
        return RpcMessage({"recorded": len(created), "created": sum(created)})

    async def on_status_request(self, request: RpcMessage) -> RpcMessage:
        """`{"found": bool, "job": {...}|null}`: the job folded from its events, with its
        `owner` (the principal that uploaded it) for the caller to check."""
        job = await self._store.job_status(_job_id(request.meta))
        return RpcMessage({"found": job is not None, "job": job})

    async def on_provenance_request(self, request: RpcMessage) -> RpcMessage:
        """The job's whole history as one W3C PROV-JSON document."""
        docs = await self._store.job_documents(_job_id(request.meta))
        if not docs:
            return RpcMessage({"found": False})
        return RpcMessage({"found": True, "document": merge_prov([d["prov"] for d in docs])})

    async def on_lineage_request(self, request: RpcMessage) -> RpcMessage:
        """An image's ancestors and descendants, across jobs (`LineageRequest`: with an
        `owner`, that principal's jobs only)."""
        query = _parse(LineageRequest, request.meta)
        lineage = await image_lineage(self._store, query.sha256, owner=query.owner)
        return RpcMessage({"found": lineage is not None, "lineage": lineage})

    async def on_jobs_request(self, request: RpcMessage) -> RpcMessage:
        """Recent jobs, newest first, optionally of one status and one owner, a page at a
        time (`JobsRequest`): one index read per page."""
        page = await recent_jobs(self._store, jobs_request(request.meta))
        return RpcMessage(page)

    async def on_job_counts_request(self, request: RpcMessage) -> RpcMessage:
        """A principal's jobs per status (`JobCountsRequest`), for upload's cap on waiting
        jobs: `{"queued": n, "processing": n, "succeeded": n, "failed": n}`."""
        query = _parse(JobCountsRequest, request.meta)
        return RpcMessage(await self._store.job_counts(query.owner))


def _parse(model: type[_Request], meta: dict[str, Any]) -> _Request:
    try:
        return model.model_validate(meta)
    except ValidationError as exc:
        raise RpcError("bad_request", bad_request_message(exc)) from None


def _job_id(meta: dict[str, Any]) -> str:
    job_id = meta.get("job_id")
    if not isinstance(job_id, str):
        raise RpcError("bad_request", "job_id must be a string")
    return job_id


def _event_from_meta(meta: Any) -> tuple[Envelope, Event]:
    try:
        envelope = Envelope.from_dict(meta["envelope"])
        event = EVENTS_BY_TYPE[envelope.type].model_validate(meta["event"])
        # Free-form parts (parameters, image info) must be strict JSON too (no NaN).
        json.dumps(event.model_dump(mode="json"), allow_nan=False)
    except (KeyError, TypeError, ValueError, EnvelopeError, ValidationError) as exc:
        raise RpcError("bad_request", f"not a recordable event: {exc}"[:500]) from exc
    return envelope, event
