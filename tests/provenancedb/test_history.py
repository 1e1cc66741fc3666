"""History, per-owner reads and job counts, from the job summaries on the real server:
owner filtering of the jobs RPC, the status filter as one read of an index (measured with
10 000 jobs), the summaries' monotonic merge under redelivery, reordering and concurrent
writers, and the counts upload's per-principal cap reads."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import aiohttp
import pytest
from prometheus_client import REGISTRY

from messaging import RpcError, RpcMessage, topology
from messaging.events import (
    CancelRequested,
    ErrorInfo,
    ImageUploaded,
    JobCancelled,
    JobFailed,
    ProcessingStarted,
)
from messaging.jobs import JOB_STATUSES, STATUS_EVENTS, fold_status, rfc3339
from messaging.queries import JobStatus
from messaging.rpc import rpc_handler
from provenancedb.app import Recorder
from provenancedb.history import decode_cursor
from provenancedb.migrate import SUMMARIES_MARK, migrate
from provenancedb.settings import MigrateSettings, Settings
from provenancedb.store import ProvenanceStore, open_store
from provenancedb.summaries import summary_id
from tests.conftest import couch, settings_from
from tests.provenancedb.conftest import OpenStore, provisioned_store
from tests.provenancedb.test_documents import (
    documents,
    envelope_for,
    failed_trail,
    input_ref,
    intake,
    job_trail,
    output_ref,
    sha,
)

pytestmark = pytest.mark.integration

ALICE, BOB = "alice@example.org", "bob"
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def _job(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"imagemesh-test/history/{name}"))


@pytest.fixture
async def store(writer_store: OpenStore) -> AsyncIterator[ProvenanceStore]:
    async with writer_store("history-test") as opened:
        yield opened


def _trail(name: str, status: str, owner: str, minute: int) -> list[dict[str, Any]]:
    """The documents of a job that reached `status`, created at T0 + `minute`."""
    job_id, at = _job(name), T0 + timedelta(minutes=minute)
    source = input_ref(sha(f"history/{name}"))
    if status == "succeeded":
        output = output_ref(job_id, sha(f"out/{name}"))
        return documents(job_trail(job_id, source, output, at, principal=owner))
    if status == "failed":
        return documents(failed_trail(job_id, source, at, "undecodable", principal=owner))
    steps = intake(job_id, source, at, principal=owner)
    if status == "cancelled":
        asked = CancelRequested(job_id=job_id, principal=owner)
        done = JobCancelled(job_id=job_id, principal=owner, input=source, pipeline=[])
        later = at + timedelta(seconds=1)
        steps += [
            (envelope_for(asked, "upload", later), asked),
            (envelope_for(done, "imageproc_runner", later, cause=steps[-1][0]), done),
        ]
    if status == "processing":
        full = job_trail(job_id, source, output_ref(job_id, sha("x")), at, principal=owner)
        steps = full[:3]  # intake and processing.started
    return documents(steps)


async def _jobs(recorder: Recorder, **meta: Any) -> dict[str, Any]:
    return (
        await rpc_handler(topology.PROVENANCE_JOBS, recorder.on_jobs_request)(
            RpcMessage({"limit": 20} | meta)
        )
    ).meta


def _ids(page: dict[str, Any]) -> list[str]:
    return [job["id"] for job in page["jobs"]]


@pytest.fixture
async def two_owners(store: ProvenanceStore) -> Recorder:
    """Alice: a queued, a processing, a succeeded, a failed and a cancelled job; Bob: a
    queued, a succeeded and a failed one, created interleaved with Alice's."""
    plan = [
        ("a-queued", "queued", ALICE),
        ("b-queued", "queued", BOB),
        ("a-processing", "processing", ALICE),
        ("a-succeeded", "succeeded", ALICE),
        ("b-succeeded", "succeeded", BOB),
        ("a-failed", "failed", ALICE),
        ("b-failed", "failed", BOB),
        ("a-cancelled", "cancelled", ALICE),
    ]
    for minute, (name, status, owner) in enumerate(plan):
        await store.record_all(_trail(name, status, owner, minute))
    return Recorder(store)


# --------------------------------------------------------------------------- owners


