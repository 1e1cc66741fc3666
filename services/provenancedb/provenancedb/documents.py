"""One CouchDB document per event: flat fields to query, and the W3C PROV view of the step.

The document's `_id` is the event id, so a redelivered event conflicts instead of being
stored twice. Beside the event as published (`data`), it has the fields views and Mango
queries select on (`_flat_fields`) and the event's PROV-JSON view (`provview.py`).
"""

from __future__ import annotations

from typing import Any

from messaging import Envelope, events
from messaging.jobs import rfc3339

from .provview import prov_view, service_of


def to_document(envelope: Envelope, event: events.Event) -> dict[str, Any]:
    """The document for an event. `_id` is the event id, so a redelivery conflicts."""
    doc: dict[str, Any] = {
        "_id": envelope.id,
        "type": envelope.type,
        "job_id": event.job_id,
        "time": rfc3339(envelope.time),
        "service": service_of(envelope),
        "source": envelope.source,
        "causation_id": envelope.causation_id,
        "agent": {
            "service": service_of(envelope),
            "version": envelope.agent_version,
            "host": envelope.agent_host,
        },
        **_flat_fields(event),
        "data": event.model_dump(mode="json"),
        "prov": prov_view(envelope, event),
    }
    return {name: value for name, value in doc.items() if value is not None}


def _flat_fields(event: events.Event) -> dict[str, Any]:
    """What views and Mango queries select on, beyond type, job, time and service."""
    match event:
        case events.UploadReceived():
            return {
                "input_sha256": event.sha256,
                "client_address": event.client.address,
                "location": event.input.uri if event.input else None,
            }
        case events.ImageUploaded():
            return {"input_sha256": event.input.sha256, "retry_of": event.retry_of}
        case events.ProcessingStarted():
            return {"input_sha256": event.input.sha256, "attempt": event.attempt}
        case events.ImageProcessed():
            return {
                "input_sha256": event.input.sha256,
                "output_sha256": event.output.sha256,
                "location": event.output.uri,
                "attempt": event.attempt,
            }
        case events.ImageReused():
            return {
                "input_sha256": event.input.sha256,
                "output_sha256": event.output.sha256,
                "location": event.output.uri,
                "reused_from": event.reused_from,
            }
        case events.JobFailed():
            return {
                "input_sha256": event.input.sha256 if event.input else None,
                "error_code": event.error.code,
                "attempt": event.attempt,
            }
        case events.RetryScheduled():
            return {"attempt": event.attempt, "queue": event.queue}
        case events.MessageParked():
            return {"attempt": event.attempts, "queue": event.queue}
        case events.CancelRequested():
            return {"principal": event.principal}
        case events.JobRetried():
            return {"principal": event.principal, "retry": event.retry}
        case events.JobCancelled():
            return {
                "input_sha256": event.input.sha256,
                "principal": event.principal,
                "attempt": event.attempt,
            }
        case events.JobErased():
            return {"principal": event.principal}
        case events.WebhookAttempted():
            return {"principal": event.principal, "attempt": event.attempt}
    return _legacy_fields(event)


def _legacy_fields(event: events.Event) -> dict[str, Any]:
    """image.stored and operation.applied: only in documents recorded before
    upload.received and image.processed carried what they said."""
    match event:
        case events.ImageStored(role="input"):
            return {"input_sha256": event.image.sha256, "location": event.image.uri}
        case events.ImageStored():
            return {
                "output_sha256": event.image.sha256,
                "input_sha256": event.derived_from,
                "location": event.image.uri,
            }
        case events.OperationApplied():
            return {
                "input_sha256": event.input_sha256,
                "operation": event.op,
                "attempt": event.attempt,
            }
    return {}
