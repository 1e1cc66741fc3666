"""The attributes of an event's PROV activity: what the step did, beyond its type, times
and job (`provview.py` builds the rest of the view).

Structured values (pipelines, parameters, image info) travel as JSON literals
(`provterms.json_literal`); attributes an event lacks are left out, not null.
"""

from __future__ import annotations

from typing import Any

from messaging import events

from .provterms import activity_id, json_literal


def activity_attributes(event: events.Event) -> dict[str, Any]:
    """The `imagemesh:` (and `prov:location`) attributes of the event's activity."""
    match event:
        case events.UploadReceived():
            return _received(event)
        case events.ImageStored():
            return {"imagemesh:role": event.role, "prov:location": event.image.uri}
        case events.ImageUploaded() | events.ProcessingStarted():
            attributes: dict[str, Any] = {"imagemesh:pipeline": json_literal(event.pipeline)}
            if isinstance(event, events.ProcessingStarted):
                attributes["imagemesh:attempt"] = event.attempt
            elif event.retry_of:  # the job this one retries (its job.retried names this one)
                attributes["imagemesh:retry_of"] = event.retry_of
            return attributes
        case events.OperationApplied():
            return _operation(event)
        case events.ImageProcessed():
            return _processed(event)
        case events.ImageReused():
            return _reused(event)
        case events.JobFailed():
            return _failed(event)
        case events.RetryScheduled():
            return {
                "imagemesh:queue": event.queue,
                "imagemesh:attempt": event.attempt,
                "imagemesh:delay_seconds": event.delay_seconds,
                "imagemesh:error_message": event.error,
            }
        case events.CancelRequested():
            return {"imagemesh:principal": event.principal}
        case events.JobCancelled():
            return {
                "imagemesh:principal": event.principal,
                "imagemesh:attempt": event.attempt,
                "imagemesh:while_processing": event.while_processing,
            }
        case events.JobRetried():
            return {"imagemesh:principal": event.principal, "imagemesh:retry": event.retry}
        case events.JobErased():
            return _erased(event)
        case events.WebhookAttempted():
            return _webhook(event)
        case events.MessageParked():
            return {
                "imagemesh:queue": event.queue,
                "imagemesh:parking_queue": event.parking_queue,
                "imagemesh:attempt": event.attempts,
                "imagemesh:error_message": event.error,
            }
    return {}


def _received(event: events.UploadReceived) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if event.filename:
        attributes["imagemesh:filename"] = event.filename
    if event.input:  # where the upload stored it (the entity says so too)
        attributes["prov:location"] = event.input.uri
    return attributes


def _operation(event: events.OperationApplied) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "imagemesh:operation": event.op,
        "imagemesh:index": event.index,
        "imagemesh:params": json_literal(event.params),
        "imagemesh:duration_ms": event.duration_ms,
        "imagemesh:attempt": event.attempt,
    }
    if event.info:
        attributes["imagemesh:info"] = json_literal(event.info)
    return attributes


def _processed(event: events.ImageProcessed) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "imagemesh:pipeline": json_literal(event.pipeline),
        "imagemesh:duration_ms": event.duration_ms,
    }
    if event.attempt is not None:
        attributes["imagemesh:attempt"] = event.attempt
    if event.engine:
        attributes["imagemesh:engine"] = event.engine
    return attributes


def _reused(event: events.ImageReused) -> dict[str, Any]:
    return {
        "imagemesh:pipeline": json_literal(event.pipeline),
        "imagemesh:reused_from": event.reused_from,
        "imagemesh:computation": activity_id(event.computation),
        "imagemesh:engine": event.engine,
        "imagemesh:reuse_key": event.reuse_key,
    }


def _erased(event: events.JobErased) -> dict[str, Any]:
    """Who erased the job, and each object the erasure deleted or kept (and why)."""
    return {
        "imagemesh:principal": event.principal,
        "imagemesh:deleted": json_literal(
            [f"s3://{o.bucket}/{o.key}" for o in event.objects if o.deleted]
        ),
        "imagemesh:kept": json_literal(
            [
                {"location": f"s3://{o.bucket}/{o.key}", "kept_because": o.kept_because}
                for o in event.objects
                if not o.deleted
            ]
        ),
    }


def _webhook(event: events.WebhookAttempted) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "imagemesh:principal": event.principal,
        "imagemesh:delivery": event.delivery,
        "imagemesh:attempt": event.attempt,
        "imagemesh:url": event.url,
        "imagemesh:job_status": event.job_status,
        "imagemesh:outcome": event.outcome,
        "imagemesh:duration_ms": event.duration_ms,
    }
    if event.status_code is not None:
        attributes["imagemesh:status_code"] = event.status_code
    if event.error:
        attributes["imagemesh:error_message"] = event.error
    return attributes


def _failed(event: events.JobFailed) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "imagemesh:error_code": event.error.code,
        "imagemesh:error_message": event.error.message,
    }
    if event.attempt:
        attributes["imagemesh:attempt"] = event.attempt
    return attributes
