"""The CouchDB gateway (aiocouch). With `design.py`, the only place that knows CouchDB from
PouchDB Server.

Least privilege, the design document and what each server enforces of it: `design.py`.

Everything here works on both CouchDB 3 (compose) and PouchDB Server 4.2 (the local stack);
where they differ, this module does what both accept:

- design documents are saved as plain documents with the full `_design/...` id: aiocouch's
  DesignDocument puts the id without its prefix in the body, which PouchDB Server refuses;
- every request asks for `Accept: application/json` (PouchDB Server otherwise answers some
  requests as text/plain);
- `_bulk_docs` answers are matched to documents by id, not by position;
- views use only the built-in reduces both servers have (`_count`, `_stats`), and map
  functions in plain ES5 (CouchDB 3's SpiderMonkey, PouchDB's JavaScript alike);
- view keys are sent as JSON (aiocouch passes query parameters through unencoded);
- paging past equal keys skips the rows already read: PouchDB ignores `startkey_docid`;
- the service never creates its database (a non-admin cannot; see the last point).

Security (the rest is in `design.py`):

- PouchDB Server 4.2 predates Node 15, which ends a process on an unhandled promise
  rejection: a non-admin's `PUT /<new database>` stops it, and so does the next database
  opened after a non-admin's `DELETE /<database>`. The local stack runs it with
  `--unhandled-rejections=warn` (`tools/stack.py`), and provenancedb never creates its
  database. Even then, a refused `DELETE /<database>` leaves the server unable to open,
  create or delete any database not open yet, until it restarts (an upstream bug).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, cast

import aiohttp
import structlog
from aiocouch import (
    ConflictError,
    CouchDB,
    Database,
    Document,
    ForbiddenError,
    NotFoundError,
    UnauthorizedError,
)
from aiocouch.view import View
from prometheus_client import Histogram

from messaging.jobs import JOB_STATUSES

from . import summaries
from .design import DESIGN, MANGO_INDEXES, MIGRATE, design_document
from .groupcommit import GroupCommit
from .settings import CouchSettings, Login

log = structlog.get_logger("provenancedb")

PAGE = 500

REQUEST_SECONDS = Histogram(
    "imagemesh_couchdb_request_seconds",
    "CouchDB calls of the provenance store, by operation (the store method; lineage and "
    "all_job_documents count each request they make) and outcome (ok, conflict, not_found, "
    "error).",
    ["operation", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

MAX_LINEAGE_DEPTH = 64


class StoreNotReady(RuntimeError):
    """The provenance database cannot be used as it is; the message says what to do."""


async def _accept_json(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    # PouchDB Server answers text/plain unless asked for JSON; CouchDB 3 does not mind.
    request.headers["Accept"] = "application/json"
    return await handler(request)


BACKFILL_BATCH = 500
"""Jobs whose summaries migrate's backfill reads and writes per request."""


