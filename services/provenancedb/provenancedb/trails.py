"""The rules of a complete trail, with no I/O: what `make audit` checks in each job's
provenance documents (see `audit` for the whole check, against S3 too).

A job's trail is complete when its intake (`upload.received` naming the stored input,
`image.uploaded`) is there; a succeeded job has its processing and an `image.processed`
whose steps are the pipeline's operations (or, when it reused an earlier job's output, its
`image.reused`, naming a job that succeeded with the same output); a failed job has its
`job.failed`; a cancelled job has its `job.cancelled` and the `job.cancel-requested` that
asked for it (a job may be asked more than once: each request is a step of its own).
A failed or cancelled job may also have been retried (`job.retried`, one per new job):
an extra step, which must name a job whose `image.uploaded` names it back (`retry_of`);
the new job's trail is complete with its own intake, like any job's, and names a job
that had failed or been cancelled.
A finished job may have been erased (`job.erased`, one per job: its id derives from the
job's): an extra step, which leaves the rest of its trail as it was; an erasure of a job
that had not finished is a gap. The objects it names deleted are accounted for
(`erased_objects`): the audit does not miss them in S3.
Trails recorded before those events carried it all are checked for their
`image.stored` and `operation.applied` documents. A step recorded twice under different ids
is a gap; so is a job still unfinished after the grace period.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from messaging.jobs import FINAL_STATUSES, fold_status

INTAKE = (("upload.received",), ("image.uploaded",))
NOT_ACCEPTED = "not_accepted"


@dataclass(frozen=True, slots=True)
class Gap:
    kind: str
    """incomplete_trail, duplicate_step, unfinished, output_without_provenance or
    missing_output."""
    subject: str
    """The job id, or the S3 URI of the object."""
    detail: str


@dataclass
class Report:
    jobs: Counter[str] = field(default_factory=Counter)
    """Jobs by status."""
    in_progress: list[str] = field(default_factory=list)
    outputs_checked: int = 0
    inputs_checked: int = 0
    unused_inputs: list[str] = field(default_factory=list)
    erased_objects: int = 0
    """Objects that S3 no longer has because an erasure deleted them (not gaps)."""
    erased_but_stored: list[str] = field(default_factory=list)
    """Inputs and outputs S3 still has though every job using them is erased (each
    erasure kept them for another, e.g. two erased at once on two replicas): the pixels
    an owner asked to erase, for an operator to delete."""
    gaps: list[Gap] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobs": dict(self.jobs),
            "in_progress": self.in_progress,
            "outputs_checked": self.outputs_checked,
            "inputs_checked": self.inputs_checked,
            "unused_inputs": self.unused_inputs,
            "erased_objects": self.erased_objects,
            "erased_but_stored": self.erased_but_stored,
            "gaps": [asdict(gap) for gap in self.gaps],
        }

    def summary(self) -> str:
        jobs = ", ".join(f"{count} {status}" for status, count in sorted(self.jobs.items()))
        lines = [
            f"jobs: {sum(self.jobs.values())} ({jobs or 'none'}); "
            f"outputs checked: {self.outputs_checked}; inputs checked: {self.inputs_checked}",
            f"in progress: {len(self.in_progress)}; inputs no job used: {len(self.unused_inputs)}; "
            f"erased objects: {self.erased_objects}; "
            f"stored though every job using them is erased: {len(self.erased_but_stored)}",
            f"gaps: {len(self.gaps)}",
        ]
        lines += [f"  {gap.kind}: {gap.subject}: {gap.detail}" for gap in self.gaps]
        lines += [f"  erased but stored: {uri}" for uri in self.erased_but_stored]
        return "\n".join(lines)


# --------------------------------------------------------------------------- one job


def step_key(doc: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a recorded step unique within its job: two documents with the same key
    are the same step written twice."""
    kind, data = doc.get("type"), doc.get("data") or {}
    if kind == "image.stored":
        return (kind, data.get("role"))
    if kind == "operation.applied":
        return (kind, data.get("index"), data.get("attempt"))
    if kind in {"job.processing-started", "job.failed", "job.retry-scheduled", "job.parked"}:
        return (kind, doc.get("attempt"))
    if kind == "job.cancel-requested":  # each request is its own (a second click, say)
        return (kind, doc.get("_id"))
    if kind == "job.retried":  # each retry made a job of its own
        return (kind, data.get("retry"))
    if kind == "webhook.attempted":  # each attempt of each notification
        return (kind, data.get("delivery"), data.get("attempt"))
    return (kind,)


