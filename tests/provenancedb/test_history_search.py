"""History search on the real server: a prefix of a job's id, of its file name or of a word
of that name finds it, only among the caller's jobs (an auditor's: everyone's), with the
status filter and the history's cursor, in two bounded reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from messaging import RpcMessage, topology
from messaging.events import ImageUploaded, UploadReceived
from messaging.rpc import rpc_handler
from provenancedb.app import Recorder
from provenancedb.store import ProvenanceStore
from tests.provenancedb.conftest import OpenStore
from tests.provenancedb.test_documents import (
    documents,
    failed_trail,
    input_ref,
    job_trail,
    output_ref,
    sha,
)
from tests.provenancedb.test_history import ALICE, BOB, T0, Requests, _job, counted_store

pytestmark = pytest.mark.integration

PLAN = [
    ("a-holiday", "Holiday Beach_2024.JPG", "succeeded", ALICE),
    ("a-holiday-fail", "holiday-night.png", "failed", ALICE),
    ("a-cat", "cat.jpg", "succeeded", ALICE),
    ("b-holiday", "holiday.jpg", "succeeded", BOB),
]


def _named(name: str, filename: str, status: str, owner: str, minute: int) -> list[dict[str, Any]]:
    job_id, at = _job(f"search/{name}"), T0 + timedelta(minutes=minute)
    source = input_ref(sha(f"search/{name}"))
    if status == "failed":
        steps = failed_trail(job_id, source, at, "undecodable", principal=owner)
    else:
        steps = job_trail(job_id, source, output_ref(job_id, sha(f"o/{name}")), at, principal=owner)
    renamed = [
        (envelope, event.model_copy(update={"filename": filename}))
        if isinstance(event, UploadReceived | ImageUploaded)
        else (envelope, event)
        for envelope, event in steps
    ]
    return documents(renamed)


@pytest.fixture
async def store(writer_store: OpenStore) -> AsyncIterator[ProvenanceStore]:
    async with writer_store("history-search") as opened:
        for minute, (name, filename, status, owner) in enumerate(PLAN):
            await opened.record_all(_named(name, filename, status, owner, minute))
        yield opened


async def _search(store: ProvenanceStore, **meta: Any) -> list[str]:
    reply = await rpc_handler(topology.PROVENANCE_JOBS, Recorder(store).on_jobs_request)(
        RpcMessage({"limit": 20} | meta)
    )
    return [job["id"] for job in reply.meta["jobs"]]


def _ids(*names: str) -> list[str]:
    return [_job(f"search/{name}") for name in names]


async def test_a_word_or_name_prefix_finds_only_the_owners_jobs_newest_first(
    store: ProvenanceStore,
) -> None:
    assert await _search(store, owner=ALICE, search="holi") == _ids("a-holiday-fail", "a-holiday")
    assert await _search(store, owner=ALICE, search="BEACH") == _ids("a-holiday")
    assert await _search(store, owner=ALICE, search="2024") == _ids("a-holiday")
    assert await _search(store, owner=ALICE, search="holiday beach_2") == _ids("a-holiday")
    assert await _search(store, owner=ALICE, search="oliday") == []  # prefixes only
    assert await _search(store, owner=BOB, search="holiday") == _ids("b-holiday")
    assert await _search(store, owner="carol", search="holiday") == []
    # An auditor (no owner) finds everyone's.
    assert await _search(store, search="holiday") == _ids(
        "b-holiday", "a-holiday-fail", "a-holiday"
    )


async def test_a_job_id_prefix_finds_the_job_of_its_owner_only(store: ProvenanceStore) -> None:
    job_id = _job("search/a-cat")
    assert await _search(store, owner=ALICE, search=job_id[:8].upper()) == [job_id]
    assert await _search(store, owner=ALICE, search=job_id) == [job_id]
    assert await _search(store, owner=BOB, search=job_id[:8]) == []


async def test_search_with_a_status_and_a_cursor(store: ProvenanceStore) -> None:
    assert await _search(store, owner=ALICE, search="holiday", status="failed") == _ids(
        "a-holiday-fail"
    )
    recorder = rpc_handler(topology.PROVENANCE_JOBS, Recorder(store).on_jobs_request)
    first = (await recorder(RpcMessage({"limit": 1, "search": "holiday"}))).meta
    assert [job["id"] for job in first["jobs"]] == _ids("b-holiday")
    second = (
        await recorder(RpcMessage({"limit": 5, "search": "holiday", "before": first["next"]}))
    ).meta
    assert [job["id"] for job in second["jobs"]] == _ids("a-holiday-fail", "a-holiday")
    assert second["next"] is None


async def test_a_search_is_two_reads_whatever_it_finds(
    store: ProvenanceStore, test_env: dict[str, str]
) -> None:
    requests = Requests()
    async with counted_store(test_env, store._db.id, requests) as counted:
        assert await _search(counted, owner=ALICE, search="holiday")
        assert requests.paths == [
            f"/{store._db.id}/_design/provenance/_view/job_search",
            f"/{store._db.id}/_all_docs",
        ]
