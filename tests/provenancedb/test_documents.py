"""provenancedb's documents: flat fields to query, and a valid W3C PROV-JSON view per event.

The builders at the top (`envelope_for`, `job_trail`, ...) make events the way the services
do (ids of follow-ups derived from their cause, as `Broker.envelope_for` does); the store
and lineage tests reuse them."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import uuid
import warnings
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from prov.model import (
    DEFAULT_NAMESPACES,
    PROV_ATTR_ACTIVITY,
    PROV_ATTR_AGENT,
    PROV_ATTR_DELEGATE,
    PROV_ATTR_ENTITY,
    PROV_ATTR_GENERATED_ENTITY,
    PROV_ATTR_INFORMANT,
    PROV_ATTR_INFORMED,
    PROV_ATTR_RESPONSIBLE,
    PROV_ATTR_USED_ENTITY,
    Literal,
    ProvActivity,
    ProvAgent,
    ProvAssociation,
    ProvCommunication,
    ProvDelegation,
    ProvDerivation,
    ProvDocument,
    ProvEntity,
    ProvGeneration,
    ProvInvalidation,
    ProvRecord,
    ProvUsage,
    ProvWarning,
    QualifiedName,
)

from messaging import Envelope, follow_up_id
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
    ProcessingStarted,
    RetryScheduled,
    StepTiming,
    UploadReceived,
    WebhookAttempted,
)
from messaging.jobs import fold_status
from provenancedb.documents import to_document
from provenancedb.provterms import PROV_PREFIXES, json_literal
from provenancedb.provview import merge_prov

# --------------------------------------------------------------------------- builders

VERSIONS = {"upload": "0.3.0", "imageproc_runner": "0.4.0", "imageproc": "0.5.0"}
CLIENT = ClientInfo(address="203.0.113.7", user_agent="curl/8.5.0")
PIPELINE: list[dict[str, Any]] = [
    {"op": "thumbnail", "width": 320},
    {"op": "convert", "format": "png", "compression": 6},
]
INPUT_INFO = {"interpretation": "srgb", "bands": 3, "orientation": 1, "pages": 1}


def sha(name: str) -> str:
    """A realistic SHA-256, named for readability."""
    return hashlib.sha256(name.encode()).hexdigest()


def input_ref(digest: str, *, fmt: str = "jpeg", width: int = 640, height: int = 480) -> ImageRef:
    """An upload, stored content-addressed in the input bucket."""
    return ImageRef(
        bucket="imagemesh-input",
        key=f"sha256/{digest}.{fmt}",
        sha256=digest,
        bytes=48_213,
        format=fmt,
        width=width,
        height=height,
        content_type=f"image/{fmt}",
    )


def output_ref(job_id: str, digest: str) -> ImageRef:
    """A job's output, stored under its job id in the output bucket."""
    return ImageRef(
        bucket="imagemesh-output",
        key=f"{job_id}/output.png",
        sha256=digest,
        bytes=20_480,
        format="png",
        width=320,
        height=240,
        content_type="image/png",
    )


def reuploaded(output: ImageRef) -> ImageRef:
    """An output downloaded and uploaded again: the same bytes, now in the input bucket."""
    return output.model_copy(
        update={"bucket": "imagemesh-input", "key": f"sha256/{output.sha256}.{output.format}"}
    )


def envelope_for(
    event: Event, service: str, at: datetime, *, cause: Envelope | None = None, key: str = ""
) -> Envelope:
    """As `Broker.envelope_for` makes it, at a given time."""
    first_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event.job_id}/{event.type}/{key}"))
    return Envelope(
        id=follow_up_id(cause.id, event.type, key) if cause else first_id,
        type=event.type,
        source=f"/imagemesh/{service}",
        time=at,
        subject=event.job_id,
        correlation_id=event.job_id,
        causation_id=cause.id if cause else None,
        agent_version=VERSIONS[service],
        agent_host=f"{service}-7d9f-0",
    )


Step = tuple[Envelope, Event]


PRINCIPAL = "alice@example.org"


ENGINE = "imagemesh-imageproc/0.5.0 imagemesh-pipeline/0.1.0 pyvips/3.2.0 libvips/8.18.7"


def intake(
    job_id: str, source: ImageRef, at: datetime, *, principal: str = PRINCIPAL, legacy: bool = False
) -> list[Step]:
    """What the upload service records before it answers 202, for `principal`: the
    received and stored input, then the job. `legacy`: as recorded before upload.received
    carried the stored input (an `image.stored` input between the two)."""
    received = UploadReceived(
        job_id=job_id,
        client=CLIENT,
        principal=principal,
        filename="cat.jpg",
        sha256=source.sha256,
        bytes=source.bytes,
        format=source.format,
        width=source.width,
        height=source.height,
        input=None if legacy else source,
    )
    e_received = envelope_for(received, "upload", at)
    steps: list[Step] = [(e_received, received)]
    if legacy:
        stored = ImageStored(job_id=job_id, role="input", image=source)
        e_stored = envelope_for(stored, "upload", at + timedelta(milliseconds=12), cause=e_received)
        steps.append((e_stored, stored))
    uploaded = ImageUploaded(
        job_id=job_id,
        input=source,
        pipeline=PIPELINE,
        filename="cat.jpg",
        created_at=at,
        principal=principal,
    )
    cause = steps[-1][0]
    e_uploaded = envelope_for(uploaded, "upload", at + timedelta(milliseconds=15), cause=cause)
    return [*steps, (e_uploaded, uploaded)]


