"""One small summary document per job: its owner and current status, for the history and
per-owner indexes. Views over event documents cannot say "a job's latest status" (a job
has one event per step); a document per job that always holds the current answer can be
indexed by it.

`job:<job id>` holds the job's status events as the fold reads them (`records`, by event
id) and what `fold_status` makes of them (`owner`, `status`, `rank`, `created_at`,
`updated_at`). The writer keeps it in step with the events, in the same `_bulk_docs` as
the events themselves (`store.py`). Merging is a union of records, so it is idempotent
(a redelivery changes nothing), commutative (events in any order give the same summary)
and monotonic (the fold's most advanced step wins, so no event moves a status back):
concurrent writers that conflict re-read the stored summary and merge again.

A summary has no `type`, `time` or `job_id` of its own: the views over event documents
never see it (the validation function holds it to that).
"""

from __future__ import annotations

from typing import Any

from messaging.jobs import JOB_STATUSES, STATUS_EVENTS, fold_status

PREFIX = "job:"
KIND = "job"
RANKS = {status: rank for rank, status in enumerate(JOB_STATUSES)} | {"failed": 2}
"""The fold's progress: succeeded and failed are both final."""


def summary_id(job_id: str) -> str:
    return PREFIX + job_id


def status_record(doc: dict[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
    """(job id, event id, the fold's record) of an event document a job's status depends
    on; None for any other document."""
    job_id, event_id, time, data = (doc.get(k) for k in ("job_id", "_id", "time", "data"))
    if doc.get("type") not in STATUS_EVENTS or not isinstance(data, dict):
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
    if job is None:  # unreachable: every record is a status event
        return None
    summary: dict[str, Any] = {
        "_id": summary_id(job_id),
        "kind": KIND,
        "job": job_id,
        "owner": job.get("owner"),  # None until the job's image.uploaded is seen
        "status": job["status"],
        "rank": RANKS[job["status"]],
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
