"""provenancedb's store against the real CouchDB-compatible server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from provenancedb.settings import Settings
from provenancedb.store import DESIGN_VIEWS, ProvenanceStore, open_store
from tests.conftest import couch, settings_from

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(test_env: dict[str, str]) -> AsyncIterator[ProvenanceStore]:
    db = f"store-test-{uuid.uuid4().hex[:8]}"
    settings: Settings = settings_from({**test_env, "COUCHDB_DB": db}, Settings)
    async with open_store(settings) as opened:
        yield opened
    couch(test_env, "DELETE", f"/{db}")


def _doc(doc_id: str, job_id: str, time: str) -> dict[str, object]:
    return {"_id": doc_id, "type": "image.uploaded", "job_id": job_id, "time": time, "service": "t"}


async def test_a_redelivered_event_writes_no_second_document(store: ProvenanceStore) -> None:
    assert await store.record(_doc("e1", "job-a", "2026-01-01T00:00:00Z")) is True
    assert await store.record(_doc("e1", "job-a", "2026-01-01T00:00:09Z")) is False
    docs = await store.job_documents("job-a")
    assert [d["_id"] for d in docs] == ["e1"]
    assert docs[0]["time"] == "2026-01-01T00:00:00Z"


async def test_timeline_is_one_jobs_documents_in_time_order(store: ProvenanceStore) -> None:
    await store.record(_doc("late", "job-b", "2026-01-01T00:00:05Z"))
    await store.record(_doc("early", "job-b", "2026-01-01T00:00:01Z"))
    await store.record(_doc("other", "job-bb", "2026-01-01T00:00:02Z"))
    assert [d["_id"] for d in await store.job_documents("job-b")] == ["early", "late"]


async def test_design_document_install_is_idempotent(
    store: ProvenanceStore, test_env: dict[str, str]
) -> None:
    await store.install_design()
    await store.install_design()
    db = store._db.id
    ddoc = couch(test_env, "GET", f"/{db}/_design/provenance")
    assert ddoc["views"] == DESIGN_VIEWS
    assert ddoc["_rev"].startswith("1-")
