"""Recent jobs, newest first, a page at a time (the history the web app and CLI show).

One page is one read of the `jobs` index over the job summaries (`summaries.py`), keyed by
owner, status and creation time: a status filter, an owner filter or both cost the same
single read, whatever the number of jobs, and each job comes with its summary (no read per
job).

A search (`search`: a prefix of the job's id, of its file name or of a word of that name,
any case) reads the `job_search` index instead: at most `SEARCH_ROWS` rows of keys, then
the summaries of the page's jobs, two reads whatever the number of jobs. A term matching
more rows than that finds only some of them (the reader is asked to type more)."""

from __future__ import annotations

import base64
import json
from typing import Any

from messaging import RpcError
from messaging.queries import JobsRequest

from .store import ProvenanceStore
from .summaries import job_of

SEARCH_ROWS = 1000
"""Most `job_search` index rows one search reads (a job has one row per term it matches)."""


async def recent_jobs(store: ProvenanceStore, request: JobsRequest) -> dict[str, Any]:
    """{"jobs": [...], "next": cursor or None}: each job as the job-status RPC folds it.
    RpcError `bad_request` for a `before` that is not a cursor this service gave."""
    before = decode_cursor(request.before) if request.before else None
    term = (request.search or "").strip().lower()
    if term:
        return await _searched(store, request, term, before)
    # One more than asked: whether there is a next page, in the same read.
    rows = await store.job_page(
        owner=request.owner, status=request.status, limit=request.limit + 1, before=before
    )
    jobs = [job for _, summary in rows[: request.limit] if (job := job_of(summary))]
    more = len(rows) > request.limit
    return {"jobs": jobs, "next": encode_cursor(rows[request.limit - 1][0]) if more else None}


async def _searched(
    store: ProvenanceStore, request: JobsRequest, term: str, before: list[str] | None
) -> dict[str, Any]:
    """A page of the jobs `term` finds, newest first, with the same cursor as the history."""
    found = {
        (created_at, job_id)
        for created_at, job_id, status in await store.job_matches(
            owner=request.owner, term=term, limit=SEARCH_ROWS
        )
        if request.status is None or status == request.status
    }
    keys = sorted(found, reverse=True)
    if before is not None:
        keys = [key for key in keys if key < (before[0], before[1])]
    page = keys[: request.limit]
    summaries = await store.summaries([job_id for _, job_id in page])
    jobs = [job for _, job_id in page if job_id in summaries if (job := job_of(summaries[job_id]))]
    more = len(keys) > request.limit
    return {"jobs": jobs, "next": encode_cursor(list(page[-1])) if more else None}


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