def job_gaps(
    job_id: str, docs: list[dict[str, Any]], *, now: datetime, grace: float
) -> tuple[str, list[Gap]]:
    """(status, gaps) of one job's trail."""
    steps = Counter(step_key(doc) for doc in docs)
    gaps = [
        Gap("duplicate_step", job_id, f"{' '.join(map(str, key))} recorded {count} times")
        for key, count in steps.items()
        if count > 1
    ]

    def missing(*keys: tuple[Any, ...]) -> None:
        for key in keys:
            if not steps[key]:
                gaps.append(Gap("incomplete_trail", job_id, f"no {' '.join(map(str, key))}"))

    job = fold_status(job_id, docs)
    status = job["status"] if job else "unknown"
    refused = status == "failed" and job is not None and job["error"]["code"] == NOT_ACCEPTED
    if not refused:
        # A refused upload (503) may have been recorded in full, in part or not at all.
        missing(*INTAKE)
        if not _input_stored(docs, steps):
            gaps.append(Gap("incomplete_trail", job_id, "no stored input"))
    if status == "succeeded":
        # A reused output is an earlier job's, taken whole: its image.reused is the trail
        # (no processing, operations or storing of this job's own).
        if not _reused(docs):
            gaps += _computation_gaps(job_id, docs, steps)
    elif status == "failed":
        if not any(key[0] == "job.failed" for key in steps):
            gaps.append(Gap("incomplete_trail", job_id, "no job.failed"))
    elif status == "cancelled":
        # The status comes from its job.cancelled; who asked must be recorded too.
        if not any(key[0] == "job.cancel-requested" for key in steps):
            gaps.append(Gap("incomplete_trail", job_id, "no job.cancel-requested"))
    else:
        newest = max((_time(d) for d in docs), default=now)
        if (now - newest).total_seconds() > grace:
            gaps.append(
                Gap("unfinished", job_id, f"{status} since {newest.isoformat()}, no step since")
            )
    if status not in FINAL_STATUSES and any(d.get("type") == "job.erased" for d in docs):
        gaps.append(Gap("incomplete_trail", job_id, f"erased while {status}"))
    return status, gaps


def _input_stored(docs: list[dict[str, Any]], steps: Counter[tuple[Any, ...]]) -> bool:
    """`upload.received` names the stored input (or, recorded before, `image.stored`)."""
    received = [d for d in docs if d.get("type") == "upload.received"]
    return any((d.get("data") or {}).get("input") for d in received) or bool(
        steps[("image.stored", "input")]
    )


def _computation_gaps(
    job_id: str, docs: list[dict[str, Any]], steps: Counter[tuple[Any, ...]]
) -> list[Gap]:
    """A computed output needs its processing and `image.processed`, with a step for each
    operation of the pipeline (recorded before, in `operation.applied` documents, and the
    output stored in an `image.stored` that is the processed one)."""
    processed = next(d for d in docs if d["type"] == "image.processed")
    gaps = []
    if not any(key[0] == "job.processing-started" for key in steps):
        gaps.append(Gap("incomplete_trail", job_id, "no job.processing-started"))
    if processed["data"].get("attempt"):  # carries its operations: the whole computation
        return gaps + _step_gaps(job_id, processed["data"])
    if not steps[("image.stored", "output")]:
        gaps.append(Gap("incomplete_trail", job_id, "no image.stored output"))
    gaps += _operation_gaps(job_id, docs, len(processed["data"].get("steps", [])))
    stored = [d for d in docs if d["type"] == "image.stored" and d["data"].get("role") == "output"]
    if stored and stored[0].get("output_sha256") != processed.get("output_sha256"):
        gaps.append(Gap("incomplete_trail", job_id, "stored output differs from the processed one"))
    return gaps


def _step_gaps(job_id: str, data: dict[str, Any]) -> list[Gap]:
    """The steps of `image.processed` must be the pipeline's operations, each once."""
    wanted = sorted(str(op.get("op")) for op in data.get("pipeline", []) if isinstance(op, dict))
    applied = sorted(str(step.get("op")) for step in data.get("steps", []))
    if applied == wanted:
        return []
    detail = f"pipeline operations {wanted}, image.processed steps {applied}"
    return [Gap("incomplete_trail", job_id, detail)]


