"""A job's status, folded from its events: the same fold for provenance's documents and
for the events a service sees live, so both give the same answer for the same events.

A record is what the fold reads of one event: ``{"type", "time", "data"}`` (provenance
documents have these fields among others; `record` makes one from a live event).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ._envelope import Envelope
from .constants import (
    CANCELLED,
    FAILED,
    FINAL_STATUSES,
    JOB_STATUSES,
    PROCESSING,
    QUEUED,
    STATUS_RANK,
    SUCCEEDED,
)
from .events import (
    LOCAL_PRINCIPAL,
    Event,
    ImageProcessed,
    ImageReused,
    ImageUploaded,
    JobCancelled,
    JobErased,
    JobFailed,
    JobRetried,
    ProcessingStarted,
)

__all__ = [
    "EVENT_STATUS",
    "FINAL_STATUSES",
    "FOLD_EVENTS",
    "JOB_STATUSES",
    "MARK_EVENTS",
    "STATUS_EVENTS",
    "STATUS_RANK",
    "annotate",
    "fold_status",
    "public_image",
    "record",
    "rfc3339",
]

EVENT_STATUS = {
    ImageUploaded.type: QUEUED,
    ProcessingStarted.type: PROCESSING,
    ImageProcessed.type: SUCCEEDED,
    ImageReused.type: SUCCEEDED,
    JobFailed.type: FAILED,
    JobCancelled.type: CANCELLED,
}
"""The status each event a job's status depends on implies (`fold_status` answers one of
`JOB_STATUSES`, statuses and their ranks are in `messaging.constants`)."""
STATUS_EVENTS = frozenset(EVENT_STATUS)
"""The event types a job's status depends on."""
MARK_EVENTS = frozenset({JobRetried.type, JobErased.type})
"""Events about a finished job that leave its status as it is but add to it: who retried
it as which job (`retried_by`), when and by whom it was erased (`annotate`)."""
FOLD_EVENTS = STATUS_EVENTS | MARK_EVENTS
"""Every event type the fold reads: what a job summary or a live view keeps of a job."""
_RANK = {kind: (STATUS_RANK[status], status) for kind, status in EVENT_STATUS.items()}
_IMAGE_FIELDS = ("sha256", "bytes", "format", "width", "height")


def rfc3339(moment: datetime) -> str:
    """UTC, always with microseconds: view keys compare as strings, and a time on a whole
    second must not sort after the same second's fractions."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def record(envelope: Envelope, event: Event) -> dict[str, Any]:
    """What the fold reads of an event, as its provenance document has it."""
    return {
        "type": envelope.type,
        "time": rfc3339(envelope.time),
        "data": event.model_dump(mode="json"),
    }


def fold_status(job_id: str, docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The job as the public API shows it, or None when no document names the job.

    Redeliveries and out-of-order arrival are harmless: the most advanced step wins."""
    known = [d for d in docs if d.get("type") in _RANK]
    if not known:
        return None
    by_progress = sorted(known, key=lambda d: (_RANK[d["type"]][0], d["time"]), reverse=True)
    latest = by_progress[0]
    job: dict[str, Any] = {
        "id": job_id,
        "status": _RANK[latest["type"]][1],
        "created_at": min(d["time"] for d in known),
        "updated_at": max(d["time"] for d in known),
    }
    # The most advanced step's copy of the input carries what imageproc read from it.
    data_with_input = next((d["data"] for d in by_progress if d["data"].get("input")), None)
    if data_with_input:
        job["input"] = public_image(data_with_input["input"])
        job["input_ref"] = data_with_input["input"]
        job["pipeline"] = data_with_input.get("pipeline", [])
    uploaded = next((d for d in known if d["type"] == ImageUploaded.type), None)
    if uploaded:
        job["created_at"] = uploaded["data"]["created_at"]
        job["filename"] = uploaded["data"].get("filename")
        job["owner"] = uploaded["data"].get("principal", LOCAL_PRINCIPAL)
        if uploaded["data"].get("retry_of"):
            job["retry_of"] = uploaded["data"]["retry_of"]
        if uploaded["data"].get("callback_url"):  # for the webhook; a `_ref`: never shown
            job["callback_ref"] = uploaded["data"]["callback_url"]
    if latest["type"] in {ImageProcessed.type, ImageReused.type}:
        job["output"] = {
            **public_image(latest["data"]["output"]),
            "content_type": latest["data"]["output"]["content_type"],
        }
        job["output_ref"] = latest["data"]["output"]
        # A reused output is an earlier job's, taken as it is: no step of this job made it.
        job["steps"] = latest["data"].get("steps", [])
        if latest["type"] == ImageReused.type:
            job["reused_from"] = latest["data"]["reused_from"]
    elif latest["type"] == JobFailed.type:
        job["error"] = latest["data"]["error"]
    elif latest["type"] == JobCancelled.type:
        job["cancelled_by"] = latest["data"]["principal"]
    return annotate(job, docs)


def annotate(job: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """`job` with what its marks among `records` say (`MARK_EVENTS`; other records are
    ignored): `retried_by`, the jobs retrying it, oldest first; `erased_at` and
    `erased_by`, from its first erasure. Idempotent, so marks a replica saw live may be
    applied again to a status provenance folded from the same ones."""
    marks = sorted(
        (r for r in records if r.get("type") in MARK_EVENTS), key=lambda r: str(r["time"])
    )
    for mark in marks:
        if mark["type"] == JobRetried.type:
            retried_by = job.setdefault("retried_by", [])
            if mark["data"]["retry"] not in retried_by:
                retried_by.append(mark["data"]["retry"])
        elif "erased_at" not in job or mark["time"] < job["erased_at"]:
            job["erased_at"] = mark["time"]
            job["erased_by"] = mark["data"]["principal"]
    return job


def public_image(image: dict[str, Any]) -> dict[str, Any]:
    public = {name: image[name] for name in _IMAGE_FIELDS}
    if image.get("info"):
        public["info"] = image["info"]
    return public
