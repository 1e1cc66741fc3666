"""A cancelled job's trail (`trails.py`, what `make audit` checks): its intake, who asked
(`job.cancel-requested`, once or more) and its `job.cancelled`; no computation is owed.
Pure: documents made as provenancedb makes them, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from messaging.events import CancelRequested, JobCancelled
from provenancedb.audit import audit_documents
from tests.provenancedb.test_documents import (
    PIPELINE,
    Step,
    documents,
    envelope_for,
    input_ref,
    intake,
    sha,
)

JOB = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"
T0 = datetime(2026, 12, 2, 5, 40, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
SOURCE = input_ref(sha("cancelled.png"))


def _requested(seconds: float) -> Step:
    event = CancelRequested(job_id=JOB, principal="alice")
    at = T0 + timedelta(seconds=seconds)
    return envelope_for(event, "upload", at, key=str(seconds)), event


def _cancelled(steps: list[Step]) -> Step:
    event = JobCancelled(
        job_id=JOB, principal="alice", input=SOURCE, pipeline=PIPELINE, while_processing=True
    )
    return envelope_for(
        event, "imageproc_runner", T0 + timedelta(seconds=5), cause=steps[1][0]
    ), event


def test_a_cancelled_job_with_its_intake_request_and_cancellation_is_complete() -> None:
    steps = intake(JOB, SOURCE, T0)
    trail = [*steps, _requested(1), _requested(2), _cancelled(steps)]  # asked twice: fine
    report, outputs = audit_documents(documents(trail), now=NOW, grace=60)
    assert report.gaps == []
    assert report.jobs == {"cancelled": 1}
    assert report.in_progress == []
    assert outputs == {}  # no output is owed, none is expected in S3


def test_a_cancellation_nobody_asked_for_is_a_gap() -> None:
    steps = intake(JOB, SOURCE, T0)
    report, _ = audit_documents(documents([*steps, _cancelled(steps)]), now=NOW, grace=60)
    assert [(g.kind, g.detail) for g in report.gaps] == [
        ("incomplete_trail", "no job.cancel-requested")
    ]


def test_a_request_alone_leaves_the_job_unfinished_until_the_runner_decides() -> None:
    """Asked, never cancelled nor finished: after the grace period, an unfinished job."""
    steps = intake(JOB, SOURCE, T0)
    report, _ = audit_documents(documents([*steps, _requested(1)]), now=NOW, grace=60)
    assert report.jobs == {"queued": 1}
    assert [g.kind for g in report.gaps] == ["unfinished"]
