"""A job that reused an earlier job's output (issue 13, point 5): its trail is complete for
the audit, and lineage shows its output, derived from its input, to its own owner."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from messaging.events import ImageReused
from provenancedb.audit import audit_documents
from provenancedb.lineage import image_lineage
from provenancedb.store import ProvenanceStore
from tests.provenancedb.conftest import OpenStore
from tests.provenancedb.test_documents import (
    documents,
    input_ref,
    job_trail,
    output_ref,
    reused_trail,
    sha,
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
        (REUSED, "no image.stored input"),
        (REUSED, "no image.uploaded"),
    }
    report, _ = audit_documents(documents(LATER), now=NOW, grace=60)  # the earlier job unknown
    (gap,) = report.gaps
    assert (gap.kind, gap.subject) == ("incomplete_trail", REUSED)
    assert f"reused from {COMPUTED}" in gap.detail


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
