"""The CouchDB gateway (aiocouch). The only place that knows CouchDB from PouchDB Server.

Everything here works on both CouchDB 3 and PouchDB Server (the local stack); where they
differ, this module does what both accept:

- design documents are saved as plain documents with the full `_design/...` id: aiocouch's
  DesignDocument puts the id without its prefix in the body, which PouchDB Server refuses;
- every request asks for `Accept: application/json` (PouchDB Server otherwise answers some
  requests as text/plain);
- `_bulk_docs` answers are matched to documents by id, not by position;
- views use only the built-in reduces both servers have (`_count`, `_stats`), and map
  functions in plain ES5 (CouchDB 3's SpiderMonkey, PouchDB's JavaScript alike);
- view keys are sent as JSON (aiocouch passes query parameters through unencoded);
- paging past equal keys skips the rows already read: PouchDB ignores `startkey_docid`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, cast

import aiohttp
import structlog
from aiocouch import ConflictError, CouchDB, Database, Document, NotFoundError
from aiocouch.view import View

from .settings import CouchSettings

log = structlog.get_logger("provenancedb.store")
PAGE = 500

DESIGN = "provenance"
DESIGN_VIEWS: dict[str, dict[str, str]] = {
    # Timeline of a job: key [job_id, time], value the event type.
    "by_job": {
        "map": "function (doc) {"
        " if (doc.job_id && doc.time) { emit([doc.job_id, doc.time], doc.type); } }"
    },
    # Jobs newest first (query with descending=true): key [time queued, job_id].
    "jobs_by_time": {
        "map": "function (doc) { if (doc.type === 'image.uploaded') {"
        " emit([doc.time, doc.job_id], null); } }"
    },
    # Every job that used a given input: key input_sha256, value job_id.
    "by_input": {
        "map": "function (doc) { if (doc.type === 'image.uploaded' && doc.input_sha256) {"
        " emit(doc.input_sha256, doc.job_id); } }"
    },
    # What an output was derived from: key output_sha256, value input_sha256.
    "by_output": {
        "map": "function (doc) { if (doc.type === 'image.processed' && doc.output_sha256) {"
        " emit(doc.output_sha256, doc.input_sha256); } }"
    },
    # The derivation graph, both ways: [sha, "from"] -> its sources, [sha, "to"] -> what
    # was made from it; each value names the job that did it.
    "derivations": {
        "map": "function (doc) {"
        " if (doc.type === 'image.processed' && doc.input_sha256 && doc.output_sha256) {"
        " emit([doc.output_sha256, 'from'], {sha256: doc.input_sha256, job_id: doc.job_id});"
        " emit([doc.input_sha256, 'to'], {sha256: doc.output_sha256, job_id: doc.job_id}); } }"
    },
    # Where each image is stored, and what it is: key sha256.
    "images": {
        "map": "function (doc) { if (doc.type === 'image.stored') { var i = doc.data.image;"
        " emit(i.sha256, {role: doc.data.role, job_id: doc.job_id, location: doc.location,"
        " format: i.format, width: i.width, height: i.height, bytes: i.bytes}); } }"
    },
    # Failed jobs by error code: key [code, time]; reduce counts them (group_level=1).
    "failures": {
        "map": "function (doc) { if (doc.type === 'job.failed') {"
        " emit([doc.error_code, doc.time], doc.job_id); } }",
        "reduce": "_count",
    },
    # Events per day and type: key [YYYY-MM-DD, type]; reduce counts.
    "per_day": {
        "map": "function (doc) { if (doc.type && doc.time) {"
        " emit([doc.time.slice(0, 10), doc.type], 1); } }",
        "reduce": "_count",
    },
    # Operations applied per operation and day: key [op, YYYY-MM-DD], value the duration;
    # reduce gives count, sum, min and max of the durations (ms).
    "per_operation": {
        "map": "function (doc) { if (doc.type === 'operation.applied') {"
        " emit([doc.operation, doc.time.slice(0, 10)], doc.data.duration_ms); } }",
        "reduce": "_stats",
    },
}
MANGO_INDEXES = {
    # For Fauxton's "Run A Query with Mango": {"selector": {"type": "job.failed"}}, sorted
    # by time; and the same by service.
    "by-type-time": ["type", "time"],
    "by-service-time": ["service", "time"],
}
MAX_LINEAGE_DEPTH = 64


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

    async def install_indexes(self) -> None:
        """Create the Mango indexes (the server answers "exists" when they are there)."""
        for name, fields in MANGO_INDEXES.items():
            await self._db.index({"fields": fields}, ddoc=f"mango-{name}", name=name)

    async def record(self, doc: dict[str, Any]) -> bool:
        """Store `doc`; False when a document with its `_id` already exists (a redelivery)."""
        try:
            await Document(self._db, doc["_id"], data=dict(doc)).save()
        except ConflictError:
            return False
        return True

    async def record_all(self, docs: list[dict[str, Any]]) -> list[bool]:
        """Store several documents in one request (`_bulk_docs`), so a job's intake is never
        half written; per document, False when it already existed (a redelivery).

        Through aiocouch's `_bulk_docs` itself: its BulkOperation assumes the answers come
        in request order, which PouchDB Server does not always keep; we match them by id."""
        response = await self._db._bulk_docs([dict(doc) for doc in docs])
        by_id = {str(status.get("id")): status for status in cast(list[dict[str, Any]], response)}
        created = []
        for doc in docs:
            status = by_id.get(doc["_id"], {})
            if "ok" not in status and status.get("error") != "conflict":
                raise RuntimeError(f"could not store {doc['_id']}: {status or 'no answer'}")
            created.append("ok" in status)
        return created

    async def job_documents(self, job_id: str) -> list[dict[str, Any]]:
        """Every document of a job, oldest first."""
        response = await self._view("by_job").get(
            startkey=_key([job_id]), endkey=_key([job_id, {}]), include_docs="true"
        )
        return [row["doc"] for row in response.rows if row.get("doc")]

    async def job_ids(self, *, limit: int, before: list[str] | None) -> list[list[str]]:
        """Keys [time, job_id] of jobs queued before `before` (a key), newest first."""
        params: dict[str, Any] = {"descending": "true", "limit": limit}
        if before is not None:
            params |= {"startkey": _key(before), "skip": 1}
        response = await self._view("jobs_by_time").get(**params)
        return [row["key"] for row in response.rows]

    async def jobs_using(self, sha256: str) -> list[str]:
        response = await self._view("by_input").get(key=_key(sha256))
        return sorted({row["value"] for row in response.rows})

    async def image(self, sha256: str) -> list[dict[str, Any]]:
        """Where an image is stored and what it is (one row per storing job)."""
        response = await self._view("images").get(key=_key(sha256))
        return [row["value"] for row in response.rows]

    async def lineage(self, sha256: str, direction: str) -> list[dict[str, Any]]:
        """Ancestors (`from`) or descendants (`to`) of an image, breadth first, each with
        its depth, the image it is linked to and the job that linked them."""
        found: list[dict[str, Any]] = []
        seen, frontier = {sha256}, [sha256]
        for depth in range(1, MAX_LINEAGE_DEPTH + 1):
            if not frontier:
                break
            # Keys are JSON values; aiocouch only annotates them as strings.
            keys: list[Any] = [[node, direction] for node in frontier]
            response = await self._view("derivations").post(keys)
            frontier = []
            for row in response.rows:
                linked, job_id = row["value"]["sha256"], row["value"]["job_id"]
                via = "derived" if direction == "from" else "source"
                found.append(
                    {"sha256": linked, "depth": depth, "job_id": job_id, via: row["key"][0]}
                )
                if linked not in seen:
                    seen.add(linked)
                    frontier.append(linked)
        return found

    async def all_job_documents(self) -> AsyncIterator[dict[str, Any]]:
        """Every event document, job by job in time order (for audits), page by page."""
        last_key: Any = None
        same_key = 0  # rows already yielded whose key is last_key
        while True:
            params: dict[str, Any] = {"include_docs": "true", "limit": PAGE}
            if last_key is not None:
                # Rows of one key come in doc id order on both servers, but PouchDB Server
                # ignores startkey_docid: skip the rows of the last key already read.
                params |= {"startkey": _key(last_key), "skip": same_key}
            rows = (await self._view("by_job").get(**params)).rows
            for row in rows:
                if row.get("doc"):
                    yield row["doc"]
                if row["key"] == last_key:
                    same_key += 1
                else:
                    last_key, same_key = row["key"], 1
            if len(rows) < PAGE:
                return

    def _view(self, name: str) -> View:
        return self._db.view(DESIGN, name)

    async def ping(self) -> bool:
        info = await self._db.info()
        return bool(info)


def _key(value: Any) -> str:
    # aiocouch passes query parameters through as they are: view keys must be JSON already.
    return json.dumps(value, separators=(",", ":"))


@asynccontextmanager
async def open_store(settings: CouchSettings) -> AsyncIterator[ProvenanceStore]:
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
        await store.install_indexes()
        yield store
