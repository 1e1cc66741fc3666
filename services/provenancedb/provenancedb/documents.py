"""One CouchDB document per event: flat fields to query, and the W3C PROV view of the step.

The PROV view is PROV-JSON (https://www.w3.org/submissions/prov-json/) and valid on its own:
a job's provenance document is the union of its events' views (`merge_prov`).

- each event is an **activity** `imagemesh:event/<event id>`, with its times, its type,
  the job it belongs to and what it did (operation, parameters, error) as attributes;
- images are **entities** identified by content, `sha256:<hex>`, with their S3 location:
  the same bytes are the same entity in every job, which is what links lineage across jobs;
- each service version is an **agent** `imagemesh:agent/<service>/<version>`, and the
  client of an upload an agent `imagemesh:client/<address>`;
- the principal a job belongs to (who asked for it: an API token's name, a signed-in or
  proxy-authenticated user) is an agent `imagemesh:principal/<name>`: in the upload's
  events the upload service `actedOnBehalfOf` it, for that activity;
- `used`, `wasGeneratedBy`, `wasDerivedFrom` (output from input), `wasAssociatedWith`
  (activity to agent), `actedOnBehalfOf` (service to principal) and `wasInformedBy` (an
  event to the event that caused it).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from messaging import Envelope
from messaging.events import (
    Event,
    ImageProcessed,
    ImageRef,
    ImageStored,
    ImageUploaded,
    JobFailed,
    MessageParked,
    OperationApplied,
    ProcessingStarted,
    RetryScheduled,
    UploadReceived,
)
from messaging.jobs import rfc3339

PROV_PREFIXES = {
    "imagemesh": "urn:imagemesh:",
    "sha256": "urn:sha256:",
}
PROV_SECTIONS = (
    "entity",
    "activity",
    "agent",
    "used",
    "wasGeneratedBy",
    "wasDerivedFrom",
    "wasAssociatedWith",
    "actedOnBehalfOf",
    "wasInformedBy",
)


def to_document(envelope: Envelope, event: Event) -> dict[str, Any]:
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


def _flat_fields(event: Event) -> dict[str, Any]:
    """What views and Mango queries select on, beyond type, job, time and service."""
    match event:
        case UploadReceived():
            return {"input_sha256": event.sha256, "client_address": event.client.address}
        case ImageStored(role="input"):
            return {"input_sha256": event.image.sha256, "location": event.image.uri}
        case ImageStored():
            return {
                "output_sha256": event.image.sha256,
                "input_sha256": event.derived_from,
                "location": event.image.uri,
            }
        case ImageUploaded():
            return {"input_sha256": event.input.sha256}
        case ProcessingStarted():
            return {"input_sha256": event.input.sha256, "attempt": event.attempt}
        case OperationApplied():
            return {
                "input_sha256": event.input_sha256,
                "operation": event.op,
                "attempt": event.attempt,
            }
        case ImageProcessed():
            return {"input_sha256": event.input.sha256, "output_sha256": event.output.sha256}
        case JobFailed():
            return {
                "input_sha256": event.input.sha256 if event.input else None,
                "error_code": event.error.code,
                "attempt": event.attempt,
            }
        case RetryScheduled():
            return {"attempt": event.attempt, "queue": event.queue}
        case MessageParked():
            return {"attempt": event.attempts, "queue": event.queue}
    return {}


def service_of(envelope: Envelope) -> str:
    return envelope.source.rstrip("/").rsplit("/", 1)[-1]


def entity_id(sha256: str) -> str:
    # Identified by content, so the same bytes are one entity across jobs (lineage).
    return f"sha256:{sha256}"


def activity_id(event_id: str) -> str:
    return f"imagemesh:event/{event_id}"


# --------------------------------------------------------------------------- PROV view


def prov_view(envelope: Envelope, event: Event) -> dict[str, Any]:
    """The PROV-JSON view of one event: its activity, agents, entities and relations."""
    activity = activity_id(envelope.id)
    agent = f"imagemesh:agent/{service_of(envelope)}/{envelope.agent_version or 'unknown'}"
    ended = envelope.time
    started = ended - timedelta(milliseconds=_duration_ms(event))
    view: dict[str, Any] = {
        "prefix": PROV_PREFIXES,
        "activity": {
            activity: {
                "prov:type": envelope.type,
                "prov:startTime": rfc3339(started),
                "prov:endTime": rfc3339(ended),
                "imagemesh:job": event.job_id,
                **_activity_attributes(event),
            }
        },
        "agent": {
            agent: {
                "prov:type": qualified_name("prov:SoftwareAgent"),
                "imagemesh:service": service_of(envelope),
                "imagemesh:version": envelope.agent_version or "unknown",
                "imagemesh:host": envelope.agent_host or "unknown",
            }
        },
        "wasAssociatedWith": {
            f"_:assoc/{envelope.id}": {"prov:activity": activity, "prov:agent": agent}
        },
    }
    if envelope.causation_id:
        view["wasInformedBy"] = {
            f"_:inf/{envelope.id}": {
                "prov:informed": activity,
                "prov:informant": activity_id(envelope.causation_id),
            }
        }
    if isinstance(event, UploadReceived):
        _add_client(view, envelope.id, activity, event)
    if isinstance(event, UploadReceived | ImageUploaded):
        _add_principal(view, envelope.id, activity, agent, event.principal)
    used, generated = _entities(event)
    entities = [*used, *generated]
    if entities:
        view["entity"] = {}
        for image in entities:
            identifier, attributes = _entity(image)
            view["entity"][identifier] = view["entity"].get(identifier, {}) | attributes
    if used:
        view["used"] = {
            f"_:used/{envelope.id}/{n}": {
                "prov:activity": activity,
                "prov:entity": _id_of(image),
                "prov:time": rfc3339(started),
            }
            for n, image in enumerate(used)
        }
    if generated:
        view["wasGeneratedBy"] = {
            f"_:gen/{envelope.id}/{n}": {
                "prov:entity": _id_of(image),
                "prov:activity": activity,
                "prov:time": rfc3339(ended),
            }
            for n, image in enumerate(generated)
        }
    if used and generated:
        view["wasDerivedFrom"] = {
            f"_:der/{envelope.id}/{n}/{m}": {
                "prov:generatedEntity": _id_of(product),
                "prov:usedEntity": _id_of(source),
                "prov:activity": activity,
            }
            for n, product in enumerate(generated)
            for m, source in enumerate(used)
        }
    return view


_Image = ImageRef | UploadReceived


def _entities(event: Event) -> tuple[list[_Image], list[_Image]]:
    """(used, generated) images of the step the event records."""
    match event:
        case UploadReceived():
            return [], [event]
        case ImageStored():
            return [event.image], []
        case ImageProcessed():
            return [event.input], [event.output]
        case ImageUploaded() | ProcessingStarted():
            return [event.input], []
        case JobFailed(input=ImageRef() as image):
            return [image], []
    return [], []


def _id_of(image: _Image) -> str:
    return entity_id(image.sha256)


def _entity(image: _Image) -> tuple[str, dict[str, Any]]:
    attributes: dict[str, Any] = {
        "prov:type": qualified_name("imagemesh:Image"),
        "imagemesh:sha256": image.sha256,
        "imagemesh:bytes": image.bytes,
        "imagemesh:format": image.format,
        "imagemesh:width": image.width,
        "imagemesh:height": image.height,
    }
    if isinstance(image, ImageRef):
        attributes["prov:location"] = image.uri
        attributes["imagemesh:content_type"] = image.content_type
        if image.info:
            attributes["imagemesh:info"] = json_literal(image.info)
    return _id_of(image), attributes


def _add_client(view: dict[str, Any], event_id: str, activity: str, event: UploadReceived) -> None:
    client = f"imagemesh:client/{event.client.address or 'unknown'}"
    view["agent"][client] = {
        "prov:type": qualified_name("imagemesh:Client"),
        "imagemesh:address": event.client.address or "unknown",
        "imagemesh:user_agent": event.client.user_agent or "unknown",
    }
    view["wasAssociatedWith"][f"_:assoc/{event_id}/client"] = {
        "prov:activity": activity,
        "prov:agent": client,
        "prov:role": qualified_name("imagemesh:uploader"),
    }


def principal_agent(name: str) -> str:
    return f"imagemesh:principal/{name}"


def _add_principal(
    view: dict[str, Any], event_id: str, activity: str, service: str, principal: str
) -> None:
    """The upload service accepted the job on behalf of `principal`: PROV delegation, for
    this activity."""
    responsible = principal_agent(principal)
    view["agent"][responsible] = {
        "prov:type": qualified_name("imagemesh:Principal"),
        "prov:label": principal,
    }
    view["actedOnBehalfOf"] = {
        f"_:del/{event_id}": {
            "prov:delegate": service,
            "prov:responsible": responsible,
            "prov:activity": activity,
        }
    }


def _activity_attributes(event: Event) -> dict[str, Any]:
    match event:
        case UploadReceived(filename=str() as filename):
            return {"imagemesh:filename": filename}
        case ImageStored():
            return {"imagemesh:role": event.role, "prov:location": event.image.uri}
        case ImageUploaded() | ProcessingStarted():
            attributes: dict[str, Any] = {"imagemesh:pipeline": json_literal(event.pipeline)}
            if isinstance(event, ProcessingStarted):
                attributes["imagemesh:attempt"] = event.attempt
            return attributes
        case OperationApplied():
            attributes = {
                "imagemesh:operation": event.op,
                "imagemesh:index": event.index,
                "imagemesh:params": json_literal(event.params),
                "imagemesh:duration_ms": event.duration_ms,
                "imagemesh:attempt": event.attempt,
            }
            if event.info:
                attributes["imagemesh:info"] = json_literal(event.info)
            return attributes
        case ImageProcessed():
            return {
                "imagemesh:pipeline": json_literal(event.pipeline),
                "imagemesh:duration_ms": event.duration_ms,
            }
        case JobFailed():
            attributes = {
                "imagemesh:error_code": event.error.code,
                "imagemesh:error_message": event.error.message,
            }
            if event.attempt:
                attributes["imagemesh:attempt"] = event.attempt
            return attributes
        case RetryScheduled():
            return {
                "imagemesh:queue": event.queue,
                "imagemesh:attempt": event.attempt,
                "imagemesh:delay_seconds": event.delay_seconds,
                "imagemesh:error_message": event.error,
            }
        case MessageParked():
            return {
                "imagemesh:queue": event.queue,
                "imagemesh:parking_queue": event.parking_queue,
                "imagemesh:attempt": event.attempts,
                "imagemesh:error_message": event.error,
            }
    return {}


def _duration_ms(event: Event) -> float:
    if isinstance(event, OperationApplied | ImageProcessed):
        return event.duration_ms
    return 0.0


def qualified_name(name: str) -> dict[str, str]:
    """A PROV type or role: a qualified name, not a string that happens to contain a colon."""
    return {"$": name, "type": "prov:QUALIFIED_NAME"}


def json_literal(value: Any) -> dict[str, str]:
    """A structured value as a PROV-JSON typed literal: PROV attribute values are literals,
    so a dict or list travels as its JSON text."""
    return {"$": json.dumps(value, sort_keys=True, separators=(",", ":")), "type": "imagemesh:json"}


def merge_prov(views: list[dict[str, Any]]) -> dict[str, Any]:
    """One PROV-JSON document from many events' views: records keep their ids; an entity or
    agent seen in several views gets the union of its attributes."""
    merged: dict[str, Any] = {"prefix": dict(PROV_PREFIXES)}
    for view in views:
        merged["prefix"].update(view.get("prefix", {}))
        for section in PROV_SECTIONS:
            records = view.get(section)
            if not records:
                continue
            target = merged.setdefault(section, {})
            for identifier, attributes in records.items():
                target[identifier] = target.get(identifier, {}) | attributes
    return merged
