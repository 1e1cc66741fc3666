"""The CouchDB gateway (aiocouch). The only place that knows CouchDB from PouchDB Server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import aiohttp
import structlog
from aiocouch import ConflictError, CouchDB, Database, Document, NotFoundError

from .settings import Settings

log = structlog.get_logger("provenancedb.store")

DESIGN = "provenance"
DESIGN_VIEWS = {
    # Timeline of a job: key [job_id, time].
    "by_job": {
        "map": "function (doc) {"
        " if (doc.job_id && doc.time) { emit([doc.job_id, doc.time], null); } }"
    },
    # Every job that used a given input: key input_sha256.
    "by_input": {
        "map": "function (doc) { if (doc.input_sha256) { emit(doc.input_sha256, doc.job_id); } }"
    },
    # What an output was derived from: key output_sha256 -> input_sha256.
    "by_output": {
        "map": "function (doc) {"
        " if (doc.output_sha256) { emit(doc.output_sha256, doc.input_sha256); } }"
    },
}


async def _accept_json(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    # PouchDB Server answers text/plain unless asked for JSON; CouchDB 3 does not mind.
    request.headers["Accept"] = "application/json"
    return await handler(request)


class ProvenanceStore:
    def __init__(self, couch: CouchDB, db: Database) -> None:
        self._couch = couch
        self._db = db

    async def install_design(self) -> None:
        """Create or update the design document (idempotent; replicas may race).

        A plain Document with the full `_design/` id, not aiocouch's DesignDocument: that
        one puts `_id` without the prefix in the body, which PouchDB Server refuses."""
        for _attempt in range(3):
            ddoc = Document(self._db, f"_design/{DESIGN}")
            with suppress(NotFoundError):
                await ddoc.fetch()
            if ddoc.get("views") == DESIGN_VIEWS:
                return
            ddoc["language"] = "javascript"
            ddoc["views"] = DESIGN_VIEWS
            try:
                await ddoc.save()
                log.info("design_installed", design=DESIGN)
                return
            except ConflictError:
                log.info("design_doc_race", design=DESIGN)
        raise RuntimeError(f"could not install _design/{DESIGN}: it keeps changing")

    async def record(self, doc: dict[str, Any]) -> bool:
        """Store `doc`; False when a document with its `_id` already exists (a redelivery)."""
        try:
            await Document(self._db, doc["_id"], data=dict(doc)).save()
        except ConflictError:
            return False
        return True

    async def job_documents(self, job_id: str) -> list[dict[str, Any]]:
        view = self._db.view(DESIGN, "by_job")
        # aiocouch passes query parameters through as they are: keys must be JSON already.
        response = await view.get(
            startkey=json.dumps([job_id]), endkey=json.dumps([job_id, {}]), include_docs=True
        )
        return [row["doc"] for row in response.rows if row.get("doc")]

    async def ping(self) -> bool:
        info = await self._db.info()
        return bool(info)


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[ProvenanceStore]:
    async with CouchDB(
        settings.couchdb_url,
        user=settings.couchdb_user,
        password=settings.couchdb_password.get_secret_value(),
        middlewares=(_accept_json,),
        timeout=aiohttp.ClientTimeout(total=30),
    ) as couch:
        db = await couch.create(settings.couchdb_db, exists_ok=True)
        store = ProvenanceStore(couch, db)
        await store.install_design()
        yield store
