"""A progress stream: the order of its events when provenance gets ahead of the live feed,
and the status it folds from the events it saw live.

Provenance (read for the status) and the live queue (the steps) follow the mesh's events
separately, so the status read after `job.processing-started` may already say "succeeded"
while the job's last steps are still on their way to the stream. The end-to-end tests
meet this race only now and then; here it is made to happen every time."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from typing import Any, cast

from aiohttp import web

from messaging import Envelope
from messaging.events import Event, ImageUploaded
from messaging.jobs import fold_status
from provenancedb.documents import to_document
from provenancedb.provview import merge_prov, prov_view
from tests.fuzz.samples import JOB, events
from tests.fuzz.samples import envelope as sample_envelope
from upload.jobs import Jobs
from upload.live import HISTORY_PER_JOB, Inbox, LiveJobs
from upload.progress import _first_status, _follow, _history, _status, _Stream
from upload.steps import recorded_steps, step


def envelope(event_type: str) -> Envelope:
    """The sample envelope of an event, with an id of its own (a step is sent once by id)."""
    return dataclasses.replace(
        sample_envelope(event_type), id=str(uuid.uuid5(uuid.NAMESPACE_URL, event_type))
    )


class Recorder:
    """Stands in for the HTTP response: keeps what the stream writes."""

    def __init__(self) -> None:
        self.text = ""

    async def write(self, data: bytes) -> None:
        self.text += data.decode()

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        parsed = []
        for block in self.text.strip().split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.splitlines())
            parsed.append((lines["event"], json.loads(lines["data"])))
        return parsed


def document(*types: str) -> dict[str, Any]:
    """The PROV-JSON document provenance makes of these events of the job."""
    return merge_prov([prov_view(envelope(kind), events()[kind]) for kind in types])


class FinishedJobs:
    """Provenance that has recorded the whole job already."""

    async def status(self, job_id: str) -> dict[str, Any]:
        return {"id": job_id, "status": "succeeded"}

    recorded_status = status

    async def provenance(self, job_id: str) -> dict[str, Any]:
        return document(*TRAIL)


def queued(inbox: Inbox, *types: str) -> None:
    for event_type in types:
        event: Event = events()[event_type]
        inbox.put(envelope(event_type), event)


class NoProvenance:
    """Provenance that must not be asked for a status (its recorded steps are read: none)."""

    async def status(self, job_id: str) -> dict[str, Any]:
        raise AssertionError("provenance was queried")

    recorded_status = status

    async def provenance(self, job_id: str) -> None:
        return None


async def follow(
    inbox: Inbox, live: LiveJobs | None = None, jobs: object = None
) -> list[tuple[str, dict[str, Any]]]:
    recorder = Recorder()
    stream = _Stream(cast(web.StreamResponse, recorder))
    await _follow(
        stream,
        cast(Jobs, jobs or FinishedJobs()),
        live or LiveJobs(),
        inbox,
        {"id": JOB, "status": "queued"},
    )
    return recorder.events()


async def test_steps_still_on_their_way_come_before_the_final_status() -> None:
    inbox = Inbox()
    queued(inbox, "job.processing-started", "job.retry-scheduled", "image.processed")
    sent = await follow(inbox)
    assert [(name, data["type"] if name == "step" else data["status"]) for name, data in sent] == [
        ("step", "job.processing-started"),
        ("step", "job.retry-scheduled"),
        ("step", "image.processed"),
        # Recorded before the stream followed the job: sent before its final status.
        ("step", "upload.received"),
        ("step", "image.uploaded"),
        ("status", "succeeded"),
    ]
    assert sent[1][1]["service"] == "upload"  # as the sample envelope says


async def test_a_lost_final_event_delays_the_status_only_briefly(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr("upload.progress.CATCH_UP_SECONDS", 0.05)
    inbox = Inbox()
    queued(inbox, "job.processing-started", "job.retry-scheduled")
    sent = await follow(inbox)
    # The lost event's step is read back from provenance, with the steps recorded before
    # the stream followed the job.
    assert [data.get("type", "status") for _, data in sent] == [
        "job.processing-started",
        "job.retry-scheduled",
        *sorted({"upload.received", "image.uploaded", "image.processed"}, key=TRAIL.index),
        "status",
    ]
    assert sent[-1][1]["status"] == "succeeded"
    assert inbox.queue.empty()


TRAIL = ("upload.received", "image.uploaded", "job.processing-started", "image.processed")


def test_the_processed_step_lists_every_operation_and_the_received_one_the_stored_input() -> None:
    processed = step(envelope("image.processed"), events()["image.processed"])
    assert processed["operations"] == [{"operation": "grayscale", "index": 0, "duration_ms": 1.0}]
    assert processed["attempt"] == 1
    received = step(envelope("upload.received"), events()["upload.received"])
    assert received["stored"] is True


async def test_a_job_seen_from_its_start_gets_its_status_from_the_live_events() -> None:
    live = LiveJobs()
    with live.follow(JOB) as inbox:
        for event_type in TRAIL:
            live.on_event(envelope(event_type), events()[event_type])
        sent = await follow(inbox, live, NoProvenance())
    assert [name for name, _ in sent] == ["step"] * 4 + ["status"]
    final = sent[-1][1]
    assert final["status"] == "succeeded"
    assert final["output"]["width"] == events()["image.processed"].model_dump()["output"]["width"]
    assert "output_ref" not in final  # where it is stored stays private


def test_the_live_status_is_the_fold_provenance_makes_of_the_same_events() -> None:
    live = LiveJobs()
    for event_type in TRAIL:
        live.on_event(envelope(event_type), events()[event_type])
    documents = [to_document(envelope(kind), events()[kind]) for kind in TRAIL]
    assert live.status(JOB) == fold_status(JOB, documents)


def test_no_live_status_for_a_job_seen_from_its_middle_or_forgotten() -> None:
    live = LiveJobs(recent_jobs=1)
    live.on_event(envelope("image.processed"), events()["image.processed"])
    assert live.status(JOB) is None  # its start was missed: ask provenance
    live.on_event(envelope("image.uploaded"), events()["image.uploaded"])
    assert live.status(JOB) is not None
    other = events()["image.uploaded"].model_copy(update={"job_id": "another"})
    live.on_event(envelope("image.uploaded"), other)
    assert live.status(JOB) is None  # the oldest job made room
    assert live.status("another") is not None


async def test_a_stream_starts_from_provenance_unless_the_live_status_is_final() -> None:
    live = LiveJobs()
    live.on_event(envelope("image.uploaded"), events()["image.uploaded"])
    # Seen queued live, but the live queue may have lost what followed: ask provenance.
    start = await _first_status(cast(Jobs, FinishedJobs()), live, JOB)
    assert start is not None
    assert start["status"] == "succeeded"
    live.on_event(envelope("image.processed"), events()["image.processed"])
    start = await _first_status(cast(Jobs, NoProvenance()), live, JOB)
    assert start is not None
    assert start["status"] == "succeeded"


def test_an_unfinished_live_status_is_trusted_only_while_fresh() -> None:
    now = [100.0]
    live = LiveJobs(clock=lambda: now[0])
    live.on_event(envelope("image.uploaded"), events()["image.uploaded"])
    status = live.status(JOB, fresh=5.0)
    assert status is not None
    assert status["status"] == "queued"
    now[0] += 6.0  # no news for longer than `fresh`: an event may have been lost
    assert live.status(JOB, fresh=5.0) is None
    assert live.status(JOB) is not None  # without `fresh`: whatever was seen
    live.on_event(envelope("image.processed"), events()["image.processed"])
    now[0] += 60.0
    final = live.status(JOB, fresh=5.0)
    assert final is not None
    assert final["status"] == "succeeded"


def test_waiting_jobs_are_counted_per_owner_until_they_start() -> None:
    live = LiveJobs()
    uploaded = events()["image.uploaded"]
    assert isinstance(uploaded, ImageUploaded)
    assert live.waiting(uploaded.principal) == 0
    live.on_event(envelope("image.uploaded"), uploaded)
    live.on_event(envelope("image.uploaded"), uploaded)  # a redelivery: one job
    assert live.waiting(uploaded.principal) == 1
    assert live.waiting("someone-else") == 0
    live.on_event(envelope("job.processing-started"), events()["job.processing-started"])
    assert live.waiting(uploaded.principal) == 0
    live.on_event(envelope("image.processed"), events()["image.processed"])
    assert live.waiting(uploaded.principal) == 0


async def test_a_job_accepted_elsewhere_is_waited_for_briefly() -> None:
    live = LiveJobs()

    async def arrive() -> None:  # runs once the waiter waits (gather starts it first)
        live.on_event(envelope("image.uploaded"), events()["image.uploaded"])

    seen, _ = await asyncio.gather(live.wait_seen(JOB, 5.0), arrive())
    assert seen
    assert await live.wait_seen(JOB, 0.0)  # known already: no wait
    assert not await live.wait_seen("another", 0.01)


async def test_a_stream_opened_after_the_job_ended_sends_every_step_before_its_status() -> None:
    # The intake is published before the 202, a fast job ends before the client follows
    # it: its steps come from what provenance recorded, each once, then the status.
    recorder = Recorder()
    stream = _Stream(cast(web.StreamResponse, recorder))
    await _status(
        stream, cast(Jobs, FinishedJobs()), {"id": JOB, "status": "succeeded"}, first=True
    )
    sent = recorder.events()
    assert [data.get("type", "status") for _, data in sent] == [*TRAIL, "status"]
    assert [name for name, _ in sent] == ["step"] * 4 + ["status"]
    (processed,) = [data for _, data in sent if data.get("type") == "image.processed"]
    assert [s["operation"] for s in processed["operations"]] == ["grayscale"]


def test_a_recorded_step_reads_as_the_same_step_sent_live() -> None:
    recorded = {s["type"]: s for s in recorded_steps(document(*TRAIL))}
    for kind in TRAIL:
        live = step(envelope(kind), events()[kind])
        again = recorded[kind]
        assert again["time"][:19] == live["time"][:19], kind  # rfc3339 keeps microseconds
        assert {**again, "time": None} == {**live, "time": None}, kind


async def test_a_step_replayed_from_provenance_is_not_sent_again_live() -> None:
    inbox = Inbox()
    queued(inbox, "upload.received", "job.processing-started", "image.processed")
    recorder = Recorder()
    stream = _Stream(cast(web.StreamResponse, recorder))
    job = {"id": JOB, "status": "queued"}
    jobs = cast(Jobs, FinishedJobs())
    await _status(stream, jobs, job, first=True)
    await _follow(stream, jobs, LiveJobs(), inbox, job)
    types = [data.get("type", data.get("status")) for _, data in recorder.events()]
    assert types == [*TRAIL, "queued", "succeeded"]


class LateProvenance:
    """Provenance that records the job's intake only after being asked twice."""

    def __init__(self) -> None:
        self.asked = 0

    async def recorded_status(self, job_id: str) -> dict[str, Any] | None:
        self.asked += 1
        return {"id": job_id, "status": "queued"} if self.asked > 2 else None

    async def provenance(self, job_id: str) -> dict[str, Any]:
        return document(*TRAIL[:2]) if self.asked > 2 else document()


