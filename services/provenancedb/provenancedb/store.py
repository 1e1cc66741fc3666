"""The CouchDB gateway (aiocouch). The only place that knows CouchDB from PouchDB Server.

Least privilege. Three accounts (`settings.py`): the server admin only provisions
(`python -m provenancedb.migrate`), provenancedb writes as a plain user, the auditor reads.
The database's `_security` names the admin as its only admin and, as its members, the
writer (by name) and the role `auditor`: nobody else, anonymous or not, reads or writes it.
`_design/provenance` holds the views and a `validate_doc_update` that makes provenance
append-only for everyone but server admins: a document can only be created (never updated,
given a revision or deleted), only by the writer (by name), and only as an event document
(`type` and `time`, no attachments). The one exception is derived, not recorded: the
writer also creates and updates each job's summary (`job:<id>`, `summaries.py`), which
indexes jobs by owner and status; nobody deletes one. Server admins install it;
provenancedb only checks, at start and in `/readyz`, that the installed one is current
(`ProvenanceStore.ready`).

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

Security: measured on PouchDB Server 4.2 and pinned by `tests/security/test_couchdb.py`
(which runs on CouchDB 3 too); CouchDB 3's side as its documentation states it.

- Both enforce `_security` on documents, views, `_all_docs`, `_changes` and `_bulk_docs`
  (anonymous: 401; a user who is not a member: 401 on PouchDB Server, 403 on CouchDB 3),
  let only database admins write design documents and `_security`, and run
  `validate_doc_update` (403 with its reason) on PUT, POST, DELETE, `_bulk_docs` (also
  with `new_edits: false`) and attachments.
- A write without `_rev` to an existing document reaches the validation function on
  PouchDB Server (CouchDB 3 answers 409 before): the function lets it through so that the
  storage answers 409 there too, and a redelivered event stays a conflict.
- PouchDB Server lets a user give itself any role (its `_users/<own id>` route treats the
  user as an admin) and lets anyone sign up. So the writer is a name, not a role (a
  `provenance-writer` role would be self-granted), and migrate closes `_users` to
  non-admins on PouchDB Server (through its `_security`), so nobody can sign up and grant
  itself `auditor`. CouchDB 3's `_users` validation refuses self-granted roles.
- PouchDB Server does not enforce, where CouchDB 3 does:
  - `_security` on `_find`, `_explain` and `GET _index`: anyone, even anonymous, reads
    every document through `_find`;
  - `_security` on `POST _index`: anyone can add index design documents, and naming an
    existing one rewrites its `language` (provenancedb's readiness then reports the design
    document outdated until migrate runs again);
  - the security object itself: it is the local document `_local/_security`, which any
    member (writer or auditor) can overwrite, e.g. to make itself a database admin and then
    replace the design document, validation included.
  On the local stack (loopback only) these rules therefore hold against mistakes and
  against anyone who is not a member, not against a hostile member, nor against reading
  through `_find`. Deploy on CouchDB 3 (compose) for the real boundary.
- PouchDB Server 4.2 predates Node 15, which ends a process on an unhandled promise
  rejection: a non-admin's `PUT /<new database>` stops it, and so does the next database
  opened after a non-admin's `DELETE /<database>`. The local stack runs it with
  `--unhandled-rejections=warn` (`tools/stack.py`), and provenancedb never creates its
  database. Even then, a refused `DELETE /<database>` leaves the server unable to open,
  create or delete any database not open yet, until it restarts (an upstream bug).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
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

DESIGN = "provenance"
DESIGN_VIEWS: dict[str, dict[str, str]] = {
    # Timeline of a job: key [job_id, time], value the event type.
    "by_job": {
        "map": "function (doc) {"
        " if (doc.job_id && doc.time) { emit([doc.job_id, doc.time], doc.type); } }"
    },
    # Jobs by owner, status and creation, from the job summaries (`summaries.py`): key
    # [owner, status, created_at, job_id], where a null owner or status means "any"; each
    # summary is indexed under all four. Newest first with descending=true. The reduce
    # counts them: group_level=2 gives [owner, status] -> jobs.
    "jobs": {
        "map": "function (doc) { if (doc.kind === 'job' && typeof doc.owner === 'string') {"
        " var t = doc.created_at, j = doc.job;"
        " emit([doc.owner, doc.status, t, j], null); emit([doc.owner, null, t, j], null);"
        " emit([null, doc.status, t, j], null); emit([null, null, t, j], null); } }",
        "reduce": "_count",
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

AUDITOR_ROLE = "auditor"
"""Members with this role read provenance; the validation function refuses their writes."""
MIGRATE = (
    "run `python -m provenancedb.migrate` with the CouchDB admin's credentials "
    "(local stack: `make infra`)"
)

# Append-only, for everyone but server admins (provisioning and repairs). WRITER is the
# writer's name as a JSON string. Plain ES5, like the views. The one exception: the writer
# updates job summaries (`job:<id>`, `summaries.py`), derived from the events, never
# deleted, and held to their shape so that no event view ever indexes one.
_VALIDATE = """function (newDoc, oldDoc, userCtx, secObj) {
  if (userCtx.roles.indexOf('_admin') !== -1) { return; }
  var summary = newDoc._id.indexOf('job:') === 0;
  if (newDoc._deleted) {
    throw({forbidden: 'provenance is append-only: ' + newDoc._id + ' cannot be deleted'});
  }
  if (newDoc._rev && !summary) {
    throw({forbidden: 'provenance is append-only: ' + newDoc._id + ' cannot be changed'});
  }
  if (userCtx.name !== WRITER) {
    throw({forbidden: 'only ' + WRITER + ' records provenance'});
  }
  if (summary) {
    if (newDoc.kind !== 'job' || 'job:' + newDoc.job !== newDoc._id ||
        newDoc.type !== undefined || newDoc.time !== undefined ||
        newDoc.job_id !== undefined || newDoc._attachments ||
        typeof newDoc.records !== 'object' || newDoc.records === null) {
      throw({forbidden: 'not a job summary: kind job, its job, records; ' +
        'no type, time, job_id or attachments'});
    }
    return;
  }
  if (typeof newDoc.type !== 'string' || typeof newDoc.time !== 'string' ||
      newDoc._attachments) {
    throw({forbidden: 'not an event document: type and time, no attachments'});
  }
}"""
# No `_rev` and an `oldDoc`: a repeated create. CouchDB 3 answers 409 before it validates;
# PouchDB Server validates first, so the function lets it through to the same 409.


def design_document(writer: str) -> dict[str, Any]:
    """`_design/provenance` (without `_id` and `_rev`): the views, and the validation
    function that lets only `writer` create documents and nobody change one."""
    return {
        "language": "javascript",
        "views": DESIGN_VIEWS,
        "validate_doc_update": _VALIDATE.replace("WRITER", json.dumps(writer)),
    }


def security_object(admin: str, writer: str) -> dict[str, Any]:
    """The database's `_security`: the server admin administers, the writer and the
    auditors are its only members."""
    return {
        "admins": {"names": [admin], "roles": []},
        "members": {"names": [writer], "roles": [AUDITOR_ROLE]},
    }


def is_pouchdb_server(welcome: dict[str, Any]) -> bool:
    """Whether `GET /` came from PouchDB Server rather than CouchDB."""
    return "express-pouchdb" in welcome


class StoreNotReady(RuntimeError):
    """The provenance database cannot be used as it is; the message says what to do."""


async def _accept_json(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    # PouchDB Server answers text/plain unless asked for JSON; CouchDB 3 does not mind.
    request.headers["Accept"] = "application/json"
    return await handler(request)


GROUP_COMMIT_LIMIT = 64
"""Most documents one group-commit write carries."""


class GroupCommit:
    """Documents recorded while a write is in flight go together in the next `_bulk_docs`
    request: at low load each is written at once, alone; under load one request carries
    many, and the database does a fraction of the work. Nothing waits for a batch to fill.
    Each caller still learns its own document's outcome: created, already there (False),
    or its own error."""

    def __init__(
        self,
        write: Callable[[list[dict[str, Any]]], Awaitable[dict[str, dict[str, Any]]]],
        limit: int = GROUP_COMMIT_LIMIT,
    ) -> None:
        self._write = write
        self._limit = limit
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Documents waiting for the next write."""
        return len(self._waiting)

    async def record(self, doc: dict[str, Any]) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((doc, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._limit]
            del self._waiting[: self._limit]
            first: dict[str, dict[str, Any]] = {}
            for doc, _ in batch:
                first.setdefault(doc["_id"], doc)  # a redelivery in the same batch
            try:
                statuses = await self._write(list(first.values()))
            except asyncio.CancelledError:
                # Stopped (shutdown): nobody may wait forever for a write that never comes.
                for _, future in batch + self._waiting:
                    future.cancel()
                self._waiting.clear()
                raise
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for doc, future in batch:
                if future.done():  # its caller gave up (cancelled)
                    continue
                status = statuses.get(doc["_id"], {})
                if "ok" in status:
                    future.set_result(first[doc["_id"]] is doc)
                elif status.get("error") == "conflict":
                    future.set_result(False)
                else:
                    future.set_exception(
                        RuntimeError(f"could not store {doc['_id']}: {status or 'no answer'}")
                    )


SUMMARY_ATTEMPTS = 5
"""Writes of one job summary before giving up: each lost a race with another replica."""
BACKFILL_BATCH = 500
"""Jobs whose summaries migrate's backfill reads and writes per request."""
SUMMARY_CACHE = 4096
"""Job summaries this process remembers as it last wrote or read them (their `_rev`)."""


class ProvenanceStore:
    def __init__(self, couch: CouchDB, db: Database, *, user: str, writer: str) -> None:
        self._couch = couch
        self._db = db
        self._user = user
        self._writer = writer
        self._group = GroupCommit(lambda docs: self._write(docs, "record"))
        # A stale entry costs one conflict and a re-read, never a wrong summary: a write
        # with an outdated `_rev` is refused.
        self._summaries: OrderedDict[str, dict[str, Any]] = OrderedDict()

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
        by_id = await self._write(docs, "record_all")
        created = []
        for doc in docs:
            status = by_id.get(doc["_id"], {})
            if "ok" not in status and status.get("error") != "conflict":
                raise RuntimeError(f"could not store {doc['_id']}: {status or 'no answer'}")
            created.append("ok" in status)
        return created

    async def _write(self, docs: list[dict[str, Any]], operation: str) -> dict[str, dict[str, Any]]:
        """Event documents and, in the same `_bulk_docs`, the summaries of the jobs whose
        status they touch; each event's status, by id. An event whose job summary could not
        be written gets an error status even when the event itself was stored, so that its
        caller fails and its redelivery (a conflict, otherwise harmless) brings the summary
        up to date."""
        records: dict[str, dict[str, dict[str, Any]]] = {}
        for doc in docs:
            found = summaries.status_record(doc)
            if found is not None:
                job_id, event_id, record = found
                records.setdefault(job_id, {})[event_id] = record
        pending = {
            job_id: summary
            for job_id, job_records in records.items()
            if (summary := self._summary(job_id, self._summaries.get(job_id), job_records))
        }
        statuses = await self._bulk_docs([*docs, *pending.values()], operation)
        failed = await self._settle(records, pending, statuses)
        for doc in docs:
            found = summaries.status_record(doc)
            if found is not None and found[0] in failed:
                statuses[doc["_id"]] = {"error": "summary", "reason": failed[found[0]]}
        return statuses

    def _summary(
        self,
        job_id: str,
        stored: dict[str, Any] | None,
        records: dict[str, dict[str, Any]],
    ) -> dict[str, Any] | None:
        """The job's summary with `records` merged in, or None when there is nothing to
        write. Without a stored summary at hand, a new one: when the job has one already,
        its write conflicts and `_settle` merges with what is stored."""
        try:
            return summaries.merged(job_id, stored, records)
        except (KeyError, TypeError, ValueError):
            log.warning("job_summary_skipped", job_id=job_id, reason="malformed status event")
            return None

    async def _settle(
        self,
        records: dict[str, dict[str, dict[str, Any]]],
        pending: dict[str, dict[str, Any]],
        statuses: dict[str, dict[str, Any]],
    ) -> dict[str, str]:
        """Remember the summaries written; re-read and merge again those another writer
        changed meanwhile (409), a bounded number of times. The jobs whose summary could
        not be written, with why."""
        failed: dict[str, str] = {}
        for attempt in range(SUMMARY_ATTEMPTS):
            conflicted = []
            for job_id, summary in pending.items():
                status = statuses.get(summary["_id"], {})
                if "ok" in status:
                    self._remember(job_id, summary | {"_rev": status["rev"]})
                elif status.get("error") == "conflict":
                    conflicted.append(job_id)
                else:
                    failed[job_id] = str(status or "no answer")
            if not conflicted:
                return failed
            if attempt == SUMMARY_ATTEMPTS - 1:
                break
            stored = await self.summaries(conflicted)
            pending = {}
            for job_id in conflicted:
                self._summaries.pop(job_id, None)
                updated = self._summary(job_id, stored.get(job_id), records[job_id])
                if updated is not None:
                    pending[job_id] = updated
                elif job_id in stored:  # it holds these records already
                    self._remember(job_id, stored[job_id])
            if not pending:
                return failed
            statuses = await self._bulk_docs(list(pending.values()), "job_summary")
        for job_id in conflicted:
            failed[job_id] = f"still conflicting after {SUMMARY_ATTEMPTS} attempts"
            log.error("job_summary_conflicts", job_id=job_id, attempts=SUMMARY_ATTEMPTS)
        return failed

    def _remember(self, job_id: str, summary: dict[str, Any]) -> None:
        self._summaries[job_id] = summary
        self._summaries.move_to_end(job_id)
        while len(self._summaries) > SUMMARY_CACHE:
            self._summaries.popitem(last=False)

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
                written += await self._backfill(pending)
                pending = {}
            pending.setdefault(job_id, {})[event_id] = record
        if pending:
            written += await self._backfill(pending)
        return written

    async def _backfill(self, records: dict[str, dict[str, dict[str, Any]]]) -> int:
        stored = await self.summaries(list(records))
        pending = {
            job_id: summary
            for job_id, job_records in records.items()
            if (summary := self._summary(job_id, stored.get(job_id), job_records))
        }
        if not pending:
            return 0
        statuses = await self._bulk_docs(list(pending.values()), "backfill")
        failed = await self._settle(records, pending, statuses)
        if failed:
            raise RuntimeError(f"could not write the summaries of jobs {sorted(failed)[:5]}")
        return len(pending)

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
) -> AsyncIterator[ProvenanceStore]:
    """The provenance database as `login`. Creates and installs nothing (that is migrate's,
    as the admin); `ProvenanceStore.ready` says whether it can be used."""
    async with couch_client(settings, login, middlewares) as couch:
        db = Database(couch, settings.couchdb_db)
        yield ProvenanceStore(couch, db, user=login[0], writer=settings.couchdb_user)
