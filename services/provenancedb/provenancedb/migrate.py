"""Provision CouchDB for provenancedb, as the server admin. Idempotent; safe to re-run.

    python -m provenancedb.migrate     (compose: the one-off `provenancedb-migrate`
                                        service; the local stack: `tools/stack infra`)

1. the writer (`COUCHDB_USER`, no roles) and, when `COUCHDB_AUDITOR_PASSWORD` is set, the
   auditor (`COUCHDB_AUDITOR_USER`, role `auditor`) in `_users`, created, or given the
   configured password and roles when they differ;
2. on PouchDB Server only: `_users` closed to non-admins, so that nobody can sign up and
   grant itself a role there (`design.py` says why);
3. the database, and its `_security`: the admin administers it, the writer and the role
   `auditor` are its only members;
4. `_design/provenance` (views and the append-only validation) and the Mango indexes;
5. a summary document for every job that has none (a database recorded before job
   summaries existed): found by comparing two reduced views, so a database that needs
   none costs two reads; filled from the event documents in bounded batches;
6. the indexes of the views this design added or changed, built now when the database
   already holds documents: PouchDB Server builds a view's index on its first read, and
   on a database of tens of thousands of documents that read (a user's search, say)
   would take minutes and time out, after the upgrade, in front of users. The migration
   is done when the new design can be read (`INDEX_DEADLINE` at most; progress on
   stderr).

provenancedb holds none of these rights: it only checks that the design document is the
current one, and is not ready until it is. Reads `MigrateSettings` (`settings.py`).

Exit status: 0 when done, 2 when it could not (one line on stderr says why).
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import aiohttp
from aiocouch import (
    BadRequestError,
    ConflictError,
    CouchDB,
    Database,
    Document,
    NotFoundError,
    PreconditionFailedError,
)

from servicekit import load_settings

from .couch import couch_client
from .design import AUDITOR_ROLE, is_pouchdb_server, security_object
from .settings import Login, MigrateSettings
from .store import ProvenanceStore

LogsIn = Callable[[Login], Awaitable[list[str] | None]]
"""The roles a user name and password log in with, or None when they do not."""

#: `_users` on PouchDB Server: only server admins may read or write it (logging in still
#: works: the server reads it for itself).
CLOSED_USERS_DB = {
    "admins": {"names": [], "roles": []},
    "members": {"names": [], "roles": ["_admin"]},
}


async def migrate(settings: MigrateSettings) -> list[str]:
    """Provision everything; one line per change made (none when all was in place)."""
    settings.check_accounts()
    session_url = settings.couchdb_url.rstrip("/") + "/_session"
    async with aiohttp.ClientSession(
        headers={"Accept": "application/json"}, timeout=aiohttp.ClientTimeout(total=30)
    ) as http:

        async def logs_in(login: Login) -> list[str] | None:
            return await _roles(http, session_url, login)

        if "_admin" not in (await logs_in(settings.admin()) or []):
            raise RuntimeError(
                f"COUCHDB_ADMIN_USER {settings.couchdb_admin_user!r} with "
                "COUCHDB_ADMIN_PASSWORD is not a CouchDB server admin"
            )
        async with couch_client(settings, settings.admin()) as couch:
            return await _provision(settings, couch, logs_in)


async def _provision(settings: MigrateSettings, couch: CouchDB, logs_in: LogsIn) -> list[str]:
    changes: list[str] = []
    users = await couch.create("_users", exists_ok=True)
    accounts: list[tuple[Login, list[str]]] = [(settings.writer(), [])]
    if (auditor := settings.auditor()) is not None:
        accounts.append((auditor, [AUDITOR_ROLE]))
    for login, roles in accounts:
        changes += await _ensure_user(users, logs_in, login, roles)
    if is_pouchdb_server(await couch.info()):
        changes += await _ensure_security(users, CLOSED_USERS_DB)

    db = await couch.create(settings.couchdb_db, exists_ok=True)
    admin, writer = settings.couchdb_admin_user, settings.couchdb_user
    changes += await _ensure_security(db, security_object(admin, writer))
    store = ProvenanceStore(couch, db, user=admin, writer=writer)
    new_views = await store.views_to_index()
    if await store.install_design():
        changes.append(f"{db.id}: _design/provenance installed")
    await store.install_indexes()
    changes += await _backfill_once(db, store)
    if new_views and (await db.info())["doc_count"] >= INDEX_AHEAD_MIN_DOCS:
        changes += await index_views(store, db.id, new_views)
    return changes


INDEX_AHEAD_MIN_DOCS = 1000
"""Below this many documents a view's first read indexes them in well under a second:
nothing to build ahead (a new database, every test's)."""
INDEX_DEADLINE = 1800.0
"""Seconds `index_views` waits for the new views' indexes (on PouchDB Server ~7 ms per
document and view: 25 000 documents take minutes)."""


async def index_views(
    store: ProvenanceStore,
    db: str,
    names: list[str],
    *,
    deadline: float = INDEX_DEADLINE,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Build the indexes of views `names` (read each until it answers); RuntimeError past
    `deadline` (the server goes on indexing: running migrate again waits for the rest)."""
    started = clock()
    for name in names:
        while True:
            try:
                await store.index_view(name)
                break
            except TimeoutError:
                waited = clock() - started
                if waited >= deadline:
                    raise RuntimeError(
                        f"view {name} not indexed after {waited:.0f} s; the server goes on "
                        "indexing: run the migration again to wait for it"
                    ) from None
                print(
                    f"provenancedb.migrate: CouchDB indexes view {name} ({waited:.0f} s so far)",
                    file=sys.stderr,
                )
    took = clock() - started
    return [f"{db}: views indexed in {took:.0f} s: {', '.join(names)}"]


SUMMARIES_MARK = "_local/imagemesh-summaries"
"""Written once every job has its summary: later runs skip the check. The check reads two
views, and nothing on a job's path reads views any more, so on a database that grew since
they were last read it would bring them up to date first: minutes of indexing on PouchDB
Server at every `make up`, for a backfill that only a database recorded before summaries
existed needs (a local document: not replicated, in no view, written by the admin)."""


async def _backfill_once(db: Database, store: ProvenanceStore) -> list[str]:
    mark = Document(db, SUMMARIES_MARK)
    with suppress(NotFoundError):
        await mark.fetch()
    if mark.exists:
        return []
    changes = []
    if await store.missing_summaries():
        written = await store.backfill_summaries()
        changes.append(f"{db.id}: {written} job summaries backfilled")
    mark["done"] = True
    await mark.save()
    return changes


async def _roles(http: aiohttp.ClientSession, session_url: str, login: Login) -> list[str] | None:
    """The roles of `login` when its user name and password log in, else None."""
    name, password = login
    token = base64.b64encode(f"{name}:{password.get_secret_value()}".encode()).decode()
    async with http.get(session_url, headers={"Authorization": f"Basic {token}"}) as response:
        if response.status != 200:
            return None
        context: dict[str, Any] = (await response.json(content_type=None))["userCtx"]
    return list(context.get("roles", [])) if context.get("name") == name else None


async def _ensure_user(
    users: Database, logs_in: LogsIn, login: Login, roles: list[str]
) -> list[str]:
    name, password = login
    for _attempt in range(3):
        doc = Document(users, f"org.couchdb.user:{name}")
        with suppress(NotFoundError):
            await doc.fetch()
        if doc.exists and doc.get("roles") == roles and await logs_in(login) is not None:
            return []
        change = "updated" if doc.exists else "created"
        doc.update({"name": name, "type": "user", "roles": roles})
        doc["password"] = password.get_secret_value()
        try:
            await doc.save()
        except ConflictError:
            continue  # another provisioning run got there first: look again
        return [f"user {name!r} {change} (roles {roles})"]
    raise RuntimeError(f"could not provision user {name!r}: its document keeps changing")


async def _ensure_security(db: Database, wanted: dict[str, Any]) -> list[str]:
    security = await db.security()
    if all(security.get(key) == value for key, value in wanted.items()):
        return []
    security.update(wanted)
    await security.save()
    return [f"{db.id}: _security set"]


def main() -> int:
    settings = load_settings(MigrateSettings, "provenancedb.migrate")
    try:
        changes = asyncio.run(migrate(settings))
    except (
        OSError,  # aiocouch's UnauthorizedError and ForbiddenError are PermissionErrors
        RuntimeError,
        aiohttp.ClientError,
        BadRequestError,
        ConflictError,
        NotFoundError,
        PreconditionFailedError,
    ) as exc:
        print(f"provenancedb.migrate: could not provision CouchDB: {exc}", file=sys.stderr)
        return 2
    for change in changes:
        print(f"provenancedb.migrate: {change}")
    db = settings.couchdb_db
    print(f"provenancedb.migrate: {db!r} ready ({len(changes)} change(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