async def test_history_lists_only_the_owners_jobs_and_everyones_without_an_owner(
    two_owners: Recorder,
) -> None:
    alice = await _jobs(two_owners, owner=ALICE)
    assert _ids(alice) == [
        _job(n) for n in ("a-cancelled", "a-failed", "a-succeeded", "a-processing", "a-queued")
    ]
    assert {job["owner"] for job in alice["jobs"]} == {ALICE}
    assert _ids(await _jobs(two_owners, owner=BOB)) == [
        _job(n) for n in ("b-failed", "b-succeeded", "b-queued")
    ]
    assert _ids(await _jobs(two_owners, owner="carol")) == []
    everyone = await _jobs(two_owners)  # an auditor's history: owner absent
    assert len(everyone["jobs"]) == 8
    assert _ids(await _jobs(two_owners, owner=None)) == _ids(everyone)


async def test_history_filters_by_status_and_owner_together(two_owners: Recorder) -> None:
    for status in JOB_STATUSES:
        page = await _jobs(two_owners, owner=ALICE, status=status)
        assert _ids(page) == [_job(f"a-{status}")], status
        assert page["jobs"][0]["status"] == status
    assert _ids(await _jobs(two_owners, owner=BOB, status="processing")) == []
    assert _ids(await _jobs(two_owners, status="succeeded")) == [
        _job("b-succeeded"),
        _job("a-succeeded"),
    ]


async def test_each_history_job_is_what_the_job_status_rpc_answers(
    two_owners: Recorder, store: ProvenanceStore
) -> None:
    for job in (await _jobs(two_owners))["jobs"]:
        answer = (
            await rpc_handler(topology.PROVENANCE_JOB_STATUS, two_owners.on_status_request)(
                RpcMessage({"job_id": job["id"]})
            )
        ).meta
        assert answer["job"] == job
        assert fold_status(job["id"], await store.job_documents(job["id"])) == job


async def test_job_status_names_the_owner(two_owners: Recorder) -> None:
    for name, owner in (("a-succeeded", ALICE), ("b-queued", BOB)):
        answer = (
            await rpc_handler(topology.PROVENANCE_JOB_STATUS, two_owners.on_status_request)(
                RpcMessage({"job_id": _job(name)})
            )
        ).meta
        assert answer["found"] is True
        assert answer["job"]["owner"] == owner


async def test_job_counts_are_per_owner_and_status(two_owners: Recorder) -> None:
    async def counts(owner: str) -> dict[str, Any]:
        return (
            await rpc_handler(topology.PROVENANCE_JOB_COUNTS, two_owners.on_job_counts_request)(
                RpcMessage({"owner": owner})
            )
        ).meta

    assert await counts(ALICE) == {
        "queued": 1,
        "processing": 1,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 1,
    }
    assert await counts(BOB) == {
        "queued": 1,
        "processing": 0,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 0,
    }
    assert await counts("carol") == dict.fromkeys(JOB_STATUSES, 0)


async def test_a_job_counts_as_queued_until_it_starts(store: ProvenanceStore) -> None:
    recorder = Recorder(store)
    docs = _trail("waiting", "processing", ALICE, 0)
    await store.record_all(docs[:2])
    answer = await rpc_handler(topology.PROVENANCE_JOB_COUNTS, recorder.on_job_counts_request)(
        RpcMessage({"owner": ALICE})
    )
    assert answer.meta["queued"] == 1
    await store.record(docs[2])  # processing.started
    answer = await rpc_handler(topology.PROVENANCE_JOB_COUNTS, recorder.on_job_counts_request)(
        RpcMessage({"owner": ALICE})
    )
    assert (answer.meta["queued"], answer.meta["processing"]) == (0, 1)


@pytest.mark.parametrize(
    ("handler", "meta"),
    [
        ("jobs", {"limit": 20, "owner": "not a principal!"}),
        ("jobs", {"limit": 20, "owner": 7}),
        ("jobs", {"limit": 20, "status": "paused"}),
        ("jobs", {"limit": "20"}),
        ("jobs", {"limit": 0}),
        ("jobs", {"status": "queued"}),
        ("jobs", {"limit": 20, "mine": True}),
        ("jobs", {"limit": 20, "before": "not-a-cursor"}),
        ("counts", {}),
        ("counts", {"owner": None}),
        ("counts", {"owner": "-x"}),
        ("lineage", {"sha256": "ab"}),
        ("lineage", {"sha256": sha("x"), "owner": ""}),
    ],
)
async def test_requests_that_are_not_what_the_contract_says_are_bad_requests(
    store: ProvenanceStore, handler: str, meta: dict[str, Any]
) -> None:
    recorder = Recorder(store)
    call: dict[str, Callable[[RpcMessage], Awaitable[RpcMessage]]] = {
        "jobs": rpc_handler(topology.PROVENANCE_JOBS, recorder.on_jobs_request),
        "counts": rpc_handler(topology.PROVENANCE_JOB_COUNTS, recorder.on_job_counts_request),
        "lineage": rpc_handler(topology.PROVENANCE_LINEAGE, recorder.on_lineage_request),
    }
    with pytest.raises(RpcError) as refused:
        await call[handler](RpcMessage(meta))
    assert refused.value.code == "bad_request"


