"""A finished job's marks (retried, erased: `messaging.jobs.MARK_EVENTS`) add to its
status without changing it, the same way from provenance's documents, from a summary and
from the events a replica saw live, however often and in whatever order they arrive."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from messaging import Envelope
from messaging.events import ErasedObject, Event, JobErased, JobRetried
from messaging.jobs import annotate, fold_status, record
from provenancedb.summaries import job_of, merged, status_record
from tests.fuzz.samples import TIME, envelope, events
from upload.live import MARKS_PER_JOB, LiveJobs

JOB = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
TRAIL = ("upload.received", "image.uploaded", "job.processing-started", "job.failed")


def _at(kind: str, event: Event, seconds: int, event_id: str | None = None) -> Envelope:
    return dataclasses.replace(
        envelope(kind), time=TIME + timedelta(seconds=seconds), id=event_id or f"{kind}-{seconds}"
    )


def _trail() -> list[tuple[Envelope, Event]]:
    samples = events()
    made = []
    for n, kind in enumerate(TRAIL):
        event = samples[kind].model_copy(update={"job_id": JOB})
        made.append((_at(kind, event, n), event))
    return made


def _retried(retry: str, seconds: int) -> tuple[Envelope, Event]:
    event = JobRetried(job_id=JOB, retry=retry, principal="alice")
    return _at(event.type, event, seconds, f"retried-{retry}"), event


def _erased(principal: str, seconds: int) -> tuple[Envelope, Event]:
    event = JobErased(
        job_id=JOB,
        principal=principal,
        objects=[ErasedObject(role="input", bucket="in", key="k", deleted=True)],
    )
    return _at(event.type, event, seconds, f"erased-{seconds}"), event


def _records(pairs: list[tuple[Envelope, Event]]) -> list[dict[str, Any]]:
    return [record(env, event) for env, event in pairs]


def test_marks_add_the_retries_and_the_first_erasure_and_keep_the_status() -> None:
    trail = _trail()
    marks = [_retried("second", 20), _erased("bob", 40), _retried("first", 10), _erased("ann", 30)]
    job = fold_status(JOB, _records(trail + marks))
    assert job is not None
    assert job["status"] == "failed"
    assert job["retried_by"] == ["first", "second"]
    assert (job["erased_by"], job["erased_at"]) == ("ann", record(*marks[3])["time"])
    # Marks move no time of the job: updated_at is its last step's.
    assert job["updated_at"] == record(*trail[-1])["time"]


def test_annotating_again_changes_nothing() -> None:
    records = _records([*_trail(), _retried("again", 5), _erased("ann", 6)])
    job = fold_status(JOB, records)
    assert job is not None
    before = {**job, "retried_by": list(job["retried_by"])}
    assert annotate(job, records) == before


def test_a_job_without_marks_shows_none_of_their_fields() -> None:
    job = fold_status(JOB, _records(_trail()))
    assert job is not None
    assert not {"retried_by", "erased_at", "erased_by", "retry_of"} & job.keys()


def test_a_retry_names_the_job_it_retries() -> None:
    samples = events()
    uploaded = samples["image.uploaded"].model_copy(update={"job_id": "new", "retry_of": JOB})
    job = fold_status("new", [record(envelope(uploaded.type), uploaded)])
    assert job is not None
    assert job["retry_of"] == JOB


def test_the_summary_keeps_marks_and_answers_as_the_fold_does() -> None:
    records = _records([*_trail(), _retried("again", 5), _erased("ann", 6)])
    docs = [{"_id": f"doc-{n}", "job_id": JOB, **r} for n, r in enumerate(records)]
    kept = {}
    for doc in docs:
        found = status_record(doc)
        assert (found is None) == (doc["type"] == "upload.received"), doc["type"]
        if found is not None:
            kept[found[1]] = found[2]
    summary = merged(JOB, None, kept)
    assert summary is not None
    assert job_of(summary) == fold_status(JOB, records)
    assert summary["status"] == "failed"


def test_marks_alone_make_no_summary() -> None:
    env, event = _erased("ann", 1)
    assert merged(JOB, None, {env.id: record(env, event)}) is None


def test_a_replica_applies_the_marks_it_saw_to_a_status_from_provenance() -> None:
    live = LiveJobs()
    for env, event in [_retried("again", 5), _erased("ann", 6)]:
        live.on_event(env, event)  # a job this replica never saw from its start
    assert live.status(JOB) is None
    from_provenance = fold_status(JOB, _records(_trail()))
    assert from_provenance is not None
    job = live.annotated(from_provenance)
    assert (job["retried_by"], job["erased_by"]) == (["again"], "ann")


def test_a_replica_that_saw_the_job_shows_its_marks_in_the_live_status() -> None:
    live = LiveJobs()
    for env, event in _trail():
        live.on_event(env, event)
    env, event = _erased("ann", 9)
    live.mark(env, event)  # the replica that erased it: before the event comes back
    live.on_event(env, event)  # and again when it does
    job = live.status(JOB)
    assert job is not None
    assert (job["status"], job["erased_by"]) == ("failed", "ann")
    assert live.waiting("local") == 0


def test_a_replica_keeps_a_bounded_number_of_marks() -> None:
    live = LiveJobs()
    for n in range(MARKS_PER_JOB + 10):
        live.on_event(*_retried(f"retry-{n:03}", n))
    job = live.annotated({"id": JOB, "status": "failed"})
    assert len(job["retried_by"]) == MARKS_PER_JOB