class ProvenanceStore:
    def __init__(
        self, couch: CouchDB, db: Database, *, user: str, writer: str, linger: float = 0.0
    ) -> None:
        self._couch = couch
        self._db = db
        self._user = user
        self._writer = writer
        self._summary_writer = summaries.SummaryWriter(self._bulk_docs, self.summaries)
        self._group = GroupCommit(
            lambda docs: self._summary_writer.write(docs, "record"), linger=linger
        )

    def design_document(self) -> dict[str, Any]:
        return design_document(self._writer)

    async def ready(self) -> bool:
        """True when the database answers and its design document is the one this code
        expects; else StoreNotReady, saying what is wrong and what to run."""
        db = self._db.id
        try:
            with _timed("ready"):
                await self._db.info()
                ddoc = await self._design()
        except NotFoundError:
            raise StoreNotReady(f"CouchDB database {db!r} does not exist: {MIGRATE}") from None
        except (UnauthorizedError, ForbiddenError):
            raise StoreNotReady(
                f"CouchDB user {self._user!r} may not read database {db!r}: a wrong password, "
                f"or not a member: {MIGRATE}"
            ) from None
        if ddoc is None:
            raise StoreNotReady(f"_design/{DESIGN} is missing in {db!r}: {MIGRATE}")
        if not self._is_current(ddoc):
            raise StoreNotReady(
                f"_design/{DESIGN} in {db!r} is not the one this version of provenancedb "
                f"expects (views, validation or writer {self._writer!r}): {MIGRATE}"
            )
        return True

    async def _design(self) -> Document | None:
        ddoc = Document(self._db, f"_design/{DESIGN}")
        try:
            await ddoc.fetch()
        except NotFoundError:
            return None
        return ddoc

    def _is_current(self, ddoc: Document) -> bool:
        return all(ddoc.get(key) == value for key, value in self.design_document().items())

    async def install_design(self) -> bool:
        """Create or update the design document (idempotent; concurrent runs may race);
        False when it was current already. Needs a database admin (migrate's job).

        A plain Document with the full `_design/` id, not aiocouch's DesignDocument: that
        one puts `_id` without the prefix in the body, which PouchDB Server refuses."""
        for _attempt in range(3):
            ddoc = await self._design() or Document(self._db, f"_design/{DESIGN}")
            if self._is_current(ddoc):
                return False
            ddoc.update(self.design_document())
            try:
                await ddoc.save()
                return True
            except ConflictError:
                continue  # another migrate run saved it meanwhile: look again
        raise RuntimeError(f"could not install _design/{DESIGN}: it keeps changing")

    async def install_indexes(self) -> None:
        """Create the Mango indexes (the server answers "exists" when they are there).
        Needs a database admin."""
        for name, fields in MANGO_INDEXES.items():
            await self._db.index({"fields": fields}, ddoc=f"mango-{name}", name=name)

    async def record(self, doc: dict[str, Any]) -> bool:
        """Store `doc`; False when a document with its `_id` already exists (a redelivery).
        Written together with the documents recorded at the same time (`GroupCommit`)."""
        return await self._group.record(doc)

    async def record_all(self, docs: list[dict[str, Any]]) -> list[bool]:
        """Store several documents in one request (`_bulk_docs`), so a job's intake is never
        half written; per document, False when it already existed (a redelivery).

        Through aiocouch's `_bulk_docs` itself: its BulkOperation assumes the answers come
        in request order, which PouchDB Server does not always keep; we match them by id."""
        by_id = await self._summary_writer.write(docs, "record_all")
        created = []
        for doc in docs:
            status = by_id.get(doc["_id"], {})
            if "ok" not in status and status.get("error") != "conflict":
                raise RuntimeError(f"could not store {doc['_id']}: {status or 'no answer'}")
            created.append("ok" in status)
        return created

    async def summaries(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored summaries of these jobs (one request), by job id; a job without one
        is left out."""
        if not job_ids:
            return {}
        keys: list[Any] = [summaries.summary_id(job_id) for job_id in job_ids]
        with _timed("summaries"):
            response = await self._db.all_docs.post(keys, include_docs="true")
        found = {}
        for row in response.rows:
            doc = row.get("doc")
            if isinstance(doc, dict) and doc.get("kind") == summaries.KIND:
                found[doc["job"]] = doc
        return found

    async def job_status(self, job_id: str) -> dict[str, Any] | None:
        """The job as `provenancedb.job-status` answers it, from its summary alone: one
        document read by id, no view (a view is brought up to date by every query, which
        made each status read cost as much as indexing the documents written since).
        The summary is written in the same request as each status event (`summaries.py`),
        so a job without one has no status yet."""
        found = await self.summaries([job_id])
        summary = found.get(job_id)
        return None if summary is None else summaries.job_of(summary)

    async def job_owners(self, job_ids: list[str]) -> dict[str, str]:
        """The owner of each of these jobs that has one (one request)."""
        found = await self.summaries(sorted(set(job_ids)))
        return {
            job_id: doc["owner"] for job_id, doc in found.items() if isinstance(doc["owner"], str)
        }

    async def job_page(
        self,
        *,
        owner: str | None,
        status: str | None,
        limit: int,
        before: list[str] | None,
    ) -> list[tuple[list[str], dict[str, Any]]]:
        """At most `limit` job summaries, newest first, of `owner` (None: everyone's) in
        `status` (None: any), created before the cursor `before` ([created_at, job_id]):
        one read of the `jobs` index. Each with its cursor."""
        prefix: list[Any] = [owner, status]
        params: dict[str, Any] = {
            "descending": "true",
            "reduce": "false",
            "include_docs": "true",
            "limit": limit,
            "startkey": _key([*prefix, {}]),
            "endkey": _key(prefix),
        }
        if before is not None:
            # Keys are unique (they end with the job id): skip the cursor's own row.
            params |= {"startkey": _key([*prefix, *before]), "skip": 1}
        with _timed("job_page"):
            response = await self._view("jobs").get(**params)
        return [
            (row["key"][2:], row["doc"])
            for row in response.rows
            if isinstance(row.get("doc"), dict)
        ]

    async def job_counts(self, owner: str) -> dict[str, int]:
        """How many of `owner`'s jobs are in each status: one read of the `jobs` reduce."""
        params = {
            "group_level": 2,
            "startkey": _key([owner]),
            "endkey": _key([owner, {}]),
        }
        with _timed("job_counts"):
            rows = await self._reduced("jobs", **params)
        counts = {status: 0 for status in JOB_STATUSES}
        for row in rows:
            status = row["key"][1]
            if status in counts:
                counts[status] = int(row["value"])
        return counts

    async def missing_summaries(self) -> int:
        """How many jobs have an `image.uploaded` event but no summary that says so: two
        reads of reduced views, whatever the number of jobs."""
        with _timed("missing_summaries"):
            uploaded = await self._reduced("per_day", group_level=2)
            indexed = await self._reduced(
                "jobs", group_level=2, startkey=_key([None, None]), endkey=_key([None, None, {}])
            )
        events: int = sum(row["value"] for row in uploaded if row["key"][1] == "image.uploaded")
        summarised: int = sum(row["value"] for row in indexed)
        return max(0, events - summarised)

    async def backfill_summaries(self, batch: int = BACKFILL_BATCH) -> int:
        """Write the summary of every job that has none or an incomplete one, from its
        event documents (`by_job`, page by page; `batch` jobs per read and write of
        summaries). For a database recorded before job summaries existed: migrate runs it
        when `missing_summaries` finds any. Idempotent; safe next to a running writer (a
        conflict is merged again). The number of summaries written."""
        written = 0
        pending: dict[str, dict[str, dict[str, Any]]] = {}
        async for doc in self.all_job_documents():
            found = summaries.status_record(doc)
            if found is None:
                continue
            job_id, event_id, record = found
            if job_id not in pending and len(pending) >= batch:
                written += await self._summary_writer.backfill(pending)
                pending = {}
            pending.setdefault(job_id, {})[event_id] = record
        if pending:
            written += await self._summary_writer.backfill(pending)
        return written

    async def _bulk_docs(
        self, docs: list[dict[str, Any]], operation: str
    ) -> dict[str, dict[str, Any]]:
        """One `_bulk_docs` request (timed as `operation`): each document's status, by id."""
        with _timed(operation):
            response = await self._db._bulk_docs([dict(doc) for doc in docs])
        return {str(status.get("id")): status for status in cast(list[dict[str, Any]], response)}

    async def job_documents(self, job_id: str) -> list[dict[str, Any]]:
        """Every document of a job, oldest first."""
        with _timed("job_documents"):
            response = await self._view("by_job").get(
                startkey=_key([job_id]), endkey=_key([job_id, {}]), include_docs="true"
            )
        return [row["doc"] for row in response.rows if row.get("doc")]

    async def jobs_using(self, sha256: str) -> list[str]:
        with _timed("jobs_using"):
            response = await self._view("by_input").get(key=_key(sha256))
        return sorted({row["value"] for row in response.rows})

    async def image(self, sha256: str) -> list[dict[str, Any]]:
        """Where an image is stored and what it is (one row per storing job)."""
        with _timed("image"):
            response = await self._view("images").get(key=_key(sha256))
        return [row["value"] for row in response.rows]

    async def lineage(
        self, sha256: str, direction: str, *, owner: str | None = None
    ) -> list[dict[str, Any]]:
        """Ancestors (`from`) or descendants (`to`) of an image, breadth first, each with
        its depth, the image it is linked to and the job that linked them. With `owner`,
        only links made by that owner's jobs, walked through nothing else (one more read
        per depth, for the owners of the jobs found there)."""
        found: list[dict[str, Any]] = []
        seen, frontier = {sha256}, [sha256]
        for depth in range(1, MAX_LINEAGE_DEPTH + 1):
            if not frontier:
                break
            # Keys are JSON values; aiocouch only annotates them as strings.
            keys: list[Any] = [[node, direction] for node in frontier]
            with _timed("lineage"):
                response = await self._view("derivations").post(keys)
            rows = response.rows
            if owner is not None and rows:
                owners = await self.job_owners([row["value"]["job_id"] for row in rows])
                rows = [row for row in rows if owners.get(row["value"]["job_id"]) == owner]
            frontier = []
            for row in rows:
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
            with _timed("all_job_documents"):
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

    async def _reduced(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """The rows of a reduced view query: aiocouch's `View.get` wants `offset` and
        `total_rows`, which only map rows have."""
        response = await self._view(name)._get(**params)
        return [{"key": row["key"], "value": int(row["value"])} for row in response.get("rows", [])]

    def _view(self, name: str) -> View:
        return self._db.view(DESIGN, name)


@contextmanager
def _timed(operation: str) -> Iterator[None]:
    """Observe one CouchDB call in REQUEST_SECONDS (synchronous: costs no extra await)."""
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    except ConflictError:
        outcome = "conflict"
        raise
    except NotFoundError:
        outcome = "not_found"
        raise
    finally:
        REQUEST_SECONDS.labels(operation, outcome).observe(time.perf_counter() - started)


def _key(value: Any) -> str:
    # aiocouch passes query parameters through as they are: view keys must be JSON already.
    return json.dumps(value, separators=(",", ":"))


def couch_client(
    settings: CouchSettings,
    login: Login,
    middlewares: tuple[aiohttp.ClientMiddlewareType, ...] = (),
) -> CouchDB:
    """A CouchDB client (an async context manager) logged in as `login` (user, password).
    `middlewares` see every request after ours (tests count requests with one)."""
    user, password = login
    return CouchDB(
        settings.couchdb_url,
        user=user,
        password=password.get_secret_value(),
        middlewares=(_accept_json, *middlewares),
        timeout=aiohttp.ClientTimeout(total=30),
    )


@asynccontextmanager
async def open_store(
    settings: CouchSettings,
    login: Login,
    middlewares: tuple[aiohttp.ClientMiddlewareType, ...] = (),
    *,
    linger: float = 0.0,
) -> AsyncIterator[ProvenanceStore]:
    """The provenance database as `login`. Creates and installs nothing (that is migrate's,
    as the admin); `ProvenanceStore.ready` says whether it can be used. `linger`: how long
    a group-commit write waits for more documents (`GroupCommit`)."""
    async with couch_client(settings, login, middlewares) as couch:
        db = Database(couch, settings.couchdb_db)
        yield ProvenanceStore(couch, db, user=login[0], writer=settings.couchdb_user, linger=linger)
