"""The provenance store: opening the database, checking and installing its design, and
writing event documents with their job summaries (`ProvenanceStore`; its reads are in
`queries.py`, the CouchDB plumbing and what works on both CouchDB and PouchDB Server in
`couch.py`).

The service never creates its database and cannot change its design: `migrate` does, as
the admin (`install_design`, `index_view`, `install_indexes`, `backfill_summaries`);
`ready` says what to run when the database is not the one this code expects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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

from . import summaries
from .couch import couch_client, timed, view_key
from .design import DESIGN, DESIGN_VIEWS, MANGO_INDEXES, MIGRATE, design_document
from .groupcommit import GroupCommit
from .queries import StoreQueries
from .settings import CouchSettings, Login

log = structlog.get_logger("provenancedb")

BACKFILL_BATCH = 500
"""Jobs whose summaries migrate's backfill reads and writes per request."""


class StoreNotReady(RuntimeError):
    """The provenance database cannot be used as it is; the message says what to do."""


class ProvenanceStore(StoreQueries):
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
            with timed("ready"):
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

    async def views_to_index(self) -> list[str]:
        """The views the installed design document lacks, or defines otherwise than this
        code (all of them without one): installing the design leaves their indexes to
        build, which a server that indexes on read (PouchDB Server) does on their first
        read."""
        ddoc = await self._design()
        installed = (ddoc.get("views") if ddoc is not None else None) or {}
        return [name for name, view in DESIGN_VIEWS.items() if installed.get(name) != view]

    async def index_view(self, name: str) -> None:
        """Read one row of view `name` (unreduced): the server answers once the view's
        index is up to date (TimeoutError while it is still building)."""
        params: dict[str, Any] = {"limit": 1}
        if "reduce" in DESIGN_VIEWS[name]:
            params["reduce"] = False
        with timed("index_view"):
            await self._db.view(DESIGN, name)._get(**params)

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

    async def missing_summaries(self) -> int:
        """How many jobs have an `image.uploaded` event but no summary that says so: two
        reads of reduced views, whatever the number of jobs."""
        with timed("missing_summaries"):
            uploaded = await self._reduced("per_day", group_level=2)
            indexed = await self._reduced(
                "jobs",
                group_level=2,
                startkey=view_key([None, None]),
                endkey=view_key([None, None, {}]),
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
        with timed(operation):
            response = await self._db._bulk_docs([dict(doc) for doc in docs])
        return {str(status.get("id")): status for status in cast(list[dict[str, Any]], response)}


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
