"""The completeness check: every job has its whole trail, every output its provenance.

    python -m provenancedb.audit [--grace SECONDS] [--json]      (or: make audit)

Reads every provenance document (as the auditor when `COUCHDB_AUDITOR_PASSWORD` is set:
read-only) and lists both S3 buckets, then reports

- jobs whose trail is incomplete: intake (`upload.received` naming the stored input,
  `image.uploaded`) not all there; a succeeded job without its processing and an
  `image.processed` whose steps are the pipeline's operations (or, when it reused an
  earlier job's output, its `image.reused`); a failed job without `job.failed`. Trails
  recorded before those events carried it all have the stored input and output in
  `image.stored` and each operation in `operation.applied`, and are checked for them;
- steps recorded twice under different ids (a follow-up id that was not deterministic);
- jobs still unfinished after `--grace` seconds (a job parked and never re-published);
- outputs in S3 that no `image.processed` names, and outputs provenance names that S3
  does not have.

Inputs in S3 that no job used are listed but are not gaps: an upload stores its input
before the job is recorded, so a refused upload (503) leaves one behind.

Before reading, the audit waits (up to `--index-deadline` seconds, default 1800) for the
view it reads to be indexed: PouchDB Server indexes a view on its first read after writes,
and after thousands of jobs that takes longer than one request may (the client gives up
after 30 s, the server goes on indexing; each new read waits for the same indexing).

Exit status: 0 without gaps, 1 with gaps, 2 when the check itself could not run; then it
says which step failed and why (a timeout's own message is empty: it says "timed out").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from messaging.jobs import FINAL_STATUSES, fold_status
from messaging.thumbnails import THUMBNAIL_PREFIX
from objectstore import ObjectStore
from objectstore import open_store as open_object_store
from servicekit import load_settings

from .settings import AuditSettings
from .store import ProvenanceStore, open_store

INTAKE = (("upload.received",), ("image.uploaded",))
NOT_ACCEPTED = "not_accepted"
REUSE_INDEX_PREFIX = "computations/"
"""The runner's reuse index in the output bucket (`imageproc_runner/reuse.py`), not outputs."""
_INPUT_KEY = re.compile(r"^sha256/([0-9a-f]{64})(\.[a-z0-9]+)?$")
AUDIT_VIEW = "by_job"
"""The view `ProvenanceStore.all_job_documents` reads: the one the audit waits for."""
INDEX_DEADLINE = 1800.0
"""Default seconds to wait for that view's index (PouchDB: ~25k documents take minutes)."""


class AuditFailed(Exception):
    """The check could not run; the message says which step failed and why."""


def describe(exc: BaseException) -> str:
    """An exception as a non-empty sentence: a timeout's message is empty, and an
    aiohttp error's often is too."""
    if isinstance(exc, AuditFailed):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def step(what: str) -> Iterator[None]:
    """Any error inside becomes an AuditFailed naming `what` was being done."""
    try:
        yield
    except AuditFailed:
        raise
    except Exception as exc:
        raise AuditFailed(f"{what}: {describe(exc)}") from exc


