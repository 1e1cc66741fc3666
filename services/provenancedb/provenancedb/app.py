from __future__ import annotations

import json
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from pydantic import ValidationError

from messaging import Broker, Envelope, EnvelopeError, MessageContext, RpcCall, RpcError, topology
from messaging.constants import PROVENANCEDB
from messaging.contracts import (
    FoundDocument,
    FoundJob,
    FoundLineage,
    JobCounts,
    JobCountsRequest,
    JobObjects,
    JobPage,
    JobRequest,
    JobsRequest,
    LineageRequest,
    RecordedEvent,
    RecordReply,
    RecordRequest,
)
from messaging.events import ALL_EVENTS, EVENTS_BY_TYPE, Event
from messaging.lifetime import broker_resource
from servicekit import add_ops_routes, resource

from .documents import to_document
from .history import recent_jobs
from .lineage import image_lineage
from .provview import merge_prov
from .settings import Settings
from .sharing import job_objects
from .store import ProvenanceStore, open_store

log = structlog.get_logger("provenancedb")

BROKER = web.AppKey("broker", Broker)
STORE = web.AppKey("store", ProvenanceStore)


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    add_ops_routes(app)

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
        await broker.serve(topology.PROVENANCE_JOB_OBJECTS, recorder.on_job_objects_request)
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
            broker_resource(BROKER, settings, PROVENANCEDB, settings.shutdown_timeout_seconds),
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

    async def on_record_request(self, request: RecordRequest, call: RpcCall) -> RecordReply:
        """Record events synchronously, in order: the upload service records a job's intake
        this way before it answers 202, so the job exists for `GET /api/v1/jobs/{id}` the
        moment the client has its id.

        Each event's type must be one the calling service publishes (`published_by`, by
        the request's AMQP user): recording is publishing, and no caller records around
        the broker's per-event-type topic permissions."""
        parsed = [_recordable(item) for item in request.events]
        for _, event in parsed:
            if call.caller is not None and call.caller not in event.published_by:
                log.warning("record_refused", caller=call.caller, event_type=event.type)
                raise RpcError("forbidden", f"{call.caller} may not record {event.type}")
        created = await self._store.record_all([to_document(*pair) for pair in parsed])
        for (envelope, _), new in zip(parsed, created, strict=True):
            log.info("provenance_recorded" if new else "provenance_duplicate", doc_id=envelope.id)
        return RecordReply(recorded=len(created), created=sum(created))

    async def on_status_request(self, request: JobRequest, call: RpcCall) -> FoundJob:
        """The job folded from its events, with its `owner` (the principal that uploaded
        it) for the caller to check."""
        job = await self._store.job_status(request.job_id)
        return FoundJob(found=job is not None, job=job)

    async def on_provenance_request(self, request: JobRequest, call: RpcCall) -> FoundDocument:
        """The job's whole history as one W3C PROV-JSON document."""
        docs = await self._store.job_documents(request.job_id)
        if not docs:
            return FoundDocument(found=False)
        return FoundDocument(found=True, document=merge_prov([d["prov"] for d in docs]))

    async def on_lineage_request(self, request: LineageRequest, call: RpcCall) -> FoundLineage:
        """An image's ancestors and descendants, across jobs (with an `owner`, that
        principal's jobs only)."""
        lineage = await image_lineage(self._store, request.sha256, owner=request.owner)
        return FoundLineage(found=lineage is not None, lineage=lineage)

    async def on_jobs_request(self, request: JobsRequest, call: RpcCall) -> JobPage:
        """Recent jobs, newest first, optionally of one status and one owner, a page at a
        time: one index read per page (a cursor that is not one is `bad_request`)."""
        return JobPage.model_validate(await recent_jobs(self._store, request))

    async def on_job_counts_request(self, request: JobCountsRequest, call: RpcCall) -> JobCounts:
        """A principal's jobs per status, for upload's cap on waiting jobs."""
        return JobCounts.model_validate(await self._store.job_counts(request.owner))

    async def on_job_objects_request(self, request: JobRequest, call: RpcCall) -> JobObjects:
        """A job's stored objects and the other jobs (not erased) using each, for an
        erasure (`sharing.py`)."""
        return await job_objects(self._store, request.job_id)


def _recordable(item: RecordedEvent) -> tuple[Envelope, Event]:
    try:
        envelope = Envelope.from_dict(item.envelope)
        event = EVENTS_BY_TYPE[envelope.type].model_validate(item.event)
        # Free-form parts (parameters, image info) must be strict JSON too (no NaN).
        json.dumps(event.model_dump(mode="json"), allow_nan=False)
    except (KeyError, TypeError, ValueError, EnvelopeError, ValidationError) as exc:
        raise RpcError("bad_request", f"not a recordable event: {exc}"[:500]) from exc
    return envelope, event
