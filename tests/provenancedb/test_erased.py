"""An erased job in provenance: its trail stays complete with one more step, the audit
counts the objects it deleted as erased (not missing) and still checks those it kept,
its PROV document invalidates the deleted images, and `provenancedb.job-objects` names
who else uses each object, leaving erased jobs out."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prov.model import PROV_ATTR_ACTIVITY, PROV_ATTR_ENTITY, ProvInvalidation

from messaging.events import ErasedObject, ImageRef, JobErased
from messaging.jobs import fold_status
from objectstore import StoredObject
from provenancedb.audit import audit, audit_documents
from provenancedb.provview import merge_prov
from provenancedb.sharing import job_objects
from provenancedb.store import ProvenanceStore
from tests.provenancedb.conftest import OpenStore
from tests.provenancedb.test_documents import (
    Step,
    documents,
    envelope_for,
    extra,
    formal,
    input_ref,
    job_trail,
    named,
    output_ref,
    records,
    reused_trail,
    sha,
    valid_prov,
)

T0 = datetime(2026, 12, 2, 7, 30, tzinfo=UTC)
ALICE, BOB = "alice@example.org", "bob"
IN, OUT = sha("erase/in"), sha("erase/out")


def _job(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"imagemesh-test/erase/{name}"))


COMPUTED, REUSED = _job("computed"), _job("reused")
INPUT, OUTPUT = input_ref(IN), output_ref(COMPUTED, OUT)
EARLIER = job_trail(COMPUTED, INPUT, OUTPUT, T0, principal=ALICE)
LATER = reused_trail(REUSED, INPUT, EARLIER, T0 + timedelta(minutes=1), principal=BOB)
NOW = T0 + timedelta(hours=1)


def _erasure(job_id: str, *objects: ErasedObject, principal: str = ALICE) -> Step:
    event = JobErased(job_id=job_id, principal=principal, objects=list(objects))
    return envelope_for(event, "upload", T0 + timedelta(minutes=5)), event


def _object(role: str, image: ImageRef, kept_because: str | None = None) -> ErasedObject:
    return ErasedObject.model_validate(
        {
            "role": role,
            "bucket": image.bucket,
            "key": image.key,
            "sha256": image.sha256,
            "deleted": kept_because is None,
            "kept_because": kept_because,
        }
    )


# The computed job erased alone: its output and input deleted.
ERASED_ALONE = _erasure(COMPUTED, _object("output", OUTPUT), _object("input", INPUT))
# Erased while another job reused its output: both kept.
ERASED_SHARED = _erasure(
    COMPUTED,
    _object("output", OUTPUT, "used by 1 other job"),
    _object("input", INPUT, "used by 1 other job"),
)


@dataclass
class _Settings:
    s3_input_bucket: str = "imagemesh-input"
    s3_output_bucket: str = "imagemesh-output"


class _Docs:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self._docs = docs

    async def all_job_documents(self) -> AsyncIterator[dict[str, Any]]:
        for doc in self._docs:
            yield doc


class _Objects:
    """A store holding `stored` (bucket, key) objects: what the audit lists."""

    def __init__(self, *stored: ImageRef) -> None:
        self._stored = stored

    async def objects(self, bucket: str, prefix: str = "") -> AsyncIterator[StoredObject]:
        for image in self._stored:
            if image.bucket == bucket:
                yield StoredObject(image.bucket, image.key, image.bytes)

    async def metadata(self, bucket: str, key: str) -> dict[str, str]:
        return {}


async def _audit(steps: list[Step], *stored: ImageRef) -> Any:
    return await audit(
        _Docs(documents(steps)),  # type: ignore[arg-type]
        _Objects(*stored),  # type: ignore[arg-type]
        _Settings(),  # type: ignore[arg-type]
        grace=60,
        now=NOW,
    )


async def test_an_output_an_erasure_deleted_is_accounted_for_not_missing() -> None:
    report = await _audit([*EARLIER, ERASED_ALONE])  # S3 has neither object any more
    assert report.gaps == []
    assert report.erased_objects == 1
    assert report.jobs == {"succeeded": 1}
    assert "erased objects: 1" in report.summary()
    # Without the erasure, the same S3 is a gap.
    (gap,) = (await _audit(EARLIER)).gaps
    assert (gap.kind, gap.subject) == ("missing_output", OUTPUT.uri)


async def test_an_object_an_erasure_kept_is_still_checked() -> None:
    report = await _audit([*EARLIER, *LATER, ERASED_SHARED], OUTPUT, INPUT)
    assert (report.gaps, report.erased_objects) == ([], 0)
    (gap,) = (await _audit([*EARLIER, *LATER, ERASED_SHARED], INPUT)).gaps
    assert (gap.kind, gap.subject) == ("missing_output", OUTPUT.uri)


async def test_objects_kept_for_a_job_erased_meanwhile_are_listed_as_erased_but_stored() -> None:
    """Both users erased, each keeping the objects for the other (at once, on two
    replicas): S3 still has the pixels, which the audit lists for an operator."""
    later_erased = _erasure(REUSED, _object("output", OUTPUT, "used by 1 other job"))
    steps = [*EARLIER, *LATER, ERASED_SHARED, later_erased]
    report = await _audit(steps, OUTPUT, INPUT)
    assert report.gaps == []
    assert sorted(report.erased_but_stored) == sorted([OUTPUT.uri, INPUT.uri])
    assert f"erased but stored: {OUTPUT.uri}" in report.summary()
    # While one of them is not erased, nothing is listed.
    assert (await _audit([*EARLIER, *LATER, ERASED_SHARED], OUTPUT, INPUT)).erased_but_stored == []


def test_an_erasure_is_one_step_and_only_of_a_finished_job() -> None:
    report, _ = audit_documents(documents([*EARLIER, ERASED_ALONE]), now=NOW, grace=60)
    assert report.gaps == []
    unfinished = [step for step in EARLIER if step[1].type != "image.processed"]
    report, _ = audit_documents(documents([*unfinished, ERASED_ALONE]), now=NOW, grace=1e9)
    assert [(gap.subject, gap.detail) for gap in report.gaps] == [
        (COMPUTED, "erased while processing")
    ]


def test_the_status_keeps_its_outcome_and_says_who_erased_it_when() -> None:
    job = fold_status(COMPUTED, documents([*EARLIER, ERASED_ALONE]))
    assert job is not None
    assert (job["status"], job["erased_by"]) == ("succeeded", ALICE)
    assert job["erased_at"] == "2026-12-02T07:35:00.000000Z"
    assert job["output"]["sha256"] == OUT  # the record stays


def test_the_prov_document_invalidates_the_deleted_images_and_keeps_their_record() -> None:
    merged = merge_prov([doc["prov"] for doc in documents([*EARLIER, ERASED_ALONE])])
    document = valid_prov(merged)
    envelope, _ = ERASED_ALONE
    activity = document.get_record(f"imagemesh:event/{envelope.id}")[0]
    assert extra(activity, "prov:type") == ["job.erased"]
    assert extra(activity, "imagemesh:principal") == [ALICE]
    invalidated = {
        (
            named(formal(r, PROV_ATTR_ENTITY), "sha256"),
            named(formal(r, PROV_ATTR_ACTIVITY), "imagemesh"),
        )
        for r in records(document, ProvInvalidation)
    }
    assert invalidated == {(IN, f"event/{envelope.id}"), (OUT, f"event/{envelope.id}")}
    output = merged["entity"][f"sha256:{OUT}"]
    assert output["imagemesh:erased"] is True
    assert output["imagemesh:erased_location"] == OUTPUT.uri
    assert output["prov:location"] == OUTPUT.uri  # where it was: the record stays
    assert output["imagemesh:bytes"] == OUTPUT.bytes


def test_an_image_kept_because_shared_is_not_invalidated() -> None:
    merged = merge_prov([doc["prov"] for doc in documents([*EARLIER, ERASED_SHARED])])
    valid_prov(merged)
    assert "wasInvalidatedBy" not in merged
    assert "imagemesh:erased" not in merged["entity"][f"sha256:{OUT}"]


# --------------------------------------------------------------------------- job-objects


@pytest.fixture
async def store(writer_store: OpenStore) -> AsyncIterator[ProvenanceStore]:
    async with writer_store("erase-test") as opened:
        steps = [*EARLIER, *LATER]
        assert await opened.record_all(documents(steps)) == [True] * len(steps)
        yield opened


def _uses(found: Any) -> dict[str, tuple[str, list[str]]]:
    return {use.role: (use.key, use.used_by) for use in found.objects}


@pytest.mark.integration
async def test_job_objects_names_the_other_jobs_using_each_object(store: ProvenanceStore) -> None:
    found = await job_objects(store, COMPUTED)
    assert found.found
    assert _uses(found) == {
        "input": (INPUT.key, [REUSED]),  # another principal's job of the same bytes
        "output": (OUTPUT.key, [REUSED]),  # which reused the output
        "thumbnail": (f"thumbnails/{OUT}.webp", [REUSED]),
    }
    assert found.engine is not None  # what the computation's index entry is keyed by
    reused = await job_objects(store, REUSED)
    assert reused.reuse_key is not None
    assert _uses(reused)["output"] == (OUTPUT.key, [COMPUTED])
    assert not (await job_objects(store, _job("unknown"))).found


@pytest.mark.integration
async def test_an_erased_job_uses_nothing_any_more(store: ProvenanceStore) -> None:
    erased = _erasure(REUSED, _object("output", OUTPUT, "used by 1 other job"), principal=BOB)
    assert await store.record_all(documents([erased])) == [True]
    uses = _uses(await job_objects(store, COMPUTED))
    assert {role: users for role, (_, users) in uses.items()} == {
        "input": [],
        "output": [],
        "thumbnail": [],
    }