async def test_todays_callers_requests_still_work(two_owners: Recorder) -> None:
    # What upload sent before owners existed: status and before as null.
    page = await _jobs(two_owners, status=None, before=None)
    assert len(page["jobs"]) == 8


async def test_every_history_page_and_count_is_one_request(
    two_owners: Recorder, store: ProvenanceStore, test_env: dict[str, str]
) -> None:
    requests = Requests()
    async with counted_store(test_env, store._db.id, requests) as counted:
        recorder = Recorder(counted)
        for meta in (
            {},
            {"owner": ALICE},
            {"status": "failed"},
            {"owner": BOB, "status": "queued"},
        ):
            requests.paths.clear()
            assert (await _jobs(recorder, **meta))["jobs"]
            assert requests.paths == [f"/{store._db.id}/_design/provenance/_view/jobs"], meta
        requests.paths.clear()
        await rpc_handler(topology.PROVENANCE_JOB_COUNTS, recorder.on_job_counts_request)(
            RpcMessage({"owner": ALICE})
        )
        assert requests.paths == [f"/{store._db.id}/_design/provenance/_view/jobs"]


def test_the_statuses_a_request_may_name_are_the_folds() -> None:
    assert get_args(JobStatus) == JOB_STATUSES


# --------------------------------------------------------------------------- paging


async def test_a_status_filtered_history_pages_with_a_cursor(store: ProvenanceStore) -> None:
    names = [f"q{n}" for n in range(5)]
    for minute, name in enumerate(names):
        await store.record_all(_trail(name, "queued", ALICE, minute))
        await store.record_all(_trail(f"s{minute}", "succeeded", ALICE, minute))
    recorder, seen, before = Recorder(store), [], None
    pages = 0
    for _ in range(5):
        page = await _jobs(recorder, owner=ALICE, status="queued", limit=2, before=before)
        pages += 1
        seen += _ids(page)
        before = page["next"]
        if before is None:
            break
        assert decode_cursor(before)[1] == seen[-1]
    assert pages == 3
    assert seen == [_job(name) for name in reversed(names)]


# --------------------------------------------------------------------------- summaries


async def _summary(store: ProvenanceStore, job_id: str) -> dict[str, Any]:
    found = await store.summaries([job_id])
    return found[job_id]


async def test_the_summary_never_moves_back_under_redelivery_and_reordering(
    store: ProvenanceStore,
) -> None:
    docs = _trail("reordered", "succeeded", ALICE, 0)
    job_id = _job("reordered")
    # The last steps first, then everything again (a redelivery), the intake last.
    for doc in reversed(docs):
        await store.record(doc)
        await store.record(doc)
    summary = await _summary(store, job_id)
    assert (summary["status"], summary["rank"], summary["owner"]) == ("succeeded", 2, ALICE)
    job = fold_status(job_id, await store.job_documents(job_id))
    assert job is not None
    assert summary["created_at"] == job["created_at"]
    assert summary["updated_at"] == job["updated_at"]
    before = summary["_rev"]
    await store.record_all(docs)  # the whole trail redelivered: nothing to change
    assert (await _summary(store, job_id))["_rev"] == before
    # A later attempt's start, seen after the job finished, does not reopen it.
    started = ProcessingStarted(
        job_id=job_id, input=input_ref(sha("history/reordered")), pipeline=[], attempt=2
    )
    late = {
        "_id": str(uuid.uuid4()),
        "type": started.type,
        "job_id": job_id,
        "time": rfc3339(T0 - timedelta(minutes=1)),
        "data": started.model_dump(mode="json"),
    }
    await store.record(late)
    assert (await _summary(store, job_id))["status"] == "succeeded"
    page = await _jobs(Recorder(store), owner=ALICE, status="succeeded")
    assert _ids(page) == [job_id]
    assert _ids(await _jobs(Recorder(store), owner=ALICE, status="processing")) == []


async def test_a_job_seen_before_its_upload_is_listed_once_its_owner_is_known(
    store: ProvenanceStore,
) -> None:
    docs = _trail("early", "failed", BOB, 0)
    await store.record(docs[-1])  # job.failed, before the intake
    assert _ids(await _jobs(Recorder(store), owner=BOB)) == []
    summary = await _summary(store, _job("early"))
    assert (summary["status"], summary["owner"]) == ("failed", None)
    await store.record_all(docs[:-1])
    assert _ids(await _jobs(Recorder(store), owner=BOB, status="failed")) == [_job("early")]


