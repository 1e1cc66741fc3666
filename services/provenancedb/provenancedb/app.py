from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from messaging import (
    Broker,
    Envelope,
    EnvelopeError,
    MessageContext,
    RpcError,
    RpcMessage,
    topology,
)
from messaging.events import ALL_EVENTS, EVENTS_BY_TYPE, Event
from servicekit import add_ops_routes, resource

from .documents import to_document
from .settings import Settings
from .status import fold_status
from .store import ProvenanceStore, open_store

log = structlog.get_logger("provenancedb")

BROKER = web.AppKey("broker", Broker)
STORE = web.AppKey("store", ProvenanceStore)


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    add_ops_routes(app)

    def broker() -> Broker:
        return Broker(
            settings, service="provenancedb", shutdown_timeout=settings.shutdown_timeout_seconds
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
        yield

    app.cleanup_ctx.extend(
        [
            resource(
                STORE, lambda: open_store(settings), readiness=("couchdb", ProvenanceStore.ping)
            ),
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
        log.info("provenance_recorded" if created else "provenance_duplicate", doc_id=envelope.id)
        return created

    async def on_record_request(self, request: RpcMessage) -> RpcMessage:
        """Record an event synchronously: the upload service calls this before it answers
        202, so the job exists for `GET /api/v1/jobs/{id}` the moment the client has its id."""
        envelope, event = _event_from_meta(request.meta)
        created = await self._record(envelope, event)
        return RpcMessage({"recorded": True, "created": created})

    async def on_status_request(self, request: RpcMessage) -> RpcMessage:
        job_id = request.meta.get("job_id")
        if not isinstance(job_id, str):
            raise RpcError("bad_request", "job_id must be a string")
        job = fold_status(job_id, await self._store.job_documents(job_id))
        return RpcMessage({"found": job is not None, "job": job})


def _event_from_meta(meta: dict[str, Any]) -> tuple[Envelope, Event]:
    try:
        envelope = Envelope.from_dict(meta["envelope"])
        event = EVENTS_BY_TYPE[envelope.type].model_validate(meta["event"])
    except (KeyError, TypeError, EnvelopeError, ValidationError) as exc:
        raise RpcError("bad_request", f"not a recordable event: {exc}") from exc
    return envelope, event
