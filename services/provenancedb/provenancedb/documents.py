"""One CouchDB document per event: flat fields to query, and the W3C PROV view of the step."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from messaging import Envelope
from messaging.events import Event, ImageProcessed, ImageRef, ImageUploaded, JobFailed

PROV_PREFIXES = {
    "imagemesh": "urn:imagemesh:",
    "sha256": "urn:sha256:",
}


def to_document(envelope: Envelope, event: Event) -> dict[str, Any]:
    """The document for an event. `_id` is the event id, so a redelivery conflicts."""
    used, generated = _entities(event)
    doc: dict[str, Any] = {
        "_id": envelope.id,
        "type": envelope.type,
        "job_id": event.job_id,
        "time": rfc3339(envelope),
        "service": service_of(envelope),
        "source": envelope.source,
        "causation_id": envelope.causation_id,
        "agent": {
            "service": service_of(envelope),
            "version": envelope.agent_version,
            "host": envelope.agent_host,
        },
        "data": event.model_dump(mode="json"),
        "prov": prov_view(envelope, used, generated),
    }
    if used:
        doc["input_sha256"] = used[0].sha256
    if generated and isinstance(event, ImageProcessed):
        doc["output_sha256"] = generated[0].sha256
    elif isinstance(event, ImageUploaded):
        doc["input_sha256"] = event.input.sha256
    return doc


def rfc3339(envelope: Envelope) -> str:
    return envelope.time.astimezone(UTC).isoformat().replace("+00:00", "Z")


def service_of(envelope: Envelope) -> str:
    return envelope.source.rstrip("/").rsplit("/", 1)[-1]


def _entities(event: Event) -> tuple[list[ImageRef], list[ImageRef]]:
    """(used, generated) images of the step the event records."""
    if isinstance(event, ImageUploaded):
        return [], [event.input]
    if isinstance(event, ImageProcessed):
        return [event.input], [event.output]
    if isinstance(event, JobFailed):
        return ([event.input] if event.input else []), []
    image = getattr(event, "input", None)
    return ([image] if isinstance(image, ImageRef) else []), []


def entity_id(image: ImageRef) -> str:
    # Identified by content, so the same bytes are one entity across jobs (lineage).
    return f"sha256:{image.sha256}"


def prov_view(
    envelope: Envelope, used: list[ImageRef], generated: list[ImageRef]
) -> dict[str, Any]:
    activity = f"imagemesh:event/{envelope.id}"
    agent = f"imagemesh:agent/{service_of(envelope)}/{envelope.agent_version or 'unknown'}"
    time = rfc3339(envelope)
    view: dict[str, Any] = {
        "prefix": PROV_PREFIXES,
        "activity": {
            activity: {"prov:type": envelope.type, "prov:startTime": time, "prov:endTime": time}
        },
        "agent": {
            agent: {
                "prov:type": "prov:SoftwareAgent",
                "imagemesh:service": service_of(envelope),
                "imagemesh:version": envelope.agent_version,
                "imagemesh:host": envelope.agent_host,
            }
        },
        "entity": {entity_id(i): _entity(i) for i in [*used, *generated]},
        "wasAssociatedWith": {
            f"_:assoc/{envelope.id}": {"prov:activity": activity, "prov:agent": agent}
        },
    }
    if used:
        view["used"] = {
            f"_:used/{envelope.id}/{n}": {"prov:activity": activity, "prov:entity": entity_id(i)}
            for n, i in enumerate(used)
        }
    if generated:
        view["wasGeneratedBy"] = {
            f"_:gen/{envelope.id}/{n}": {"prov:entity": entity_id(i), "prov:activity": activity}
            for n, i in enumerate(generated)
        }
    if used and generated:
        view["wasDerivedFrom"] = {
            f"_:der/{envelope.id}/{n}/{m}": {
                "prov:generatedEntity": entity_id(g),
                "prov:usedEntity": entity_id(u),
                "prov:activity": activity,
            }
            for n, g in enumerate(generated)
            for m, u in enumerate(used)
        }
    return view


def _entity(image: ImageRef) -> dict[str, Any]:
    described = {"imagemesh:info": image.info} if image.info else {}
    return described | {
        "prov:type": "imagemesh:Image",
        "prov:location": image.uri,
        "imagemesh:sha256": image.sha256,
        "imagemesh:bytes": image.bytes,
        "imagemesh:format": image.format,
        "imagemesh:width": image.width,
        "imagemesh:height": image.height,
    }