async def test_concurrent_writers_merge_their_summaries(test_env: dict[str, str]) -> None:
    """Two provenancedb replicas record the events of the same jobs at the same time; each
    loses races to the other (409 on the summary) and merges again."""
    async with provisioned_store(test_env, "history-replicas") as first:
        settings: Settings = settings_from({**test_env, "COUCHDB_DB": first._db.id}, Settings)
        async with open_store(settings, settings.login()) as second:
            retries_before = _count("job_summary")
            names = [f"r{n}" for n in range(12)]
            trails = {name: _trail(name, "succeeded", ALICE, n) for n, name in enumerate(names)}
            for trail in trails.values():
                await first.record_all(trail[:2])  # the intake, as upload records it

            async def replica(store: ProvenanceStore, steps: slice) -> None:
                # Its share of each job's events, all jobs at once.
                await asyncio.gather(
                    *(store.record(doc) for trail in trails.values() for doc in trail[steps])
                )

            # The second replica never saw these jobs: its summaries conflict with the
            # first's; the first's then conflict with the second's.
            await asyncio.gather(replica(second, slice(2, 3)), replica(first, slice(3, None)))
            assert _count("job_summary") > retries_before, "no summary conflict was merged"
            for name, trail in trails.items():
                summary = await _summary(first, _job(name))
                expected = {d["_id"] for d in trail if d["type"] in STATUS_EVENTS}
                assert set(summary["records"]) == expected, name
                assert summary["status"] == "succeeded"
            counts = await first.job_counts(ALICE)
            assert counts == dict.fromkeys(JOB_STATUSES, 0) | {"succeeded": 12}


def _count(operation: str) -> float:
    labels = {"operation": operation, "outcome": "ok"}
    value = REGISTRY.get_sample_value("imagemesh_couchdb_request_seconds_count", labels)
    return value or 0.0


# --------------------------------------------------------------------------- at scale

JOBS = 10_000
BATCH = 1_000
PAGES = 20
P95_SECONDS = 0.3
ROUNDS = 3
"""A round whose p95 misses the target is measured again (at most this many): two cores
shared with other test runs and PouchDB Server's single thread make a slow round now and
then; the index either answers in time in a quiet round or it does not."""


