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
  does not have, unless a `job.erased` names them deleted (counted as erased objects:
  accounted for; an object an erasure kept because another job uses it is checked as
  any other).

Inputs in S3 that no job used are listed but are not gaps: an upload stores its input
before the job is recorded, so a refused upload (503) leaves one behind. So are inputs and
outputs S3 still has though every job using them is erased (`erased_but_stored`: each
erasure kept them for another job, erased at the same moment elsewhere).

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
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from messaging.thumbnails import THUMBNAIL_PREFIX
from objectstore import ObjectStore
from objectstore import open_store as open_object_store
from servicekit import load_settings

from .settings import AuditSettings
from .store import ProvenanceStore, open_store
from .trails import (
    Gap,
    Report,
    audit_documents,
    erased_jobs,
    erased_objects,
    job_gaps,
    step_key,
)

__all__ = [
    "REUSE_INDEX_PREFIX",
    "AuditFailed",
    "Gap",
    "Report",
    "audit",
    "audit_documents",
    "job_gaps",
    "main",
    "step_key",
]

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
    input_users: dict[str, set[str]] = defaultdict(set)
    for doc in docs:
        if doc.get("type") == "image.uploaded":
            input_users[doc["input_sha256"]].add(str(doc.get("job_id")))
    erased = erased_jobs(docs)

    with step(f"listing s3://{settings.s3_output_bucket}"):
        await _check_outputs(
            report,
            outputs,
            objects,
            settings.s3_output_bucket,
            deleted=erased_objects(docs),
            erased=erased,
        )
    with step(f"listing s3://{settings.s3_input_bucket}"):
        async for item in objects.objects(settings.s3_input_bucket):
            report.inputs_checked += 1
            match = _INPUT_KEY.match(item.key)
            if match is None or match.group(1) not in input_users:
                report.unused_inputs.append(item.uri)
            elif input_users[match.group(1)] <= erased:
                report.erased_but_stored.append(item.uri)
    return report


async def _check_outputs(
    report: Report,
    outputs: dict[str, dict[str, Any]],
    objects: ObjectStore,
    bucket: str,
    *,
    deleted: set[tuple[str, str]],
    erased: set[str],
) -> None:
    """Every output in `bucket` must be named by an `image.processed`, and the reverse,
    but for the outputs an erasure deleted (`deleted`: (bucket, key)); one still stored
    though every job using it is `erased` is listed."""
    expected = {(o["bucket"], o["key"]): job_id for job_id, o in outputs.items()}
    users: dict[tuple[str, str], set[str]] = defaultdict(set)
    for made_by, output in outputs.items():
        users[(output["bucket"], output["key"])].add(made_by)
    found: set[tuple[str, str]] = set()
    async for item in objects.objects(bucket):
        if item.key.startswith(REUSE_INDEX_PREFIX):
            continue  # the runner's index of computations (a succeeded job's output each)
        if item.key.startswith(THUMBNAIL_PREFIX):
            continue  # the history's thumbnails: a cache of outputs, not results
        report.outputs_checked += 1
        found.add((item.bucket, item.key))
        job_id = expected.get((item.bucket, item.key))
        if job_id is not None and users[(item.bucket, item.key)] <= erased:
            report.erased_but_stored.append(item.uri)
        if job_id is None:
            metadata = await objects.metadata(item.bucket, item.key)
            named = metadata.get("job-id", "no job-id metadata")
            detail = f"no image.processed names it (job {named})"
            report.gaps.append(Gap("output_without_provenance", item.uri, detail))
    for (in_bucket, key), job_id in expected.items():
        if in_bucket != bucket or (in_bucket, key) in found:
            continue
        if (in_bucket, key) in deleted:
            report.erased_objects += 1
        else:
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