def job_trail(
    job_id: str,
    source: ImageRef,
    output: ImageRef,
    at: datetime,
    *,
    durations: tuple[float, ...] = (8.5, 3.25),
    principal: str = PRINCIPAL,
    legacy: bool = False,
) -> list[Step]:
    """A succeeded job's whole trail, in the order the services record it: received (with
    the stored input), uploaded, started, processed (with each operation applied).
    `legacy`: as recorded before, with the stored input, one operation.applied per
    pipeline step and the stored output as events of their own."""
    steps = intake(job_id, source, at, principal=principal, legacy=legacy)
    e_uploaded = steps[-1][0]
    started = ProcessingStarted(job_id=job_id, input=source, pipeline=PIPELINE, attempt=1)
    e_started = envelope_for(
        started, "imageproc_runner", at + timedelta(seconds=1), cause=e_uploaded, key="attempt-1"
    )
    steps.append((e_started, started))
    now = e_started.time
    timings = []
    for index, (spec, duration) in enumerate(zip(PIPELINE, durations, strict=True)):
        params = {name: value for name, value in spec.items() if name != "op"}
        now += timedelta(milliseconds=duration)
        timings.append(StepTiming(op=spec["op"], params=params, duration_ms=duration))
        if not legacy:
            continue
        applied = OperationApplied(
            job_id=job_id,
            index=index,
            op=spec["op"],
            params=params,
            duration_ms=duration,
            input_sha256=source.sha256,
            attempt=1,
        )
        steps.append(
            (envelope_for(applied, "imageproc", now, cause=e_started, key=str(index)), applied)
        )
    now += timedelta(milliseconds=20)
    if legacy:
        stored = ImageStored(job_id=job_id, role="output", image=output, derived_from=source.sha256)
        steps.append((envelope_for(stored, "imageproc_runner", now, cause=e_uploaded), stored))
    processed = ImageProcessed(
        job_id=job_id,
        input=source.model_copy(update={"info": INPUT_INFO}),
        output=output,
        pipeline=PIPELINE,
        steps=timings,
        duration_ms=round(sum(durations) + 40.0, 2),
        **({} if legacy else {"attempt": 1, "engine": ENGINE}),
    )
    now += timedelta(milliseconds=2)
    steps.append((envelope_for(processed, "imageproc_runner", now, cause=e_uploaded), processed))
    return steps


def failed_trail(
    job_id: str, source: ImageRef, at: datetime, code: str, *, principal: str = PRINCIPAL
) -> list[Step]:
    """A job that failed for `code` after its intake."""
    steps = intake(job_id, source, at, principal=principal)
    failed = JobFailed(
        job_id=job_id,
        error=ErrorInfo(code=code, message=f"{code}: the pipeline cannot run"),
        input=source,
        pipeline=PIPELINE,
        attempt=1,
    )
    steps.append(
        (
            envelope_for(failed, "imageproc_runner", at + timedelta(seconds=1), cause=steps[-1][0]),
            failed,
        )
    )
    return steps


def reused_trail(
    job_id: str,
    source: ImageRef,
    earlier: list[Step],
    at: datetime,
    *,
    principal: str = PRINCIPAL,
) -> list[Step]:
    """A job that took the output of the `earlier` job's trail (same input bytes, pipeline
    and engine): its intake, then `image.reused`, as the runner records it."""
    steps = intake(job_id, source, at, principal=principal)
    e_processed, processed = next(step for step in earlier if step[1].type == "image.processed")
    assert isinstance(processed, ImageProcessed)
    reused = ImageReused(
        job_id=job_id,
        input=source.model_copy(update={"info": INPUT_INFO}),
        output=processed.output,
        pipeline=PIPELINE,
        reused_from=processed.job_id,
        computation=e_processed.id,
        engine="imagemesh-imageproc/0.5.0 libvips/8.18.7",
        reuse_key=sha(f"reuse/{source.sha256}"),
    )
    moment = at + timedelta(milliseconds=25)
    steps.append((envelope_for(reused, "imageproc_runner", moment, cause=steps[-1][0]), reused))
    return steps


def documents(steps: list[Step]) -> list[dict[str, Any]]:
    return [to_document(envelope, event) for envelope, event in steps]


def recorded_before(doc: dict[str, Any]) -> dict[str, Any]:
    """A document as provenancedb recorded it before upload.received carried the input and
    image.processed the operations: without the fields those events have since."""
    doc = copy.deepcopy(doc)
    if doc["type"] == "upload.received":
        doc["data"].pop("input")
        doc.pop("location", None)
    if doc["type"] == "image.processed":
        for name in ("attempt", "engine"):
            doc["data"].pop(name)
        doc.pop("location")
    return doc


def legacy_documents(steps: list[Step]) -> list[dict[str, Any]]:
    """The documents of a trail recorded before (`job_trail(..., legacy=True)`)."""
    return [recorded_before(doc) for doc in documents(steps)]


# --------------------------------------------------------------------------- PROV checks