async def test_a_stream_of_a_job_just_accepted_starts_with_its_intake() -> None:
    # The client opens the stream right after the 202, before provenance has recorded
    # the intake: the stream waits for it (briefly), so the first steps come first.
    recorder = Recorder()
    stream = _Stream(cast(web.StreamResponse, recorder))
    job = {"id": JOB, "status": "queued"}
    await _status(stream, cast(Jobs, LateProvenance()), job, first=True)
    types = [data.get("type", data.get("status")) for _, data in recorder.events()]
    assert types == ["upload.received", "image.uploaded", "queued"]


class AskedNothing:
    """Provenance that must not be asked: a stream of a job this replica saw whole."""

    async def recorded_status(self, job_id: str) -> None:
        raise AssertionError("provenance asked for the status")

    async def provenance(self, job_id: str) -> None:
        raise AssertionError("provenance asked for the steps")


def _seen(live: LiveJobs, *types: str) -> None:
    for kind in types:
        live.on_event(envelope(kind), events()[kind])


async def _stream_of(live: LiveJobs, jobs: object, *then: str) -> list[tuple[str, dict[str, Any]]]:
    """What a stream opened now sends, to its end (as `stream_progress` runs it), while the
    events `then` pass."""
    recorder = Recorder()
    stream = _Stream(cast(web.StreamResponse, recorder))
    with live.follow(JOB) as inbox:
        job = live.status(JOB)
        assert job is not None
        await _history(stream, live.history(JOB))
        await _status(stream, cast(Jobs, jobs), job, first=True)
        # Events passing now reach the stream's inbox, whether or not it waits on it yet.
        _seen(live, *then)
        await asyncio.wait_for(_follow(stream, cast(Jobs, jobs), live, inbox, job), 5)
    return recorder.events()


