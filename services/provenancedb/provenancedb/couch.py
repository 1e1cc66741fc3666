"""The CouchDB plumbing of the provenance store (aiocouch): the client, request timing and
view keys. With `design.py`, the only place that knows CouchDB from PouchDB Server.

Least privilege, the design document and what each server enforces of it: `design.py`.

Everything here and in `store.py` / `queries.py` works on both CouchDB 3 (compose) and
PouchDB Server 4.2 (the local stack); where they differ, they do what both accept:

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
  `--unhandled-rejections=warn` (`tools/stack`), and provenancedb never creates its
  database. Even then, a refused `DELETE /<database>` leaves the server unable to open,
  create or delete any database not open yet, until it restarts (an upstream bug).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from aiocouch import ConflictError, CouchDB, NotFoundError
from prometheus_client import Histogram

from servicekit import timed_call

from .settings import CouchSettings, Login

REQUEST_SECONDS = Histogram(
    "imagemesh_couchdb_request_seconds",
    "CouchDB calls of the provenance store, by operation (the store method; lineage and "
    "all_job_documents count each request they make) and outcome (ok, conflict, not_found, "
    "error).",
    ["operation", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


async def _accept_json(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    # PouchDB Server answers text/plain unless asked for JSON; CouchDB 3 does not mind.
    request.headers["Accept"] = "application/json"
    return await handler(request)


def _outcome(exc: Exception) -> str:
    if isinstance(exc, ConflictError):
        return "conflict"
    if isinstance(exc, NotFoundError):
        return "not_found"
    return "error"


@contextmanager
def timed(operation: str) -> Iterator[None]:
    """Observe one CouchDB call in REQUEST_SECONDS (synchronous: costs no extra await)."""
    with timed_call(REQUEST_SECONDS, operation, _outcome):
        yield


def view_key(value: Any) -> str:
    """A view key as a query parameter: aiocouch passes those through as they are, so view
    keys must be JSON already."""
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
