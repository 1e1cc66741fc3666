"""Valid messages of the mesh, for the message targets to start from and mutate: one event
of each type with its envelope, and a request for each provenancedb RPC."""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, datetime
from typing import Any

from messaging import Envelope
from messaging.events import (
    ALL_EVENTS,
    CancelRequested,
    ClientInfo,
    ErasedObject,
    ErrorInfo,
    Event,
    ImageProcessed,
    ImageRef,
    ImageReused,
    ImageStored,
    ImageUploaded,
    JobCancelled,
    JobErased,
    JobFailed,
    JobRetried,
    MessageParked,
    OperationApplied,
    OperationTiming,
    ProcessingStarted,
    RetryScheduled,
    StepTiming,
    TakenComputation,
    UploadReceived,
    WebhookAttempted,
)

SHA = "ab" * 32
JOB = "0f5e2c1a-8d7b-4c3e-9a21-5b6d7e8f9a0b"
TIME = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


def _ref(key: str) -> ImageRef:
    return ImageRef(
        bucket="imagemesh-input",
        key=key,
        sha256=SHA,
        bytes=1234,
        format="png",
        width=16,
        height=12,
        content_type="image/png",
        info={"bands": 3, "exif": {"camera": "x"}},
    )


@functools.cache
def events() -> dict[str, Event]:
    """One valid event of each type, by type."""
    pipeline = [{"op": "grayscale"}]
    made: list[Event] = [
        UploadReceived(
            job_id=JOB,
            client=ClientInfo(address="192.0.2.1", user_agent="curl/8"),
            filename="cat.png",
            sha256=SHA,
            bytes=1234,
            format="png",
            width=16,
            height=12,
            input=_ref("in.png"),
        ),
        # No longer published (upload.received and image.processed say it), still parsed.
        ImageStored(job_id=JOB, role="output", image=_ref("out.png"), derived_from=SHA),
        ImageUploaded(
            job_id=JOB, input=_ref("in.png"), pipeline=pipeline, filename="a", created_at=TIME
        ),
        ProcessingStarted(job_id=JOB, input=_ref("in.png"), pipeline=pipeline, attempt=2),
        OperationApplied(
            job_id=JOB,
            index=0,
            op="grayscale",
            params={},
            duration_ms=1.5,
            input_sha256=SHA,
            info={"width": 16},
        ),
        ImageProcessed(
            job_id=JOB,
            input=_ref("in.png"),
            output=_ref("out.png"),
            pipeline=pipeline,
            steps=[StepTiming(op="grayscale", params={}, duration_ms=1.0)],
            duration_ms=12.5,
            attempt=1,
            engine="imagemesh-imageproc/0.1.0 libvips/8.18.7",
        ),
        ImageReused(
            job_id=JOB,
            input=_ref("in.png"),
            output=_ref("out.png"),
            pipeline=pipeline,
            reused_from="1e2d3c4b-5a69-4788-9a0b-1c2d3e4f5a6b",
            computation="2f3e4d5c-6b7a-4899-8a1b-2c3d4e5f6a7b",
            engine="imagemesh-imageproc/0.1.0 libvips/8.18.7",
            reuse_key=SHA,
            taken=TakenComputation(
                duration_ms=41.5,
                attempt=1,
                operations=[OperationTiming(op="thumbnail", duration_ms=12.25)],
            ),
        ),
        JobFailed(job_id=JOB, error=ErrorInfo(code="undecodable", message="no"), attempt=1),
        RetryScheduled(job_id=JOB, queue="q", attempt=1, delay_seconds=1.0, error="boom"),
        MessageParked(job_id=JOB, queue="q", parking_queue="q.parking", attempts=3, error="x"),
        CancelRequested(job_id=JOB, principal="alice"),
        JobCancelled(
            job_id=JOB,
            principal="alice",
            input=_ref("in.png"),
            pipeline=pipeline,
            attempt=1,
            while_processing=True,
        ),
        JobRetried(job_id=JOB, retry="3a4b5c6d-7e8f-4a0b-9c1d-2e3f4a5b6c7d", principal="alice"),
        JobErased(
            job_id=JOB,
            principal="alice",
            objects=[
                ErasedObject(
                    role="output",
                    bucket="imagemesh-output",
                    key="out.png",
                    sha256=SHA,
                    deleted=True,
                ),
                ErasedObject(
                    role="input",
                    bucket="imagemesh-input",
                    key="in.png",
                    sha256=SHA,
                    deleted=False,
                    kept_because="another job uses it",
                ),
            ],
        ),
        WebhookAttempted(
            job_id=JOB,
            principal="alice",
            delivery="5c4b3a29-1807-4f6e-9d5c-4b3a29180706",
            attempt=1,
            url="https://hooks.example.org/imagemesh",
            job_status="succeeded",
            status_code=200,
            duration_ms=8.5,
            outcome="delivered",
        ),
    ]
    assert {type(event) for event in made} == set(ALL_EVENTS), "a new event needs a sample"
    return {event.type: event for event in made}


def envelope(event_type: str) -> Envelope:
    return Envelope(
        id="7d1f0e4c-6b5a-4f3e-8d2c-1b0a9f8e7d6c",
        type=event_type,
        source="/imagemesh/upload",
        time=TIME,
        subject=JOB,
        correlation_id=JOB,
        causation_id="5c4b3a29-1807-4f6e-9d5c-4b3a29180706",
        agent_version="0.1.0",
        agent_host="host-1",
    )


def event_json(event_type: str) -> dict[str, Any]:
    dumped: dict[str, Any] = events()[event_type].model_dump(mode="json")
    return dumped


def record_item(event_type: str) -> dict[str, Any]:
    """One item of a provenancedb `record` request's `events`."""
    return {"envelope": envelope(event_type).as_dict(), "event": event_json(event_type)}


def cursor(key: Any) -> str:
    """A `before` cursor as provenancedb makes them (for any JSON `key`)."""
    return cursor_of_text(json.dumps(key))


def cursor_of_text(text: str) -> str:
    """A cursor holding `text`, JSON or not."""
    raw = text.encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
