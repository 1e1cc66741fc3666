"""One small summary document per job: its owner and current status, for the history and
per-owner indexes. Views over event documents cannot say "a job's latest status" (a job
has one event per step); a document per job that always holds the current answer can be
indexed by it.

`job:<job id>` holds the job's status events and marks as the fold reads them (`records`, by event
id) and what `fold_status` makes of them (`owner`, `status`, `rank`, `created_at`,
`updated_at`). The writer keeps it in step with the events, in the same `_bulk_docs` as
the events themselves (`SummaryWriter`, below). Merging is a union of records, so it is idempotent
(a redelivery changes nothing), commutative (events in any order give the same summary)
and monotonic (the fold's most advanced step wins, so no event moves a status back):
concurrent writers that conflict re-read the stored summary and merge again.

A summary has no `type`, `time` or `job_id` of its own: the views over event documents
never see it (the validation function holds it to that).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from messaging.jobs import FINAL_STATUSES, FOLD_EVENTS, STATUS_EVENTS, STATUS_RANK, fold_status

PREFIX = "job:"
KIND = "job"

log = structlog.get_logger("provenancedb")


def summary_id(job_id: str) -> str:
    return PREFIX + job_id


def status_record(doc: dict[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
    """(job id, event id, the fold's record) of an event document the fold reads (a
    status event, or a mark: retried, erased); None for any other document."""
    job_id, event_id, time, data = (doc.get(k) for k in ("job_id", "_id", "time", "data"))
    if doc.get("type") not in FOLD_EVENTS or not isinstance(data, dict):
        return None
    if not (isinstance(job_id, str) and isinstance(event_id, str) and isinstance(time, str)):
        return None
    return job_id, event_id, {"type": doc["type"], "time": time, "data": data}


def merged(
    job_id: str, stored: dict[str, Any] | None, records: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """The summary with `records` added to `stored` (which keeps its `_rev`), or None when
    `stored` holds them all already (nothing to write)."""
    known: dict[str, Any] = dict(stored.get("records", {})) if stored else {}
    if stored is not None and records.keys() <= known.keys():
        return None
    known |= {event_id: record for event_id, record in records.items() if event_id not in known}
    job = fold_status(job_id, list(known.values()))
    if job is None:
        # Marks only: upload marks a job it found, whose intake provenance records first
        # (both travel on provenancedb's one queue), so this is a mark for a job unknown
        # here. Its event document is stored; no summary names a job with no status.
        return None
    summary: dict[str, Any] = {
        "_id": summary_id(job_id),
        "kind": KIND,
        "job": job_id,
        "owner": job.get("owner"),  # None until the job's image.uploaded is seen
        "status": job["status"],
        "rank": STATUS_RANK[job["status"]],
        "created_at": job["created_at"],
        "updated_at": job["updated_at"],
        "records": known,
    }
    if stored is not None and "_rev" in stored:
        summary["_rev"] = stored["_rev"]
    return summary


def job_of(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The job as `provenancedb.job-status` answers it, from its summary alone."""
    return fold_status(summary["job"], list(summary.get("records", {}).values()))


SUMMARY_ATTEMPTS = 5
"""Writes of one job summary before giving up: each lost a race with another replica."""
SUMMARY_CACHE = 4096
"""Unfinished jobs' summaries this process remembers as it last wrote or read them (their
`_rev`). A finished job's is forgotten: only a redelivery follows its final event, and
that costs one conflict and a re-read. Kept, the last 4096 summaries (each holds the
job's status events, ~10 KB) grew provenancedb by ~40 MB over its first 4096 jobs."""


BulkDocs = Callable[[list[dict[str, Any]], str], Awaitable[dict[str, dict[str, Any]]]]
"""One `_bulk_docs` request (timed as the operation named): each document's status, by id."""
ReadSummaries = Callable[[list[str]], Awaitable[dict[str, dict[str, Any]]]]
"""The stored summaries of these jobs, by job id (`ProvenanceStore.summaries`)."""


class SummaryWriter:
    """Keeps the job summaries in step with the events the store writes (`store.py`)."""

    def __init__(self, bulk_docs: BulkDocs, read: ReadSummaries) -> None:
        self._bulk_docs = bulk_docs
        self._read = read
        # A stale entry costs one conflict and a re-read, never a wrong summary: a write
        # with an outdated `_rev` is refused.
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()

    async def write(self, docs: list[dict[str, Any]], operation: str) -> dict[str, dict[str, Any]]:
        """Event documents and, in the same `_bulk_docs`, the summaries of the jobs whose
        status they touch; each event's status, by id. An event whose job summary could not
        be written gets an error status even when the event itself was stored, so that its
        caller fails and its redelivery (a conflict, otherwise harmless) brings the summary
        up to date."""
        records: dict[str, dict[str, dict[str, Any]]] = {}
        for doc in docs:
            found = status_record(doc)
            if found is not None:
                job_id, event_id, record = found
                records.setdefault(job_id, {})[event_id] = record
        stored = await self._marked_summaries(records)
        pending = {
            job_id: summary
            for job_id, job_records in records.items()
            if (
                summary := self._summary(
                    job_id, self._cache.get(job_id) or stored.get(job_id), job_records
                )
            )
        }
        statuses = await self._bulk_docs([*docs, *pending.values()], operation)
        failed = await self._settle(records, pending, statuses)
        for doc in docs:
            found = status_record(doc)
            if found is not None and found[0] in failed:
                statuses[doc["_id"]] = {"error": "summary", "reason": failed[found[0]]}
        return statuses

    async def _marked_summaries(
        self, records: dict[str, dict[str, dict[str, Any]]]
    ) -> dict[str, dict[str, Any]]:
        """The stored summaries of the jobs that only marks (retried, erased) are about and
        this writer does not keep (one read): a mark alone folds to no status, so it must
        be merged into what is stored, or it would never reach the summary."""
        marked = [
            job_id
            for job_id, job_records in records.items()
            if job_id not in self._cache
            and not any(record["type"] in STATUS_EVENTS for record in job_records.values())
        ]
        return await self._read(marked) if marked else {}

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
            return merged(job_id, stored, records)
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
            stored = await self._read(conflicted)
            pending = {}
            for job_id in conflicted:
                self._cache.pop(job_id, None)
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

    @property
    def remembered(self) -> int:
        """How many job summaries this writer keeps."""
        return len(self._cache)

    def _remember(self, job_id: str, summary: dict[str, Any]) -> None:
        if summary.get("status") in FINAL_STATUSES:
            self._cache.pop(job_id, None)
            return
        self._cache[job_id] = summary
        self._cache.move_to_end(job_id)
        while len(self._cache) > SUMMARY_CACHE:
            self._cache.popitem(last=False)

    async def backfill(self, records: dict[str, dict[str, dict[str, Any]]]) -> int:
        stored = await self._read(list(records))
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