RECORD_CLASSES: dict[str, type[ProvRecord]] = {
    "entity": ProvEntity,
    "activity": ProvActivity,
    "agent": ProvAgent,
    "used": ProvUsage,
    "wasGeneratedBy": ProvGeneration,
    "wasDerivedFrom": ProvDerivation,
    "wasAssociatedWith": ProvAssociation,
    "actedOnBehalfOf": ProvDelegation,
    "wasInformedBy": ProvCommunication,
    "wasInvalidatedBy": ProvInvalidation,
}
# What each relation must name, and whether that must be a record of the same document.
REFERENCES: dict[type[ProvRecord], tuple[tuple[QualifiedName, bool], ...]] = {
    ProvUsage: ((PROV_ATTR_ACTIVITY, True), (PROV_ATTR_ENTITY, True)),
    ProvGeneration: ((PROV_ATTR_ENTITY, True), (PROV_ATTR_ACTIVITY, True)),
    ProvInvalidation: ((PROV_ATTR_ENTITY, True), (PROV_ATTR_ACTIVITY, True)),
    ProvDerivation: ((PROV_ATTR_GENERATED_ENTITY, True), (PROV_ATTR_USED_ENTITY, True)),
    ProvAssociation: ((PROV_ATTR_ACTIVITY, True), (PROV_ATTR_AGENT, True)),
    ProvDelegation: (
        (PROV_ATTR_DELEGATE, True),
        (PROV_ATTR_RESPONSIBLE, True),
        (PROV_ATTR_ACTIVITY, True),
    ),
    # The informant is the cause's activity, in another event's view.
    ProvCommunication: ((PROV_ATTR_INFORMED, True), (PROV_ATTR_INFORMANT, False)),
}


def valid_prov(view: dict[str, Any]) -> ProvDocument:
    """Deserialise a PROV-JSON document with the `prov` package, strictly: anything it
    would drop (an undeclared prefix, a time that is not xsd:dateTime, a null, an
    unresolvable datatype) is an error, and every record and attribute must arrive."""
    assert set(view) <= {"prefix", *RECORD_CLASSES}, set(view)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProvWarning)
        document = ProvDocument.deserialize(content=json.dumps(view), format="json")
    records = list(document.get_records())
    expected = Counter(
        {RECORD_CLASSES[section]: len(view[section]) for section in view if section != "prefix"}
    )
    assert Counter(type(record) for record in records) == expected
    declared = set(view["prefix"].values()) | {ns.uri for ns in DEFAULT_NAMESPACES.values()}
    for record in records:
        for _name, value in record.attributes:
            if isinstance(value, QualifiedName):
                assert value.namespace.uri in declared, value
        if record.is_element():
            section = next(s for s, cls in RECORD_CLASSES.items() if type(record) is cls)
            assert len(record.attributes) == len(view[section][str(record.identifier)])
        for name, local in REFERENCES.get(type(record), ()):
            target = dict(record.formal_attributes)[name]
            assert isinstance(target, QualifiedName), (record, name)
            if local:
                assert document.get_record(target), f"{record} names {target}, not in the view"
    return document


def named(value: object, prefix: str) -> str:
    """The local part of a qualified name, checking that it is one, in `prefix`."""
    assert isinstance(value, QualifiedName), value
    assert value.namespace.uri == PROV_PREFIXES[prefix], value
    return value.localpart


def records(document: ProvDocument, cls: type[ProvRecord]) -> list[Any]:
    return [record for record in document.get_records() if type(record) is cls]


def formal(record: ProvRecord, name: QualifiedName) -> Any:
    return dict(record.formal_attributes)[name]


def extra(record: ProvRecord, name: str) -> list[Any]:
    return [value for key, value in record.extra_attributes if str(key) == name]


# --------------------------------------------------------------------------- every event

JOB = "0b6f3f1e-8d35-4c55-9d43-6cf2a1f1f0aa"
IN = sha("cat.jpg")
OUT = sha("cat-thumbnail.png")
INPUT = input_ref(IN)
OUTPUT = output_ref(JOB, OUT)
CEST = timezone(timedelta(hours=2))
T0 = datetime(2026, 3, 14, 9, 26, 53, 589_000, tzinfo=UTC)
TRAIL = job_trail(JOB, INPUT, OUTPUT, T0)
LEGACY = job_trail(JOB, INPUT, OUTPUT, T0, legacy=True)
"""The same job as recorded before: image.stored and operation.applied events of their own."""
TRAIL_BY_TYPE = {event.type: (envelope, event) for envelope, event in TRAIL}
CAUSE = TRAIL_BY_TYPE["image.uploaded"][0]


REUSER = "7c1d2e3f-0a1b-4c2d-8e3f-4a5b6c7d8e9f"
REUSED = reused_trail(REUSER, INPUT, TRAIL, T0 + timedelta(minutes=5))


def _retry() -> Step:
    event = RetryScheduled(
        job_id=JOB,
        queue="imageproc_runner.uploads",
        attempt=2,
        delay_seconds=4.0,
        error="RpcError('timeout', 'imageproc did not answer within 30 s')",
    )
    return envelope_for(event, "imageproc_runner", T0, cause=CAUSE, key="attempt-2"), event


def _parked() -> Step:
    event = MessageParked(
        job_id=JOB,
        queue="imageproc_runner.uploads",
        parking_queue="imageproc_runner.uploads.parking",
        attempts=5,
        error="gave up after 5 attempts: timeout",
    )
    return envelope_for(event, "imageproc_runner", T0, cause=CAUSE, key="attempt-5"), event


def _failed_without_input() -> Step:
    event = JobFailed(job_id=JOB, error=ErrorInfo(code="retries_exhausted", message="gave up"))
    return envelope_for(event, "imageproc_runner", T0, cause=CAUSE), event


CANCELLER = "alice"


def _cancel_requested() -> Step:
    event = CancelRequested(job_id=JOB, principal=CANCELLER)
    return envelope_for(event, "upload", T0), event


def _cancelled() -> Step:
    event = JobCancelled(
        job_id=JOB,
        principal=CANCELLER,
        input=INPUT,
        pipeline=[{"op": "blur", "sigma": 3}],
        attempt=1,
        while_processing=True,
    )
    return envelope_for(event, "imageproc_runner", T0, cause=CAUSE), event


