from datetime import UTC, datetime

from messaging import Envelope
from messaging.events import ImageProcessed, ImageRef, ImageUploaded, StepTiming
from provenancedb.documents import to_document
from provenancedb.status import fold_status

JOB = "0b6f3f1e-8d35-4c55-9d43-6cf2a1f1f0aa"
INPUT = ImageRef(
    bucket="in",
    key="sha256/aa.jpg",
    sha256="a" * 64,
    bytes=10,
    format="jpeg",
    width=100,
    height=50,
    content_type="image/jpeg",
)
OUTPUT = INPUT.model_copy(
    update={
        "bucket": "out",
        "key": f"{JOB}/output.png",
        "sha256": "b" * 64,
        "format": "png",
        "width": 10,
        "height": 5,
        "content_type": "image/png",
    }
)


def _env(event_id: str, event_type: str, minute: int) -> Envelope:
    return Envelope(
        id=event_id,
        type=event_type,
        source="/imagemesh/imageproc_runner",
        time=datetime(2026, 1, 1, 12, minute, tzinfo=UTC),
        correlation_id=JOB,
        agent_version="0.1.0",
        agent_host="box",
    )


def _uploaded() -> ImageUploaded:
    return ImageUploaded(
        job_id=JOB,
        input=INPUT,
        pipeline=[{"op": "grayscale"}],
        filename="cat.jpg",
        created_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
    )


def _processed() -> ImageProcessed:
    return ImageProcessed(
        job_id=JOB,
        input=INPUT,
        output=OUTPUT,
        pipeline=[{"op": "grayscale"}],
        steps=[StepTiming(op="grayscale", params={}, duration_ms=1.0)],
        duration_ms=5.0,
    )


def test_document_has_flat_fields_and_prov_view() -> None:
    doc = to_document(_env("e2", "image.processed", 1), _processed())
    assert doc["_id"] == "e2"
    assert doc["type"] == "image.processed"
    assert doc["job_id"] == JOB
    assert doc["time"] == "2026-01-01T12:01:00Z"
    assert doc["service"] == "imageproc_runner"
    assert doc["input_sha256"] == "a" * 64
    assert doc["output_sha256"] == "b" * 64
    prov = doc["prov"]
    assert set(prov["entity"]) == {f"sha256:{'a' * 64}", f"sha256:{'b' * 64}"}
    derived = next(iter(prov["wasDerivedFrom"].values()))
    assert derived["prov:generatedEntity"] == f"sha256:{'b' * 64}"
    assert derived["prov:usedEntity"] == f"sha256:{'a' * 64}"
    agent = next(iter(prov["agent"].values()))
    assert agent["imagemesh:version"] == "0.1.0"


def test_fold_is_order_independent_and_most_advanced_step_wins() -> None:
    docs = [
        to_document(_env("e2", "image.processed", 2), _processed()),
        to_document(_env("e1", "image.uploaded", 0), _uploaded()),
    ]
    job = fold_status(JOB, docs)
    assert job is not None
    assert job["status"] == "succeeded"
    assert job["input"] == {
        "sha256": "a" * 64,
        "bytes": 10,
        "format": "jpeg",
        "width": 100,
        "height": 50,
    }
    assert job["output"]["format"] == "png"
    assert job["pipeline"] == [{"op": "grayscale"}]
    assert job["created_at"].startswith("2026-01-01T12:00:00")
    assert job["updated_at"] == "2026-01-01T12:02:00Z"


def test_fold_of_only_the_upload_is_queued() -> None:
    job = fold_status(JOB, [to_document(_env("e1", "image.uploaded", 0), _uploaded())])
    assert job is not None
    assert job["status"] == "queued"
    assert "output" not in job


def test_fold_without_documents_is_none() -> None:
    assert fold_status(JOB, []) is None
