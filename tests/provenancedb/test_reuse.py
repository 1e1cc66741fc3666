"""A job that reused an earlier job's output (reuse): its trail is complete for
the audit, and lineage shows its output, derived from its input, to its own owner."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prov.model import (
    PROV_ATTR_ACTIVITY,
    PROV_ATTR_ENTITY,
    PROV_ATTR_GENERATED_ENTITY,
    PROV_ATTR_INFORMANT,
    PROV_ATTR_USED_ENTITY,
    ProvCommunication,
    ProvDerivation,
    ProvGeneration,
    ProvUsage,
)

from messaging.events import ImageReused
from messaging.jobs import fold_status
from provenancedb.audit import audit_documents
from provenancedb.documents import to_document
from provenancedb.lineage import image_lineage
from provenancedb.provview import merge_prov
from provenancedb.store import ProvenanceStore
from tests.provenancedb import test_documents as docs
from tests.provenancedb.conftest import OpenStore
from tests.provenancedb.test_documents import (
    documents,
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

T0 = datetime(2026, 3, 14, 9, 26, 53, 589_000, tzinfo=UTC)
ALICE, BOB = "alice@example.org", "bob"
IN, OUT = sha("reuse/in"), sha("reuse/out")


def _job(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"imagemesh-test/reuse/{name}"))


COMPUTED, REUSED = _job("computed"), _job("reused")
EARLIER = job_trail(COMPUTED, input_ref(IN), output_ref(COMPUTED, OUT), T0, principal=ALICE)
LATER = reused_trail(REUSED, input_ref(IN), EARLIER, T0 + timedelta(minutes=1), principal=BOB)
NOW = T0 + timedelta(hours=1)


def test_a_reused_job_has_a_complete_trail() -> None:
    report, outputs = audit_documents(documents([*EARLIER, *LATER]), now=NOW, grace=60)
    assert report.gaps == []
    assert report.jobs == {"succeeded": 2}
    assert outputs[REUSED] == outputs[COMPUTED]  # the same object


def test_a_reuse_without_its_intake_or_naming_no_succeeded_job_is_a_gap() -> None:
    report, _ = audit_documents(documents([*EARLIER, LATER[-1]]), now=NOW, grace=60)
    assert {(gap.subject, gap.detail) for gap in report.gaps} == {
        (REUSED, "no upload.received"),
        (REUSED, "no stored input"),
        (REUSED, "no image.uploaded"),
    }
    report, _ = audit_documents(documents(LATER), now=NOW, grace=60)  # the earlier job unknown
    (gap,) = report.gaps
    assert (gap.kind, gap.subject) == ("incomplete_trail", REUSED)
    assert f"reused from {COMPUTED}" in gap.detail


# --------------------------------------------------------------------------- PROV


def test_a_reuse_is_its_own_activity_and_the_output_stays_the_earlier_computations() -> None:
    e_processed = docs.TRAIL_BY_TYPE["image.processed"][0]
    envelope, event = docs.REUSED[-1]
    assert isinstance(event, ImageReused)
    document = valid_prov(to_document(envelope, event)["prov"])
    reuse, computation = f"event/{envelope.id}", f"event/{e_processed.id}"
    (derivation,) = records(document, ProvDerivation)
    assert named(formal(derivation, PROV_ATTR_GENERATED_ENTITY), "sha256") == docs.OUT
    assert named(formal(derivation, PROV_ATTR_USED_ENTITY), "sha256") == docs.IN
    assert named(formal(derivation, PROV_ATTR_ACTIVITY), "imagemesh") == computation
    (generation,) = records(document, ProvGeneration)
    assert named(formal(generation, PROV_ATTR_ACTIVITY), "imagemesh") == computation
    assert {
        (
            named(formal(r, PROV_ATTR_ACTIVITY), "imagemesh"),
            named(formal(r, PROV_ATTR_ENTITY), "sha256"),
        )
        for r in records(document, ProvUsage)
    } == {(reuse, docs.IN), (reuse, docs.OUT)}
    informants = {
        named(formal(r, PROV_ATTR_INFORMANT), "imagemesh")
        for r in records(document, ProvCommunication)
    }
    assert computation in informants
    activity = document.get_record(f"imagemesh:{reuse}")[0]
    assert extra(activity, "imagemesh:reused_from") == [docs.JOB]
    assert [str(v) for v in extra(activity, "imagemesh:computation")] == [
        f"imagemesh:{computation}"
    ]


def test_the_reusing_jobs_document_merged_with_the_earlier_one_is_valid() -> None:
    views = [to_document(e, ev)["prov"] for e, ev in [*docs.TRAIL, *docs.REUSED]]
    document = valid_prov(merge_prov(views))
    generations = {
        named(formal(r, PROV_ATTR_ENTITY), "sha256"): named(
            formal(r, PROV_ATTR_ACTIVITY), "imagemesh"
        )
        for r in records(document, ProvGeneration)
        if str(formal(r, PROV_ATTR_ENTITY)).startswith("sha256:")  # not an intermediate
    }
    # One activity generated the output, in both jobs' views: the earlier computation.
    assert generations[docs.OUT] == f"event/{docs.TRAIL_BY_TYPE['image.processed'][0].id}"


def test_a_reused_job_folds_as_succeeded_with_the_earlier_job_and_its_output() -> None:
    job = fold_status(docs.REUSER, documents(docs.REUSED))
    assert job is not None
    assert job["status"] == "succeeded"
    assert job["reused_from"] == docs.JOB
    assert job["output"]["sha256"] == docs.OUT
    assert job["output_ref"] == docs.OUTPUT.model_dump(mode="json")
    assert job["steps"] == []
    assert job["input"]["info"] == docs.INPUT_INFO
    assert "reused_from" not in (fold_status(docs.JOB, documents(docs.TRAIL)) or {})


# --------------------------------------------------------------------------- lineage


@pytest.fixture
async def store(writer_store: OpenStore) -> AsyncIterator[ProvenanceStore]:
    async with writer_store("reuse-test") as opened:
        assert await opened.record_all(documents([*EARLIER, *LATER])) == [True] * (
            len(EARLIER) + len(LATER)
        )
        yield opened


@pytest.mark.integration
async def test_the_reusing_owner_sees_its_output_derived_from_its_input(
    store: ProvenanceStore,
) -> None:
    bob = await image_lineage(store, OUT, owner=BOB)
    assert bob is not None
    assert bob["produced_by"] == [REUSED]
    assert [(a["depth"], a["sha256"], a["job_id"]) for a in bob["ancestors"]] == [(1, IN, REUSED)]
    reused = LATER[-1][1]
    assert isinstance(reused, ImageReused)
    assert bob["image"]["locations"] == [reused.output.uri]  # where the earlier job stored it
    assert (await image_lineage(store, IN, owner=BOB) or {})["descendants"][0]["job_id"] == REUSED
    alice = await image_lineage(store, OUT, owner=ALICE)
    assert alice is not None
    assert alice["produced_by"] == [COMPUTED]  # Bob's job is not Alice's to see
    everyone = await image_lineage(store, OUT)
    assert everyone is not None
    assert everyone["produced_by"] == sorted([COMPUTED, REUSED])


@pytest.mark.integration
async def test_the_reused_output_is_stored_where_the_earlier_job_stored_it(
    store: ProvenanceStore,
) -> None:
    assert sorted(await store.jobs_using(IN)) == sorted([COMPUTED, REUSED])
    rows = await store.image(OUT)
    assert {(row["role"], row["job_id"]) for row in rows} == {
        ("output", COMPUTED),
        ("output", REUSED),
    }