RETRY = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"


def _retried() -> Step:
    """A failed job retried: caused by the new job's image.uploaded (`CAUSE` here)."""
    event = JobRetried(job_id=JOB, retry=RETRY, principal=CANCELLER)
    return envelope_for(event, "upload", T0, cause=CAUSE), event


def _webhook() -> Step:
    """One attempt at a job's webhook, caused by the job's end (`CAUSE` here)."""
    event = WebhookAttempted(
        job_id=JOB,
        principal=PRINCIPAL,
        delivery=CAUSE.id,
        attempt=2,
        url="https://hooks.example.org/imagemesh",
        job_status="succeeded",
        status_code=503,
        duration_ms=12.5,
        outcome="retrying",
    )
    return envelope_for(event, "upload", T0, cause=CAUSE), event


def _erased() -> Step:
    """The owner erased the job: its output deleted, its input kept (another job uses it)."""
    event = JobErased(
        job_id=JOB,
        principal=PRINCIPAL,
        objects=[
            ErasedObject(
                role="computation", bucket="out", key=f"computations/{OUT}.json", deleted=True
            ),
            ErasedObject(
                role="output", bucket=OUTPUT.bucket, key=OUTPUT.key, sha256=OUT, deleted=True
            ),
            ErasedObject(
                role="thumbnail",
                bucket="out",
                key=f"thumbnails/{OUT}.webp",
                sha256=OUT,
                deleted=True,
            ),
            ErasedObject(
                role="input",
                bucket=INPUT.bucket,
                key=INPUT.key,
                sha256=IN,
                deleted=False,
                kept_because="used by 1 other job",
            ),
        ],
    )
    return envelope_for(event, "upload", T0), event


def _at(step: Step, moment: datetime) -> Step:
    envelope, event = step
    return dataclasses.replace(envelope, time=moment), event


# name -> (step, expected optional flat fields, sha256s used, sha256s generated)
CASES: dict[str, tuple[Step, dict[str, Any], set[str], set[str]]] = {
    "upload.received": (
        TRAIL_BY_TYPE["upload.received"],
        {"input_sha256": IN, "client_address": "203.0.113.7", "location": INPUT.uri},
        set(),
        {IN},
    ),
    "image.stored-input": (
        LEGACY[1],
        {"input_sha256": IN, "location": INPUT.uri},
        {IN},
        set(),
    ),
    "image.stored-output": (
        LEGACY[-2],
        {"input_sha256": IN, "output_sha256": OUT, "location": OUTPUT.uri},
        {OUT},
        set(),
    ),
    "image.uploaded": (TRAIL_BY_TYPE["image.uploaded"], {"input_sha256": IN}, {IN}, set()),
    "job.processing-started": (
        # A time in another zone: the document's time is UTC all the same.
        _at(
            TRAIL_BY_TYPE["job.processing-started"], datetime(2026, 3, 14, 11, 26, 54, tzinfo=CEST)
        ),
        {"input_sha256": IN, "attempt": 1},
        {IN},
        set(),
    ),
    "operation.applied": (
        LEGACY[4],
        {"input_sha256": IN, "operation": "thumbnail", "attempt": 1},
        set(),
        set(),
    ),
    "image.processed": (
        TRAIL_BY_TYPE["image.processed"],
        {"input_sha256": IN, "output_sha256": OUT, "location": OUTPUT.uri, "attempt": 1},
        {IN},
        {OUT},
    ),
    "job.failed": (
        failed_trail(JOB, INPUT, T0, "invalid_pipeline")[-1],
        {"input_sha256": IN, "error_code": "invalid_pipeline", "attempt": 1},
        {IN},
        set(),
    ),
    "job.failed-without-input": (
        _failed_without_input(),
        {"error_code": "retries_exhausted"},
        set(),
        set(),
    ),
    "job.retry-scheduled": (
        _retry(),
        {"attempt": 2, "queue": "imageproc_runner.uploads"},
        set(),
        set(),
    ),
    "job.parked": (_parked(), {"attempt": 5, "queue": "imageproc_runner.uploads"}, set(), set()),
    "job.cancel-requested": (_cancel_requested(), {"principal": CANCELLER}, set(), set()),
    "job.cancelled": (
        _cancelled(),
        {"input_sha256": IN, "principal": CANCELLER, "attempt": 1},
        {IN},
        set(),
    ),
    "job.retried": (_retried(), {"principal": CANCELLER}, set(), set()),
    "job.erased": (_erased(), {"principal": PRINCIPAL}, set(), set()),
    "webhook.attempted": (_webhook(), {"principal": PRINCIPAL, "attempt": 2}, set(), set()),
    "image.reused": (
        REUSED[-1],
        {"input_sha256": IN, "output_sha256": OUT, "location": OUTPUT.uri},
        {IN, OUT},
        {OUT},
    ),
}
OPTIONAL_FLAT = {
    "input_sha256",
    "output_sha256",
    "operation",
    "error_code",
    "attempt",
    "queue",
    "location",
    "client_address",
    "principal",
}


def test_the_cases_cover_every_event_type() -> None:
    assert {type(step[1]) for step, *_ in CASES.values()} == set(ALL_EVENTS)


