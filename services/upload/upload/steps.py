"""What a progress view shows of each step of a job: one relayed live (`step`, and the
computation a reuse took, `taken_step`), or one recorded, read back from the job's W3C
PROV-JSON document (`recorded_steps`) in the same shape.

A progress stream opens after the 202, and a fast job may be over by then: the intake's
two events (`upload.received`, `image.uploaded`) are always published before the 202, and
often the whole job is. Relaying only what passes after the stream opened showed 4 or 5
of a job's steps, depending on timing, where the job page (which reads this document)
shows them all. So a stream first sends the steps already recorded, then the live ones:
every step of the job once, the same list as the job page's, each named by its event id.

"Every step" is every activity of the document: each event of the job, and each
operation that `image.processed` lists (sent as that step's `operations`, as live)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from messaging import Envelope
from messaging.events import (
    Event,
    ImageProcessed,
    ImageReused,
    ImageStored,
    JobCancelled,
    JobFailed,
    MessageParked,
    OperationApplied,
    OperationTiming,
    ProcessingStarted,
    RetryScheduled,
    StepTiming,
    UploadReceived,
)

EVENT_PREFIX = "imagemesh:event/"
OPERATION_PART = "/operation/"


def _plain(value: Any) -> Any:
    """A PROV-JSON value without its type annotation ({"$": ..., "type": ...})."""
    return value.get("$") if isinstance(value, dict) else value


def _services(document: dict[str, Any]) -> dict[str, str]:
    """The publishing service of each activity, by activity id."""
    agents = document.get("agent") or {}
    services: dict[str, str] = {}
    for relation in (document.get("wasAssociatedWith") or {}).values():
        # The software agent that published it (an upload is associated with its client too).
        agent = agents.get(relation.get("prov:agent", "")) or {}
        service = _plain(agent.get("imagemesh:service"))
        if service:
            services[relation.get("prov:activity", "")] = str(service)
    return services


def _reuses(document: dict[str, Any]) -> dict[str, str]:
    """The reuse each earlier computation informed, by the computation's activity id. A
    reused job's document names the earlier job's computation (its `image.processed`,
    without time or agent: they are that job's); as this job's step it is the output taken
    when the runner reused it, at the reuse's time, by the reuse's service."""
    activities = document.get("activity") or {}
    return {
        informant: informed
        for relation in (document.get("wasInformedBy") or {}).values()
        if (informed := relation.get("prov:informed", ""))
        and (activities.get(informed) or {}).get("prov:type") == "image.reused"
        # Not the reuse's cause (its image.uploaded, which has its own time and agent).
        and (informant := relation.get("prov:informant", "")) in activities
        and not _timed(activities[informant])
    }


def _timed(activity: dict[str, Any]) -> bool:
    return bool(activity.get("prov:startTime") or activity.get("prov:endTime"))


def _operations(activities: dict[str, Any], activity_id: str) -> list[dict[str, Any]]:
    """The operations a computation's activity lists, in order."""
    prefix = f"{activity_id}{OPERATION_PART}"
    listed = [a for key, a in activities.items() if key.startswith(prefix)]
    listed.sort(key=lambda a: _plain(a.get("imagemesh:index")) or 0)
    return [
        {
            "operation": _plain(a.get("imagemesh:operation")),
            "index": _plain(a.get("imagemesh:index")),
            "duration_ms": _plain(a.get("imagemesh:duration_ms")),
        }
        for a in listed
    ]


def _details(activity: dict[str, Any]) -> dict[str, Any]:
    """What a step adds to its type, time and service (as `step` shows it live)."""
    kind = activity.get("prov:type")
    shown: dict[str, Any] = {}
    for name in ("attempt", "duration_ms", "role", "reused_from"):
        value = _plain(activity.get(f"imagemesh:{name}"))
        if value is not None:
            shown[name] = value
    if kind == "upload.received":
        shown["stored"] = "prov:location" in activity
    message = _plain(activity.get("imagemesh:error_message"))
    code = _plain(activity.get("imagemesh:error_code"))
    if kind == "job.failed":
        shown["error"] = {"code": code or "unknown", "message": message or ""}
    elif message is not None:
        shown["error"] = message
    return shown


def recorded_steps(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Each event of the job in `document`, oldest first, as a progress step with its id."""
    activities: dict[str, Any] = document.get("activity") or {}
    services, reuses = _services(document), _reuses(document)
    steps = []
    for activity_id, activity in activities.items():
        if not activity_id.startswith(EVENT_PREFIX) or OPERATION_PART in activity_id:
            continue
        reuse = reuses.get(activity_id)  # an earlier job's computation, taken by a reuse
        timed = activities[reuse] if reuse else activity
        shown: dict[str, Any] = {
            "id": activity_id.removeprefix(EVENT_PREFIX),
            "type": activity.get("prov:type"),
            "time": _plain(timed.get("prov:endTime")) or _plain(timed.get("prov:startTime")),
            "service": services.get(reuse or activity_id, ""),
            **_details(activity),
        }
        if reuse:
            shown["reused_from"] = _plain(activity.get("imagemesh:job"))
        if shown["type"] == "image.processed":
            shown["operations"] = _operations(activities, activity_id)
        steps.append(shown)
    steps.sort(key=lambda s: str(s["time"]))
    return steps


def step(envelope: Envelope, event: Event) -> dict[str, Any]:
    """What a progress view shows of one step."""
    shown: dict[str, Any] = {
        "id": envelope.id,
        "type": envelope.type,
        "time": envelope.time.isoformat().replace("+00:00", "Z"),
        "service": envelope.source.rstrip("/").rsplit("/", 1)[-1],
    }
    match event:
        case OperationApplied():  # recorded before image.processed carried the steps
            shown |= {
                "operation": event.op,
                "index": event.index,
                "attempt": event.attempt,
                "duration_ms": event.duration_ms,
            }
        case ProcessingStarted():
            shown["attempt"] = event.attempt
        case ImageStored():  # recorded before upload.received carried the input
            shown["role"] = event.role
        case ImageProcessed():
            # Every operation applied, done: the job's one record of them (a client marks
            # each as done from here, as it did from `operation.applied` before).
            shown |= {
                "duration_ms": event.duration_ms,
                "attempt": event.attempt,
                "operations": _operations_shown(event.steps),
            }
        case UploadReceived():
            shown["stored"] = event.input is not None
        case ImageReused():
            shown["reused_from"] = event.reused_from
        case JobFailed():
            shown["error"] = event.error.model_dump()
        case JobCancelled():
            shown["attempt"] = event.attempt
        case RetryScheduled():
            shown |= {"attempt": event.attempt, "error": event.error}
        case MessageParked():
            shown |= {"attempt": event.attempts, "error": event.error}
    return shown


def taken_step(envelope: Envelope, event: ImageReused) -> dict[str, Any] | None:
    """The computation a reuse took, as this job's step: the earlier job's
    `image.processed` at the reuse's time and by its service (as `recorded_steps` reads
    it from provenance), when the event says what it was."""
    taken = event.taken
    if taken is None:
        return None
    shown = step(envelope, event)  # its time, service and reused_from
    shown |= {
        "id": event.computation,
        "type": ImageProcessed.type,
        "duration_ms": taken.duration_ms,
        "operations": _operations_shown(taken.operations),
    }
    if taken.attempt is not None:
        shown["attempt"] = taken.attempt
    return shown


def _operations_shown(operations: Sequence[StepTiming | OperationTiming]) -> list[dict[str, Any]]:
    """Each operation of a computation, in order: its name, place and time."""
    return [
        {"operation": o.op, "index": n, "duration_ms": o.duration_ms}
        for n, o in enumerate(operations)
    ]
