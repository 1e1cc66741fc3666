"""Recent jobs, newest first, a page at a time (the history the web app and CLI show)."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any

from messaging import RpcError
from messaging.jobs import fold_status

from .store import ProvenanceStore

STATUSES = frozenset({"queued", "processing", "succeeded", "failed"})
MAX_LIMIT = 100
SCAN_BUDGET = 1000
"""At most this many jobs are read for one page of a status filter: a rare status in a
long history ends the page early (with a cursor to go on from)."""
BATCH = 50


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    status: str | None
    limit: int
    before: list[str] | None

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> HistoryQuery:
        unknown = set(meta) - {"status", "limit", "before"}
        if unknown or "limit" not in meta:
            raise RpcError("bad_request", "expected status, limit (required) and before")
        status, limit, cursor = meta.get("status"), meta["limit"], meta.get("before")
        if status is not None and (not isinstance(status, str) or status not in STATUSES):
            raise RpcError("bad_request", f"status must be one of {sorted(STATUSES)}")
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise RpcError("bad_request", f"limit must be an integer from 1 to {MAX_LIMIT}")
        return cls(status, limit, decode_cursor(cursor) if cursor else None)


async def recent_jobs(store: ProvenanceStore, query: HistoryQuery) -> dict[str, Any]:
    """{"jobs": [...], "next": cursor or None}: each job as the job-status RPC folds it."""
    found: list[dict[str, Any]] = []
    before, scanned = query.before, 0
    while len(found) < query.limit and scanned < SCAN_BUDGET:
        keys = await store.job_ids(limit=BATCH, before=before)
        if not keys:
            return {"jobs": found, "next": None}
        scanned += len(keys)
        docs = await asyncio.gather(*(store.job_documents(job_id) for _, job_id in keys))
        for key, job_docs in zip(keys, docs, strict=True):
            before = key
            job = fold_status(key[1], job_docs)
            if job is not None and query.status in (None, job["status"]):
                found.append(job)
                if len(found) == query.limit:
                    break
        if len(keys) < BATCH and len(found) < query.limit:
            return {"jobs": found, "next": None}
    return {"jobs": found, "next": encode_cursor(before) if before else None}


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