@pytest.mark.parametrize("name", list(CASES))
def test_document_of_every_event_has_its_flat_fields(name: str) -> None:
    (envelope, event), flat, _used, _generated = CASES[name]
    doc = to_document(envelope, event)

    assert doc["_id"] == envelope.id
    assert doc["type"] == event.type == envelope.type
    assert doc["job_id"] == event.job_id
    assert doc["time"].endswith("Z")
    moment = datetime.fromisoformat(doc["time"].replace("Z", "+00:00"))
    assert moment.utcoffset() == timedelta(0)
    assert moment == envelope.time
    service = envelope.source.rsplit("/", 1)[-1]
    assert doc["service"] == service
    assert doc["source"] == envelope.source
    assert doc["agent"] == {
        "service": service,
        "version": VERSIONS[service],
        "host": envelope.agent_host,
    }
    if envelope.causation_id:
        assert doc["causation_id"] == envelope.causation_id
    else:
        assert "causation_id" not in doc
    assert {key: doc[key] for key in OPTIONAL_FLAT if key in doc} == flat
    assert doc["data"] == event.model_dump(mode="json")
    # What CouchDB stores is JSON: the document must survive a round trip unchanged.
    assert json.loads(json.dumps(doc)) == doc


@pytest.mark.parametrize("name", list(CASES))
def test_prov_view_of_every_event_is_valid_prov_json(name: str) -> None:
    (envelope, event), _flat, used, generated = CASES[name]
    view = to_document(envelope, event)["prov"]
    document = valid_prov(view)

    activities = {named(a.identifier, "imagemesh"): a for a in records(document, ProvActivity)}
    activity = activities.pop(f"event/{envelope.id}")
    # A computation's operations are activities of its view (`test_operations.py`).
    operations = [n for n in activities if n.startswith(f"event/{envelope.id}/operation/")]
    for name in operations:
        activities.pop(name)
    assert len(operations) == (len(event.steps) if isinstance(event, ImageProcessed) else 0)
    assert extra(activity, "prov:type") == [event.type]
    assert extra(activity, "imagemesh:job") == [event.job_id]
    # Only a reuse names another activity: the earlier job's computation.
    computation = f"event/{event.computation}" if isinstance(event, ImageReused) else None
    assert list(activities) == ([computation] if computation else [])
    started, ended = activity.get_startTime(), activity.get_endTime()
    assert ended == envelope.time
    timed = OperationApplied | ImageProcessed | WebhookAttempted
    duration = event.duration_ms if isinstance(event, timed) else 0
    assert ended - started == timedelta(milliseconds=duration)

    service = envelope.source.rsplit("/", 1)[-1]
    agent_id = f"agent/{service}/{VERSIONS[service]}"
    agents = {named(a.identifier, "imagemesh"): a for a in records(document, ProvAgent)}
    assert extra(agents[agent_id], "imagemesh:version") == [VERSIONS[service]]
    assert extra(agents[agent_id], "imagemesh:host") == [envelope.agent_host]
    associations = {
        (formal(r, PROV_ATTR_ACTIVITY), named(formal(r, PROV_ATTR_AGENT), "imagemesh"))
        for r in records(document, ProvAssociation)
    }
    assert (activity.identifier, agent_id) in associations
    images = [e for e in records(document, ProvEntity) if _is_image(e.identifier)]

    informed = [
        (formal(r, PROV_ATTR_INFORMED), named(formal(r, PROV_ATTR_INFORMANT), "imagemesh"))
        for r in records(document, ProvCommunication)
    ]
    if envelope.causation_id:
        assert (activity.identifier, f"event/{envelope.causation_id}") in informed
    expected_informants = [envelope.causation_id, computation and computation[len("event/") :]]
    assert len(informed) == len([cause for cause in expected_informants if cause])

    used_shas = {
        named(formal(r, PROV_ATTR_ENTITY), "sha256")
        for r in records(document, ProvUsage)
        if formal(r, PROV_ATTR_ACTIVITY) == activity.identifier
        and _is_image(formal(r, PROV_ATTR_ENTITY))
    }
    generated_shas = {
        named(formal(r, PROV_ATTR_ENTITY), "sha256")
        for r in records(document, ProvGeneration)
        if _is_image(formal(r, PROV_ATTR_ENTITY))
    }
    invalidated = {
        named(formal(r, PROV_ATTR_ENTITY), "sha256")
        for r in records(document, ProvInvalidation)
        if formal(r, PROV_ATTR_ACTIVITY) == activity.identifier
    }
    assert used_shas == used
    assert generated_shas == generated
    assert invalidated == ({OUT} if isinstance(event, JobErased) else set())
    assert {named(e.identifier, "sha256") for e in images} == used | generated | invalidated
    for entity in images:
        assert extra(entity, "imagemesh:sha256") == [named(entity.identifier, "sha256")]


def _is_image(identifier: QualifiedName) -> bool:
    """A stored image (identified by content), not an intermediate one (`operations.py`)."""
    return identifier.namespace.uri == PROV_PREFIXES["sha256"]


def test_output_is_derived_from_input_in_the_processed_view() -> None:
    envelope, event = TRAIL_BY_TYPE["image.processed"]
    document = valid_prov(to_document(envelope, event)["prov"])
    (derivation,) = records(document, ProvDerivation)
    assert named(formal(derivation, PROV_ATTR_GENERATED_ENTITY), "sha256") == OUT
    assert named(formal(derivation, PROV_ATTR_USED_ENTITY), "sha256") == IN
    assert formal(derivation, PROV_ATTR_ACTIVITY) == records(document, ProvActivity)[0].identifier