async def test_a_stream_of_a_job_seen_whole_here_asks_provenance_nothing() -> None:
    # The intake passed (upload.received waits for its job's start), then the stream
    # opens: every step comes from the live view, in order, with none read back.
    live = LiveJobs()
    _seen(live, "upload.received", "image.uploaded")
    sent = await _stream_of(live, AskedNothing(), "job.processing-started", "image.processed")
    assert [data.get("type", data.get("status")) for _, data in sent] == [
        "upload.received",
        "image.uploaded",
        "queued",
        "job.processing-started",
        "image.processed",
        "succeeded",
    ]


async def test_a_job_finished_before_its_stream_opened_is_sent_from_the_live_view() -> None:
    live = LiveJobs()
    _seen(live, *TRAIL)
    sent = await _stream_of(live, AskedNothing())
    assert [data.get("type", data.get("status")) for _, data in sent] == [*TRAIL, "succeeded"]


async def test_a_job_seen_from_its_middle_or_past_its_history_asks_provenance() -> None:
    live = LiveJobs()
    _seen(live, "image.processed")  # its start was missed
    assert live.history(JOB) is None
    live = LiveJobs()
    _seen(live, "image.uploaded")
    for n in range(HISTORY_PER_JOB):
        retry = events()["job.retry-scheduled"]
        live.on_event(dataclasses.replace(envelope(retry.type), id=f"retry-{n}"), retry)
    assert live.history(JOB) is None  # not all there: provenance says the steps


async def test_a_stream_that_lost_steps_reads_them_from_provenance_at_the_end() -> None:
    live = LiveJobs()
    _seen(live, "upload.received", "image.uploaded")
    recorder = Recorder()
    stream = _Stream(cast(web.StreamResponse, recorder))
    await _history(stream, live.history(JOB))
    inbox = Inbox()
    queued(inbox, "image.processed")
    inbox.overflowed = True  # job.processing-started was dropped on the way
    await _follow(stream, cast(Jobs, FinishedJobs()), live, inbox, {"id": JOB, "status": "queued"})
    types = [data.get("type", data.get("status")) for _, data in recorder.events()]
    assert types == [*TRAIL[:2], "image.processed", "job.processing-started", "succeeded"]
