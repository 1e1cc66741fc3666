"""A reused job's steps, read back from its PROV document as a progress stream sends them:
its document names the earlier job's computation (`image.processed`, without time or
agent: they are that job's), which `schemathesis run` saw sent as a step with
`"time": null, "service": ""`. As this job's step it is the output taken when the runner
reused it: the reuse's time and service, and the job it came from."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from messaging import Envelope
from messaging.events import ImageReused
from provenancedb.provview import merge_prov, prov_view
from tests.fuzz.samples import envelope as sample_envelope
from tests.fuzz.samples import events
from tests.upload.test_progress import AskedNothing
from tests.upload.test_progress import _stream_of as stream_of
from upload.live import LiveJobs
from upload.schemas import ProgressStep
from upload.steps import recorded_steps, taken_step

REUSED_TRAIL = ("upload.received", "image.uploaded", "image.reused")
SOURCES = {"image.reused": "/imagemesh/imageproc_runner"}


def event_id(event_type: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, event_type))


def envelope(event_type: str) -> Envelope:
    """The sample envelope of an event, with an id, publisher and cause of its own (each
    event caused by the one before it, as in the mesh)."""
    before = REUSED_TRAIL[max(REUSED_TRAIL.index(event_type) - 1, 0)]
    return dataclasses.replace(
        sample_envelope(event_type),
        id=event_id(event_type),
        source=SOURCES.get(event_type, "/imagemesh/upload"),
        causation_id=event_id(before),
    )


def test_the_computation_a_reused_job_took_is_a_step_at_the_reuse_by_the_runner() -> None:
    document = merge_prov([prov_view(envelope(kind), events()[kind]) for kind in REUSED_TRAIL])
    steps = recorded_steps(document)
    by_type = {step["type"]: step for step in steps}
    assert set(by_type) == {*REUSED_TRAIL, "image.processed"}
    reused, taken = by_type["image.reused"], by_type["image.processed"]
    earlier = events()["image.reused"]
    assert isinstance(earlier, ImageReused)
    assert taken["id"] == earlier.computation
    assert (taken["time"], taken["service"]) == (reused["time"], "imageproc_runner")
    assert taken["reused_from"] == earlier.reused_from
    assert taken["time"] is not None
    assert [step["type"] for step in steps][-2:] == ["image.reused", "image.processed"]
    # The reuse's cause keeps its own time and service.
    uploaded = by_type["image.uploaded"]
    assert uploaded["service"] == "upload"
    assert uploaded["time"] == sample_envelope("image.uploaded").time.isoformat().replace(
        "+00:00", "Z"
    )
    for step in steps:  # every step as the stream's schema documents it: a time, a service
        ProgressStep.model_validate(step)
        assert isinstance(step["time"], str), step
        assert step["service"], step


def test_the_computation_a_reuse_took_reads_the_same_live_as_from_provenance() -> None:
    document = merge_prov([prov_view(envelope(kind), events()[kind]) for kind in REUSED_TRAIL])
    recorded = {step["type"]: step for step in recorded_steps(document)}["image.processed"]
    reused = events()["image.reused"]
    assert isinstance(reused, ImageReused)
    assert reused.taken is not None
    live = taken_step(envelope("image.reused"), reused)
    assert live is not None
    assert live["time"][:19] == recorded["time"][:19]  # rfc3339 keeps microseconds
    # What provenance says of the earlier computation's own attempt and time is that
    # job's record; the live step says what the reuse's index entry kept of it.
    assert {**live, "time": None} == {
        **recorded,
        "time": None,
        "duration_ms": reused.taken.duration_ms,
        "attempt": reused.taken.attempt,
        "operations": [
            {"operation": "thumbnail", "index": 0, "duration_ms": 12.25},
        ],
    }
    ProgressStep.model_validate(live)


class Provenance:
    """Provenance that has recorded the reused job, and counts what it is asked."""

    def __init__(self) -> None:
        self.asked = 0

    async def recorded_status(self, job_id: str) -> dict[str, Any]:
        self.asked += 1
        return {"id": job_id, "status": "succeeded"}

    async def provenance(self, job_id: str) -> dict[str, Any]:
        self.asked += 1
        return merge_prov([prov_view(envelope(kind), events()[kind]) for kind in REUSED_TRAIL])


def _seen_whole(reused: ImageReused) -> LiveJobs:
    live = LiveJobs()
    for kind in REUSED_TRAIL:
        event = reused if kind == "image.reused" else events()[kind]
        live.on_event(envelope(kind), event)
    return live


async def test_a_reused_job_seen_whole_is_streamed_without_asking_provenance() -> None:
    # The reuse said what it took: every step, the taken computation too, comes from the
    # live view, and the stream ends at once (no wait for provenance to record the reuse).
    reused = events()["image.reused"]
    assert isinstance(reused, ImageReused)
    sent = await stream_of(_seen_whole(reused), AskedNothing())
    assert [data.get("type", data.get("status")) for _, data in sent] == [
        *REUSED_TRAIL,
        "image.processed",
        "succeeded",
    ]
    taken = sent[-2][1]
    assert (taken["id"], taken["reused_from"]) == (reused.computation, reused.reused_from)


async def test_a_reuse_that_does_not_say_what_it_took_reads_it_from_provenance() -> None:
    # An index entry written before entries kept the computation's steps.
    reused = events()["image.reused"]
    assert isinstance(reused, ImageReused)
    provenance = Provenance()
    sent = await stream_of(_seen_whole(reused.model_copy(update={"taken": None})), provenance)
    assert provenance.asked >= 2
    assert [data.get("type", data.get("status")) for _, data in sent][-2:] == [
        "image.processed",
        "succeeded",
    ]