def test_upload_view_names_the_client_as_uploader() -> None:
    envelope, event = TRAIL_BY_TYPE["upload.received"]
    view = to_document(envelope, event)["prov"]
    valid_prov(view)
    client = view["agent"]["imagemesh:client/203.0.113.7"]
    assert client["imagemesh:address"] == "203.0.113.7"
    assert client["imagemesh:user_agent"] == "curl/8.5.0"
    roles = {
        named(formal(r, PROV_ATTR_AGENT), "imagemesh"): [
            str(role) for role in extra(r, "prov:role")
        ]
        for r in records(valid_prov(view), ProvAssociation)
    }
    assert roles == {"client/203.0.113.7": ["imagemesh:uploader"], "agent/upload/0.3.0": []}
    assert view["activity"][f"imagemesh:event/{envelope.id}"]["imagemesh:filename"] == "cat.jpg"


@pytest.mark.parametrize("event_type", ["upload.received", "image.uploaded"])
def test_the_upload_service_acted_on_behalf_of_the_principal(event_type: str) -> None:
    envelope, event = TRAIL_BY_TYPE[event_type]
    document = valid_prov(to_document(envelope, event)["prov"])
    (delegation,) = records(document, ProvDelegation)
    assert named(formal(delegation, PROV_ATTR_DELEGATE), "imagemesh") == "agent/upload/0.3.0"
    responsible = formal(delegation, PROV_ATTR_RESPONSIBLE)
    assert named(responsible, "imagemesh") == f"principal/{PRINCIPAL}"
    assert named(formal(delegation, PROV_ATTR_ACTIVITY), "imagemesh") == f"event/{envelope.id}"
    (principal,) = (a for a in records(document, ProvAgent) if a.identifier == responsible)
    assert [str(label) for label in principal.get_attribute("prov:label")] == [PRINCIPAL]
    assert [str(kind) for kind in principal.get_attribute("prov:type")] == ["imagemesh:Principal"]


@pytest.mark.parametrize("step", [_cancel_requested(), _cancelled()], ids=["requested", "done"])
def test_a_cancellation_names_who_asked_for_it(step: Step) -> None:
    envelope, event = step
    document = valid_prov(to_document(envelope, event)["prov"])
    (delegation,) = records(document, ProvDelegation)
    responsible = formal(delegation, PROV_ATTR_RESPONSIBLE)
    assert named(responsible, "imagemesh") == f"principal/{CANCELLER}"
    assert named(formal(delegation, PROV_ATTR_ACTIVITY), "imagemesh") == f"event/{envelope.id}"
    (activity,) = records(document, ProvActivity)
    assert extra(activity, "imagemesh:principal") == [CANCELLER]


def test_a_webhook_attempt_names_its_owner_and_keeps_what_it_met() -> None:
    envelope, event = _webhook()
    document = valid_prov(to_document(envelope, event)["prov"])
    (delegation,) = records(document, ProvDelegation)
    assert named(formal(delegation, PROV_ATTR_RESPONSIBLE), "imagemesh") == f"principal/{PRINCIPAL}"
    (activity,) = records(document, ProvActivity)
    assert extra(activity, "imagemesh:outcome") == ["retrying"]
    assert extra(activity, "imagemesh:status_code") == [503]
    assert extra(activity, "imagemesh:url") == ["https://hooks.example.org/imagemesh"]
    assert extra(activity, "imagemesh:attempt") == [2]


def test_merged_job_document_names_the_principal_once_for_the_jobs_intake() -> None:
    document = valid_prov(merge_prov(_job_views()))
    delegations = records(document, ProvDelegation)
    assert len(delegations) == 2  # upload.received and image.uploaded
    assert {named(formal(d, PROV_ATTR_RESPONSIBLE), "imagemesh") for d in delegations} == {
        f"principal/{PRINCIPAL}"
    }


def test_an_anonymous_upload_still_has_a_valid_view() -> None:
    envelope, event = TRAIL_BY_TYPE["upload.received"]
    assert isinstance(event, UploadReceived)
    anonymous = event.model_copy(update={"client": ClientInfo(), "filename": None})
    doc = to_document(envelope, anonymous)
    assert "client_address" not in doc
    view = doc["prov"]
    valid_prov(view)
    assert view["agent"]["imagemesh:client/unknown"]["imagemesh:user_agent"] == "unknown"
    assert "imagemesh:filename" not in view["activity"][f"imagemesh:event/{envelope.id}"]


def test_envelope_without_agent_version_gives_an_unknown_but_valid_agent() -> None:
    envelope, event = _retry()
    bare = dataclasses.replace(envelope, agent_version=None, agent_host=None)
    (agent,) = records(valid_prov(to_document(bare, event)["prov"]), ProvAgent)
    assert named(agent.identifier, "imagemesh") == "agent/imageproc_runner/unknown"
    assert {str(name): str(value) for name, value in agent.attributes} == {
        "prov:type": "prov:SoftwareAgent",
        "imagemesh:service": "imageproc_runner",
        "imagemesh:version": "unknown",
        "imagemesh:host": "unknown",
    }


def test_document_times_sort_as_the_instants_do() -> None:
    second = datetime(2026, 3, 15, 16, 5, tzinfo=UTC)
    instants = [
        second - timedelta(milliseconds=1),
        second,
        second + timedelta(milliseconds=12),
        second + timedelta(seconds=1),
    ]
    times = [to_document(*_at(TRAIL[0], moment))["time"] for moment in instants]
    assert times == sorted(times)


def test_json_literal_is_a_typed_literal_of_canonical_json() -> None:
    literal = json_literal({"width": 320, "fit": "inside", "nested": [1, {"b": 2, "a": 1}]})
    assert literal == {
        "$": '{"fit":"inside","nested":[1,{"a":1,"b":2}],"width":320}',
        "type": "imagemesh:json",
    }