async def wait_indexed(
    read: Callable[[], Awaitable[None]],
    *,
    view: str = AUDIT_VIEW,
    deadline: float = INDEX_DEADLINE,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Read `view` until it answers, for up to `deadline` seconds: each read that times
    out while the server indexes is asked again; any other error, or the deadline, is an
    AuditFailed saying so."""
    started, timeouts = clock(), 0
    while True:
        try:
            await read()
            return
        except TimeoutError as exc:
            timeouts += 1
            waited = clock() - started
            if waited >= deadline:
                raise AuditFailed(
                    f"CouchDB view {view} not indexed after {waited:.0f} s ({timeouts} reads "
                    f"timed out); the server may still be indexing: run the audit again, or "
                    f"wait longer with --index-deadline (now {deadline:.0f})"
                ) from exc
            # On stderr: stdout is the report (--json is parsed).
            print(
                f"provenancedb.audit: waiting for CouchDB to index view {view} "
                f"({waited:.0f} s so far)",
                file=sys.stderr,
            )
        except Exception as exc:
            raise AuditFailed(f"reading CouchDB view {view}: {describe(exc)}") from exc


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
    gaps: list[Gap] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "jobs": dict(self.jobs),
            "in_progress": self.in_progress,
            "outputs_checked": self.outputs_checked,
            "inputs_checked": self.inputs_checked,
            "unused_inputs": self.unused_inputs,
            "gaps": [asdict(gap) for gap in self.gaps],
        }

    def summary(self) -> str:
        jobs = ", ".join(f"{count} {status}" for status, count in sorted(self.jobs.items()))
        lines = [
            f"jobs: {sum(self.jobs.values())} ({jobs or 'none'}); "
            f"outputs checked: {self.outputs_checked}; inputs checked: {self.inputs_checked}",
            f"in progress: {len(self.in_progress)}; inputs no job used: {len(self.unused_inputs)}",
            f"gaps: {len(self.gaps)}",
        ]
        lines += [f"  {gap.kind}: {gap.subject}: {gap.detail}" for gap in self.gaps]
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
    else:
        newest = max((_time(d) for d in docs), default=now)
        if (now - newest).total_seconds() > grace:
            gaps.append(
                Gap("unfinished", job_id, f"{status} since {newest.isoformat()}, no step since")
            )
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


async def audit(
    store: ProvenanceStore,
    objects: ObjectStore,
    settings: AuditSettings,
    *,
    grace: float = 600.0,
    now: datetime | None = None,
) -> Report:
    """The whole check: provenance against itself, then against both buckets."""
    with step(f"reading every provenance document (CouchDB view {AUDIT_VIEW})"):
        docs = [doc async for doc in store.all_job_documents()]
    report, outputs = audit_documents(docs, now=now or datetime.now(UTC), grace=grace)
    inputs_used = {doc["input_sha256"] for doc in docs if doc.get("type") == "image.uploaded"}

    with step(f"listing s3://{settings.s3_output_bucket}"):
        await _check_outputs(report, outputs, objects, settings.s3_output_bucket)
    with step(f"listing s3://{settings.s3_input_bucket}"):
        async for item in objects.objects(settings.s3_input_bucket):
            report.inputs_checked += 1
            match = _INPUT_KEY.match(item.key)
            if match is None or match.group(1) not in inputs_used:
                report.unused_inputs.append(item.uri)
    return report


async def _check_outputs(
    report: Report, outputs: dict[str, dict[str, Any]], objects: ObjectStore, bucket: str
) -> None:
    """Every output in `bucket` must be named by an `image.processed`, and the reverse."""
    expected = {(o["bucket"], o["key"]): job_id for job_id, o in outputs.items()}
    found: set[tuple[str, str]] = set()
    async for item in objects.objects(bucket):
        if item.key.startswith(REUSE_INDEX_PREFIX):
            continue  # the runner's index of computations (a succeeded job's output each)
        if item.key.startswith(THUMBNAIL_PREFIX):
            continue  # the history's thumbnails: a cache of outputs, not results
        report.outputs_checked += 1
        found.add((item.bucket, item.key))
        job_id = expected.get((item.bucket, item.key))
        if job_id is None:
            metadata = await objects.metadata(item.bucket, item.key)
            named = metadata.get("job-id", "no job-id metadata")
            detail = f"no image.processed names it (job {named})"
            report.gaps.append(Gap("output_without_provenance", item.uri, detail))
    for (in_bucket, key), job_id in expected.items():
        if in_bucket == bucket and (in_bucket, key) not in found:
            report.gaps.append(
                Gap("missing_output", f"s3://{bucket}/{key}", f"job {job_id} names it; S3 has not")
            )


async def _main(grace: float, as_json: bool, index_deadline: float) -> int:
    settings = load_settings(AuditSettings, "provenancedb.audit")
    async with (
        open_store(settings, settings.login()) as store,
        open_object_store(settings) as objects,
    ):
        with step(f"checking the provenance database at {settings.couchdb_url}"):
            await store.ready()
        await wait_indexed(lambda: store.read_view(AUDIT_VIEW), deadline=index_deadline)
        report = await audit(store, objects, settings, grace=grace)
    print(json.dumps(report.as_dict(), indent=2) if as_json else report.summary())
    return 1 if report.gaps else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m provenancedb.audit",
        description="Report jobs without a complete provenance trail and outputs without "
        "provenance.",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=600.0,
        help="seconds an unfinished job may go without a new step before it is a gap (default 600)",
    )
    parser.add_argument(
        "--index-deadline",
        type=float,
        default=INDEX_DEADLINE,
        help="seconds to wait for CouchDB to index the provenance view before reading it "
        f"(default {INDEX_DEADLINE:.0f})",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_main(args.grace, args.json, args.index_deadline))
    except (AuditFailed, OSError, RuntimeError) as exc:
        print(f"provenancedb.audit: could not run: {describe(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
