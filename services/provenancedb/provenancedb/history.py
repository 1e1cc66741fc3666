"""Recent jobs, newest first, a page at a time (the history the web app and CLI show).

One page is one read of the `jobs` index over the job summaries (`summaries.py`), keyed by
owner, status and creation time: a status filter, an owner filter or both cost the same
single read, whatever the number of jobs, and each job comes with its summary (no read per
job)."""

from __future__ import annotations

import base64
import json
from typing import Any

from messaging import RpcError
from messaging.queries import JobsRequest

from .store import ProvenanceStore
from .summaries import job_of


async def recent_jobs(store: ProvenanceStore, request: JobsRequest) -> dict[str, Any]:
    """{"jobs": [...], "next": cursor or None}: each job as the job-status RPC folds it.
    RpcError `bad_request` for a `before` that is not a cursor this service gave."""
    before = decode_cursor(request.before) if request.before else None
    # One more than asked: whether there is a next page, in the same read.
    rows = await store.job_page(
        owner=request.owner, status=request.status, limit=request.limit + 1, before=before
    )
    jobs = [job for _, summary in rows[: request.limit] if (job := job_of(summary))]
    more = len(rows) > request.limit
    return {"jobs": jobs, "next": encode_cursor(rows[request.limit - 1][0]) if more else None}


def encode_cursor(key: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: object) -> list[str]:
    bad = RpcError("bad_request", "before is not a cursor this service gave")
    if not isinstance(cursor, str):
        raise bad
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, RecursionError) as exc:
        raise bad from exc
    if not (isinstance(key, list) and len(key) == 2 and all(isinstance(k, str) for k in key)):
        raise bad
    return key