class Requests:
    """Counts the HTTP requests a store makes (an aiohttp client middleware)."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        self.paths.append(request.url.path)
        return await handler(request)


@asynccontextmanager
async def counted_store(
    test_env: dict[str, str], db: str, requests: Requests
) -> AsyncIterator[ProvenanceStore]:
    settings: Settings = settings_from({**test_env, "COUCHDB_DB": db}, Settings)
    async with open_store(settings, settings.login(), (requests,)) as opened:
        yield opened


def _minimal_events(n: int, owner: str) -> list[dict[str, Any]]:
    """A job's status events, flat, without their PROV view: queued, processing or failed
    in turn (what the history indexes; the rest of a trail does not matter to it)."""
    job_id, at = f"bench-{n:05d}", T0 + timedelta(seconds=n)
    source = input_ref(sha(f"bench/{n}"))
    events: list[Any] = [
        ImageUploaded(job_id=job_id, input=source, pipeline=[], created_at=at, principal=owner)
    ]
    if n % 3 >= 1:
        events.append(ProcessingStarted(job_id=job_id, input=source, pipeline=[], attempt=1))
    if n % 3 == 2:
        events.append(
            JobFailed(job_id=job_id, error=ErrorInfo(code="timeout", message="t"), attempt=1)
        )
    return [
        {
            "_id": f"{job_id}/{k}",
            "type": event.type,
            "job_id": job_id,
            "time": rfc3339(at + timedelta(milliseconds=k)),
            "service": "bench",
            "data": event.model_dump(mode="json"),
        }
        for k, event in enumerate(events)
    ]


async def test_a_status_filtered_page_of_10000_jobs_is_one_index_read_under_300_ms(
    test_env: dict[str, str],
) -> None:
    requests = Requests()
    async with provisioned_store(test_env, "history-scale") as loader:
        owners = [ALICE, BOB, "carol", "dave"]
        for start in range(0, JOBS, BATCH):
            # The real write path: events and their jobs' new summaries in one _bulk_docs.
            docs = [
                doc
                for n in range(start, start + BATCH)
                for doc in _minimal_events(n, owners[n % len(owners)])
            ]
            assert all(await loader.record_all(docs))
            # As in service, the index follows the writes (each read brings it up to date).
            await loader.job_counts(ALICE)
        async with counted_store(test_env, loader._db.id, requests) as store:
            recorder = Recorder(store)
            # The first query brings the index up to date with 10 000 new jobs (once).
            await asyncio.wait_for(_jobs(recorder, status="failed", limit=1), timeout=240)
            assert (await store.job_counts(ALICE))["queued"] == len(
                [n for n in range(JOBS) if n % 4 == 0 and n % 3 == 0]
            )
            queries: list[dict[str, Any]] = []
            for n in range(PAGES):
                status: JobStatus = ("queued", "processing", "failed")[n % 3]
                queries.append({"status": status, "owner": owners[n % 4], "limit": 50})
            queries[-1] = {"status": "failed", "limit": 100}  # an auditor's biggest page
            rounds = []
            for _round in range(ROUNDS):
                rounds.append(await _measure(recorder, store, requests, queries))
                if _p95(rounds[-1]) < P95_SECONDS:
                    break
    best = min(rounds, key=_p95)
    print(f"history pages, ms per round: {[[round(s * 1000) for s in sorted(r)] for r in rounds]}")
    assert _p95(best) < P95_SECONDS, (
        f"history p95 {_p95(best) * 1000:.0f} ms with {JOBS} jobs (target "
        f"{P95_SECONDS * 1000:.0f} ms) in each of {len(rounds)} rounds of {PAGES} pages; "
        f"ms: {[[round(s * 1000) for s in sorted(r)] for r in rounds]}"
    )


async def _measure(
    recorder: Recorder, store: ProvenanceStore, requests: Requests, queries: list[dict[str, Any]]
) -> list[float]:
    """Each query's time, checking each page: its filter, its order, one index read."""
    seconds: list[float] = []
    before = None
    for n, meta in enumerate(queries):
        if n == 5:  # one page further on, by cursor
            meta = queries[4] | {"before": before}
        requests.paths.clear()
        started = time.perf_counter()
        page = await _jobs(recorder, **meta)
        seconds.append(time.perf_counter() - started)
        assert len(page["jobs"]) == meta["limit"]
        assert {job["status"] for job in page["jobs"]} == {meta["status"]}
        if "owner" in meta:
            assert {job["owner"] for job in page["jobs"]} == {meta["owner"]}
        created = [job["created_at"] for job in page["jobs"]]
        assert created == sorted(created, reverse=True)
        assert requests.paths == [f"/{store._db.id}/_design/provenance/_view/jobs"], (
            "a history page must be one read of the jobs index"
        )
        before = page["next"]
    return seconds


def _p95(seconds: list[float]) -> float:
    return sorted(seconds)[round(0.95 * len(seconds)) - 1]


# --------------------------------------------------------------------------- migrate


async def test_migrate_backfills_the_summaries_of_jobs_recorded_before_them(
    store: ProvenanceStore, test_env: dict[str, str]
) -> None:
    db = store._db.id
    for minute, (name, status, owner) in enumerate(
        [("old-1", "succeeded", ALICE), ("old-2", "queued", BOB), ("old-3", "failed", ALICE)]
    ):
        await store.record_all(_trail(name, status, owner, minute))
    # As an older provenancedb left them: events without summaries, and no mark of a
    # finished backfill (an older migrate wrote none).
    for name in ("old-1", "old-2", "old-3"):
        doc = couch(test_env, "GET", f"/{db}/{summary_id(_job(name))}")
        couch(test_env, "DELETE", f"/{db}/{summary_id(_job(name))}?rev={doc['_rev']}")
    mark = couch(test_env, "GET", f"/{db}/{SUMMARIES_MARK}")
    couch(test_env, "DELETE", f"/{db}/{SUMMARIES_MARK}?rev={mark['_rev']}")
    assert _ids(await _jobs(Recorder(store))) == []
    assert await store.missing_summaries() == 3

    env = {**test_env, "COUCHDB_DB": db}
    changes = await migrate(settings_from(env, MigrateSettings))
    assert f"{db}: 3 job summaries backfilled" in changes
    assert await store.missing_summaries() == 0
    assert _ids(await _jobs(Recorder(store), owner=ALICE)) == [_job("old-3"), _job("old-1")]
    assert _ids(await _jobs(Recorder(store), status="queued")) == [_job("old-2")]
    again = await migrate(settings_from(env, MigrateSettings))
    assert not any("backfilled" in change for change in again)
    # Marked done: a later migrate reads no view at all (it would index the whole database).
    assert couch(test_env, "GET", f"/{db}/{SUMMARIES_MARK}")["done"] is True