# --------------------------------------------------------------------------- a whole job


def _job_views() -> list[dict[str, Any]]:
    return [doc["prov"] for doc in documents(TRAIL)]


def test_the_trail_is_the_documented_sequence() -> None:
    assert [event.type for _, event in TRAIL] == [
        "upload.received",
        "image.uploaded",
        "job.processing-started",
        "image.processed",
    ]
    assert len({envelope.id for envelope, _ in TRAIL}) == len(TRAIL)
    assert [event.type for _, event in LEGACY] == [
        "upload.received",
        "image.stored",
        "image.uploaded",
        "job.processing-started",
        "operation.applied",
        "operation.applied",
        "image.stored",
        "image.processed",
    ]


def test_merged_job_document_is_valid_and_derives_output_from_input() -> None:
    merged = merge_prov(_job_views())
    document = valid_prov(merged)
    derivations = {
        (
            named(formal(r, PROV_ATTR_GENERATED_ENTITY), "sha256"),
            named(formal(r, PROV_ATTR_USED_ENTITY), "sha256"),
        )
        for r in records(document, ProvDerivation)
    }
    assert derivations == {(OUT, IN)}
    assert {name for name in merged["entity"] if name.startswith("sha256:")} == {
        f"sha256:{IN}",
        f"sha256:{OUT}",
    }
    generated_by = {
        named(formal(r, PROV_ATTR_ENTITY), "sha256"): named(
            formal(r, PROV_ATTR_ACTIVITY), "imagemesh"
        )
        for r in records(document, ProvGeneration)
        if _is_image(formal(r, PROV_ATTR_ENTITY))
    }
    processed_id = TRAIL_BY_TYPE["image.processed"][0].id
    received_id = TRAIL_BY_TYPE["upload.received"][0].id
    assert generated_by == {OUT: f"event/{processed_id}", IN: f"event/{received_id}"}


def test_merged_job_document_times_every_activity() -> None:
    document = valid_prov(merge_prov(_job_views()))
    # Operations have no times of their own: imageproc says how long, not when.
    activities = [a for a in records(document, ProvActivity) if "/operation/" not in str(a)]
    assert len(activities) == len(TRAIL)
    times = {
        named(a.identifier, "imagemesh"): (a.get_startTime(), a.get_endTime()) for a in activities
    }
    for envelope, _event in TRAIL:
        started, ended = times[f"event/{envelope.id}"]
        assert started is not None
        assert ended == envelope.time
        assert started <= ended


def test_merged_job_document_agents_carry_their_versions() -> None:
    document = valid_prov(merge_prov(_job_views()))
    agents = {named(a.identifier, "imagemesh"): a for a in records(document, ProvAgent)}
    assert set(agents) == {
        "agent/upload/0.3.0",
        "agent/imageproc_runner/0.4.0",
        "agent/imageproc/0.5.0",
        "client/203.0.113.7",
        f"principal/{PRINCIPAL}",
    }
    for service, version in VERSIONS.items():
        assert extra(agents[f"agent/{service}/{version}"], "imagemesh:version") == [version]
    associated = {
        (
            named(formal(r, PROV_ATTR_ACTIVITY), "imagemesh"),
            named(formal(r, PROV_ATTR_AGENT), "imagemesh"),
        )
        for r in records(document, ProvAssociation)
    }
    expected = {
        (f"event/{e.id}", f"agent/{e.source.rsplit('/', 1)[-1]}/{e.agent_version}")
        for e, _ in TRAIL
    }
    expected.add((f"event/{TRAIL[0][0].id}", "client/203.0.113.7"))
    processed = TRAIL_BY_TYPE["image.processed"][0].id
    expected |= {
        (f"event/{processed}/operation/{n}", "agent/imageproc/0.5.0") for n in range(len(PIPELINE))
    }
    assert associated == expected


def test_merged_job_document_informed_by_follows_causation_ids() -> None:
    document = valid_prov(merge_prov(_job_views()))
    informed = {
        (
            named(formal(r, PROV_ATTR_INFORMED), "imagemesh"),
            named(formal(r, PROV_ATTR_INFORMANT), "imagemesh"),
        )
        for r in records(document, ProvCommunication)
    }
    expected = {
        (f"event/{envelope.id}", f"event/{envelope.causation_id}")
        for envelope, _ in TRAIL
        if envelope.causation_id
    }
    assert len(expected) == len(TRAIL) - 1  # all but the upload's first event
    assert informed == expected
    # Every informant is an activity of the same job: the chain has no loose end.
    activities = {named(a.identifier, "imagemesh") for a in records(document, ProvActivity)}
    assert {informant for _, informant in informed} <= activities


def test_merged_job_document_operations_carry_name_and_params() -> None:
    merged = merge_prov(_job_views())
    document = valid_prov(merged)
    envelope, processed = TRAIL_BY_TYPE["image.processed"]
    assert isinstance(processed, ImageProcessed)
    operations = list(enumerate(processed.steps))
    assert len(operations) == 2
    by_id = {named(a.identifier, "imagemesh"): a for a in records(document, ProvActivity)}
    for index, step in operations:
        raw = merged["activity"][f"imagemesh:event/{envelope.id}/operation/{index}"]
        assert raw["imagemesh:operation"] == step.op
        assert raw["imagemesh:params"] == {
            "$": json.dumps(step.params, sort_keys=True, separators=(",", ":")),
            "type": "imagemesh:json",
        }
        activity = by_id[f"event/{envelope.id}/operation/{index}"]
        assert extra(activity, "prov:type") == ["operation.applied"]
        assert extra(activity, "imagemesh:operation") == [step.op]
        assert extra(activity, "imagemesh:index") == [index]
        assert extra(activity, "imagemesh:duration_ms") == [step.duration_ms]
        (params,) = extra(activity, "imagemesh:params")
        assert isinstance(params, Literal)
        assert named(params.datatype, "imagemesh") == "json"
        assert json.loads(params.value) == step.params
    assert [step.params for _, step in operations] == [
        {"width": 320},
        {"format": "png", "compression": 6},
    ]


