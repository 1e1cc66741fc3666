"""A computation's operations in its `image.processed` document, and trails recorded
before it carried them (`image.stored`, `operation.applied`): both fold, render as valid
PROV and audit as complete."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prov.model import (
    PROV_ATTR_ACTIVITY,
    PROV_ATTR_AGENT,
    PROV_ATTR_ENTITY,
    PROV_ATTR_GENERATED_ENTITY,
    PROV_ATTR_USED_ENTITY,
    ProvActivity,
    ProvAssociation,
    ProvDerivation,
    ProvGeneration,
    ProvUsage,
)

from messaging.events import ImageProcessed, StepTiming
from messaging.jobs import fold_status
from provenancedb.audit import audit_documents
from provenancedb.documents import to_document
from provenancedb.provview import merge_prov
from tests.provenancedb.test_documents import (
    IN,
    INPUT,
    JOB,
    LEGACY,
    OUT,
    OUTPUT,
    PIPELINE,
    T0,
    TRAIL,
    TRAIL_BY_TYPE,
    documents,
    extra,
    formal,
    legacy_documents,
    named,
    records,
    valid_prov,
)

NOW = T0 + timedelta(hours=1)


def _processed(**changes: Any) -> tuple[Any, ImageProcessed]:
    envelope, event = TRAIL_BY_TYPE["image.processed"]
    assert isinstance(event, ImageProcessed)
    return envelope, event.model_copy(update=changes)


def _relations(document: Any, cls: type, first: Any, second: Any) -> set[tuple[str, str]]:
    return {(str(formal(r, first)), str(formal(r, second))) for r in records(document, cls)}


# --------------------------------------------------------------------------- PROV


def test_each_operation_used_the_image_before_it_and_the_computation_encoded_the_last() -> None:
    envelope, event = _processed()
    document = valid_prov(to_document(envelope, event)["prov"])
    processed = f"imagemesh:event/{envelope.id}"
    first, second = f"{processed}/operation/0", f"{processed}/operation/1"
    between, last = f"{processed}/intermediate/0", f"{processed}/intermediate/1"
    used = _relations(document, ProvUsage, PROV_ATTR_ACTIVITY, PROV_ATTR_ENTITY)
    assert used == {
        (processed, f"sha256:{IN}"),
        (first, f"sha256:{IN}"),
        (second, between),
        (processed, last),
    }
    generated = _relations(document, ProvGeneration, PROV_ATTR_ENTITY, PROV_ATTR_ACTIVITY)
    assert generated == {(between, first), (last, second), (f"sha256:{OUT}", processed)}
    # Only the stored images are derived one from the other: the output from the input.
    derived = _relations(
        document, ProvDerivation, PROV_ATTR_GENERATED_ENTITY, PROV_ATTR_USED_ENTITY
    )
    assert derived == {(f"sha256:{OUT}", f"sha256:{IN}")}
    (encoded,) = [
        r for r in records(document, ProvUsage) if str(formal(r, PROV_ATTR_ENTITY)) == last
    ]
    assert [str(role) for role in extra(encoded, "prov:role")] == ["imagemesh:encoded"]


def test_operations_were_applied_by_imageproc_at_the_engines_version() -> None:
    envelope, event = _processed()
    document = valid_prov(to_document(envelope, event)["prov"])
    associated = {
        (
            named(formal(r, PROV_ATTR_ACTIVITY), "imagemesh"),
            named(formal(r, PROV_ATTR_AGENT), "imagemesh"),
        )
        for r in records(document, ProvAssociation)
    }
    assert (f"event/{envelope.id}/operation/0", "agent/imageproc/0.5.0") in associated
    assert (f"event/{envelope.id}", "agent/imageproc_runner/0.4.0") in associated
    activity = document.get_record(f"imagemesh:event/{envelope.id}")[0]
    assert extra(activity, "imagemesh:attempt") == [1]
    assert extra(activity, "imagemesh:engine") == [event.engine]


def test_an_info_operation_carries_the_image_at_that_point() -> None:
    info = {"width": 320, "height": 240, "bands": 3}
    steps = [StepTiming(op="info", params={}, duration_ms=0.5, info=info)]
    envelope, event = _processed(steps=steps, pipeline=[{"op": "info"}], attempt=2)
    view = to_document(envelope, event)["prov"]
    valid_prov(view)
    operation = view["activity"][f"imagemesh:event/{envelope.id}/operation/0"]
    assert operation["imagemesh:info"]["$"] == '{"bands":3,"height":240,"width":320}'
    assert operation["imagemesh:attempt"] == 2
    assert operation["imagemesh:job"] == JOB


def test_a_computation_without_operations_or_engine_still_has_a_valid_view() -> None:
    envelope, event = _processed(steps=[], pipeline=[])
    view = to_document(envelope, event)["prov"]
    valid_prov(view)
    assert list(view["activity"]) == [f"imagemesh:event/{envelope.id}"]
    envelope, event = _processed(engine=None)
    document = valid_prov(to_document(envelope, event)["prov"])
    operations = [a for a in records(document, ProvActivity) if "/operation/" in str(a.identifier)]
    assert len(operations) == len(PIPELINE)
    assert all(
        "/operation/" not in str(formal(r, PROV_ATTR_ACTIVITY))
        for r in records(document, ProvAssociation)
    )


def test_a_trail_recorded_before_still_merges_into_valid_prov() -> None:
    docs = legacy_documents(LEGACY)
    document = valid_prov(merge_prov([doc["prov"] for doc in docs]))
    merged = merge_prov([doc["prov"] for doc in docs])
    assert merged["entity"][f"sha256:{IN}"]["prov:location"] == INPUT.uri
    assert merged["entity"][f"sha256:{OUT}"]["prov:location"] == OUTPUT.uri
    derived = _relations(
        document, ProvDerivation, PROV_ATTR_GENERATED_ENTITY, PROV_ATTR_USED_ENTITY
    )
    assert derived == {(f"sha256:{OUT}", f"sha256:{IN}")}
    operations = [
        a for a in records(document, ProvActivity) if extra(a, "prov:type") == ["operation.applied"]
    ]
    assert sorted(str(extra(a, "imagemesh:operation")[0]) for a in operations) == [
        "convert",
        "thumbnail",
    ]
    # Each operation.applied document is its own activity: no intermediates were said.
    assert all("/operation/" not in str(a.identifier) for a in operations)


def test_both_kinds_of_trail_say_the_same_of_the_job() -> None:
    new, old = documents(TRAIL), legacy_documents(LEGACY)
    assert fold_status(JOB, new) == fold_status(JOB, old)
    new_prov, old_prov = merge_prov([d["prov"] for d in new]), merge_prov([d["prov"] for d in old])
    for sha in (IN, OUT):
        assert new_prov["entity"][f"sha256:{sha}"] == old_prov["entity"][f"sha256:{sha}"]
    assert len(new) == 4
    assert len(old) == 8


# --------------------------------------------------------------------------- audit


def _gaps(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    report, _ = audit_documents(docs, now=NOW, grace=60)
    return [(gap.kind, gap.detail) for gap in report.gaps]


def test_both_kinds_of_trail_audit_as_complete() -> None:
    assert _gaps(documents(TRAIL)) == []
    assert _gaps(legacy_documents(LEGACY)) == []


def test_a_computation_whose_steps_miss_an_operation_is_a_gap() -> None:
    envelope, event = _processed(steps=[StepTiming(op="thumbnail", params={}, duration_ms=1.0)])
    docs = [*documents(TRAIL[:-1]), to_document(envelope, event)]
    (gap,) = _gaps(docs)
    assert gap[0] == "incomplete_trail"
    assert "['convert', 'thumbnail']" in gap[1]
    assert "['thumbnail']" in gap[1]


def test_an_intake_that_names_no_stored_input_is_a_gap() -> None:
    docs = documents(TRAIL)
    received = {**docs[0], "data": {**docs[0]["data"], "input": None}}
    assert _gaps([received, *docs[1:]]) == [("incomplete_trail", "no stored input")]


def test_a_trail_recorded_before_still_needs_each_of_its_documents() -> None:
    docs = legacy_documents(LEGACY)
    without = [d for d in docs if d["type"] not in {"operation.applied", "image.stored"}]
    assert sorted(_gaps(without)) == [
        ("incomplete_trail", "2 operations applied, operation.applied by attempt: {}"),
        ("incomplete_trail", "no image.stored output"),
        ("incomplete_trail", "no stored input"),
    ]
