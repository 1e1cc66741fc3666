"""A reused job's steps, read back from its PROV document as a progress stream sends them:
its document names the earlier job's computation (`image.processed`, without time or
agent: they are that job's), which `schemathesis run` saw sent as a step with
`"time": null, "service": ""`. As this job's step it is the output taken when the runner
reused it: the reuse's time and service, and the job it came from."""

from __future__ import annotations

import dataclasses
import uuid

from messaging import Envelope
from messaging.events import ImageReused
from provenancedb.provview import merge_prov, prov_view
from tests.fuzz.samples import envelope as sample_envelope
from tests.fuzz.samples import events
from upload.schemas import ProgressStep
from upload.steps import recorded_steps

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