def test_merged_entity_is_the_union_of_what_each_view_says() -> None:
    views = _job_views()
    key = f"sha256:{IN}"
    received, processed = views[0]["entity"][key], views[-1]["entity"][key]
    # The upload stored the bytes; only imageproc read their info.
    assert received["prov:location"] == INPUT.uri
    assert "imagemesh:info" not in received
    assert processed["imagemesh:info"] == json_literal(INPUT_INFO)

    merged = merge_prov(views)["entity"][key]
    assert merged == received | views[1]["entity"][key] | views[2]["entity"][key] | processed
    assert merged["prov:location"] == INPUT.uri
    assert merged["imagemesh:info"] == json_literal(INPUT_INFO)
    assert merged["imagemesh:bytes"] == INPUT.bytes

    entity = ProvDocument.deserialize(content=json.dumps(merge_prov(views)), format="json")
    (record,) = [r for r in records(entity, ProvEntity) if str(r.identifier) == key]
    assert extra(record, "prov:location") == [INPUT.uri]


def test_merge_prov_keeps_every_record_and_leaves_the_views_alone() -> None:
    one = {
        "prefix": {"imagemesh": "urn:imagemesh:"},
        "entity": {"sha256:" + IN: {"imagemesh:format": "jpeg"}},
        "used": {
            "_:used/1/0": {"prov:activity": "imagemesh:event/1", "prov:entity": "sha256:" + IN}
        },
        "activity": {"imagemesh:event/1": {}},
    }
    two = {
        "prefix": {"sha256": "urn:sha256:", "ex": "urn:example:"},
        "entity": {"sha256:" + IN: {"prov:location": "s3://b/k"}, "sha256:" + OUT: {}},
        "used": {
            "_:used/2/0": {"prov:activity": "imagemesh:event/2", "prov:entity": "sha256:" + IN}
        },
        "activity": {"imagemesh:event/2": {}},
    }
    before = copy.deepcopy([one, two])
    merged = merge_prov([one, two])
    assert [one, two] == before
    assert merged["prefix"] == {**PROV_PREFIXES, "ex": "urn:example:"}
    assert merged["entity"] == {
        "sha256:" + IN: {"imagemesh:format": "jpeg", "prov:location": "s3://b/k"},
        "sha256:" + OUT: {},
    }
    assert set(merged["used"]) == {"_:used/1/0", "_:used/2/0"}
    assert set(merged["activity"]) == {"imagemesh:event/1", "imagemesh:event/2"}
    valid_prov(merged)


def test_merge_prov_of_nothing_is_an_empty_valid_document() -> None:
    merged = merge_prov([])
    assert merged == {"prefix": PROV_PREFIXES}
    assert list(valid_prov(merged).get_records()) == []


def test_types_and_roles_are_qualified_names() -> None:
    document = valid_prov(merge_prov(_job_views()))
    for record in records(document, ProvAgent) + records(document, ProvEntity):
        (kind,) = extra(record, "prov:type")
        assert isinstance(kind, QualifiedName), (record.identifier, kind)
    roles = [value for r in records(document, ProvAssociation) for value in extra(r, "prov:role")]
    assert roles
    assert all(isinstance(role, QualifiedName) for role in roles)


# --------------------------------------------------------------------------- job status


def test_fold_is_order_independent_and_most_advanced_step_wins() -> None:
    docs = documents(TRAIL)
    job = fold_status(JOB, list(reversed(docs)))
    assert job is not None
    assert job == fold_status(JOB, docs)
    assert job["status"] == "succeeded"
    assert job["input"] == {
        "sha256": IN,
        "bytes": INPUT.bytes,
        "format": "jpeg",
        "width": 640,
        "height": 480,
        "info": INPUT_INFO,
    }
    assert job["output"]["format"] == "png"
    assert job["output"]["content_type"] == "image/png"
    assert job["pipeline"] == PIPELINE
    assert job["filename"] == "cat.jpg"
    assert job["created_at"].startswith("2026-03-14T09:26:53.589")
    assert job["updated_at"] == to_document(*TRAIL[-1])["time"]
    assert [step["op"] for step in job["steps"]] == ["thumbnail", "convert"]


def test_fold_of_only_the_intake_is_queued() -> None:
    job = fold_status(JOB, documents(TRAIL[:2]))
    assert job is not None
    assert job["status"] == "queued"
    assert "output" not in job


def test_fold_of_a_failure_carries_its_error() -> None:
    job = fold_status(JOB, documents(failed_trail(JOB, INPUT, T0, "invalid_pipeline")))
    assert job is not None
    assert job["status"] == "failed"
    assert job["error"]["code"] == "invalid_pipeline"


def test_fold_without_documents_is_none() -> None:
    assert fold_status(JOB, []) is None
    # Provenance-only steps (retries, operations) do not make a job by themselves.
    assert fold_status(JOB, documents([_retry(), LEGACY[4]])) is None