def _operation_gaps(job_id: str, docs: list[dict[str, Any]], count: int) -> list[Gap]:
    """Some attempt must have recorded every operation the output went through."""
    by_attempt: dict[Any, set[int]] = defaultdict(set)
    for doc in docs:
        if doc["type"] == "operation.applied":
            by_attempt[doc["data"].get("attempt")].add(doc["data"].get("index"))
    if count and not any(indexes >= set(range(count)) for indexes in by_attempt.values()):
        seen = {attempt: sorted(indexes) for attempt, indexes in by_attempt.items()}
        return [
            Gap(
                "incomplete_trail",
                job_id,
                f"{count} operations applied, operation.applied by attempt: {seen}",
            )
        ]
    return []


def _reused(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The job's `image.reused`, when it took an earlier job's output (and computed none)."""
    if any(d["type"] == "image.processed" for d in docs):
        return None
    return next((d for d in docs if d["type"] == "image.reused"), None)


def erased_jobs(docs: Iterable[dict[str, Any]]) -> set[str]:
    """The jobs a `job.erased` names."""
    return {str(doc.get("job_id")) for doc in docs if doc.get("type") == "job.erased"}


def erased_objects(docs: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    """(bucket, key) of every object a `job.erased` names deleted: S3 no longer has them,
    and that is accounted for."""
    return {
        (str(o.get("bucket")), str(o.get("key")))
        for doc in docs
        if doc.get("type") == "job.erased"
        for o in (doc.get("data") or {}).get("objects", [])
        if isinstance(o, dict) and o.get("deleted")
    }


def _time(doc: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(doc["time"]).replace("Z", "+00:00"))


# --------------------------------------------------------------------------- everything


def audit_documents(
    docs: Iterable[dict[str, Any]], *, now: datetime, grace: float
) -> tuple[Report, dict[str, dict[str, Any]]]:
    """Check every job's trail. Also returns each succeeded job's output, by job id."""
    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for doc in docs:
        by_job[str(doc.get("job_id"))].append(doc)
    report = Report()
    outputs: dict[str, dict[str, Any]] = {}
    for job_id, job_docs in by_job.items():
        status, gaps = job_gaps(job_id, job_docs, now=now, grace=grace)
        report.jobs[status] += 1
        report.gaps += gaps
        if status not in FINAL_STATUSES and not any(g.kind == "unfinished" for g in gaps):
            report.in_progress.append(job_id)
        if status == "succeeded":
            made = _reused(job_docs) or next(d for d in job_docs if d["type"] == "image.processed")
            outputs[job_id] = made["data"]["output"]
    report.gaps += _reuse_gaps(by_job, outputs)
    report.gaps += _retry_gaps(by_job)
    return report, outputs


def _reuse_gaps(
    by_job: dict[str, list[dict[str, Any]]], outputs: dict[str, dict[str, Any]]
) -> list[Gap]:
    """A reused output must be the output of the succeeded job it names."""
    gaps = []
    for job_id, output in outputs.items():
        reused = _reused(by_job[job_id])
        if reused is None:
            continue
        earlier = reused["data"].get("reused_from")
        if outputs.get(earlier, {}).get("sha256") != output.get("sha256"):
            detail = f"reused from {earlier}, which did not succeed with this output"
            gaps.append(Gap("incomplete_trail", job_id, detail))
    return gaps


def _retry_gaps(by_job: dict[str, list[dict[str, Any]]]) -> list[Gap]:
    """Both ends of each retry: a `job.retried` names a job whose `image.uploaded` names
    the retried job back, and a job that says it retries another names one that failed
    or was cancelled."""
    gaps = []
    for job_id, docs in by_job.items():
        for doc in docs:
            data = doc.get("data") or {}
            if doc.get("type") == "job.retried":
                retry = str(data.get("retry"))
                if _retry_of(by_job.get(retry, [])) != job_id:
                    detail = f"retried as {retry}, whose intake does not name this job"
                    gaps.append(Gap("incomplete_trail", job_id, detail))
            elif doc.get("type") == "image.uploaded" and data.get("retry_of"):
                retried = str(data["retry_of"])
                earlier = fold_status(retried, by_job.get(retried, []))
                if earlier is None or earlier["status"] not in {"failed", "cancelled"}:
                    status = earlier["status"] if earlier else "unknown"
                    detail = f"a retry of {retried}, which is {status}, not failed or cancelled"
                    gaps.append(Gap("incomplete_trail", job_id, detail))
    return gaps


def _retry_of(docs: list[dict[str, Any]]) -> str | None:
    uploaded = next((d for d in docs if d.get("type") == "image.uploaded"), None)
    return (uploaded.get("data") or {}).get("retry_of") if uploaded else None
