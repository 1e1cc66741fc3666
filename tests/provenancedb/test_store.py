"""provenancedb's store against the real CouchDB-compatible server: writes as the writer,
the design document's views through the store and as an auditor queries them over HTTP
(Fauxton), paging through every document, and readiness: what the store says when its
database is not provisioned as this version expects."""

from __future__ import annotations

import json
import urllib.parse
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from pydantic import SecretStr

from provenancedb import queries as queries_module
from provenancedb.design import DESIGN_VIEWS, design_document
from provenancedb.migrate import migrate
from provenancedb.settings import MigrateSettings, Settings
from provenancedb.store import ProvenanceStore, StoreNotReady, open_store
from tests.conftest import auditor, couch, settings_from
from tests.provenancedb.conftest import OpenStore
from tests.provenancedb.test_documents import (
    documents,
    failed_trail,
    input_ref,
    intake,
    job_trail,
    legacy_documents,
    output_ref,
    reuploaded,
    sha,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(writer_store: OpenStore) -> AsyncIterator[ProvenanceStore]:
    async with writer_store("store-test") as opened:
        yield opened


def _doc(doc_id: str, job_id: str, time: str) -> dict[str, object]:
    return {"_id": doc_id, "type": "image.uploaded", "job_id": job_id, "time": time, "service": "t"}


def _view(
    env: dict[str, str], store: ProvenanceStore, name: str, **params: Any
) -> list[dict[str, Any]]:
    """A view as an auditor queries it over HTTP (every query value is JSON)."""
    query = urllib.parse.urlencode({key: json.dumps(value) for key, value in params.items()})
    path = f"/{store._db.id}/_design/provenance/_view/{name}?{query}"
    rows: list[dict[str, Any]] = couch(env, "GET", path, login=auditor(env))["rows"]
    return rows


def _stored(env: dict[str, str], store: ProvenanceStore, doc_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = couch(env, "GET", f"/{store._db.id}/{urllib.parse.quote(doc_id)}")
    doc.pop("_rev")
    return doc


# --------------------------------------------------------------------------- record


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


# --------------------------------------------------------------------------- readiness


def _env(test_env: dict[str, str], store: ProvenanceStore, **changes: str) -> dict[str, str]:
    return {**test_env, "COUCHDB_DB": store._db.id, **changes}


def _ddoc_path(store: ProvenanceStore) -> str:
    return f"/{store._db.id}/_design/provenance"


async def test_a_provisioned_store_is_ready_for_the_writer(
    store: ProvenanceStore, test_env: dict[str, str]
) -> None:
    assert await store.ready() is True
    ddoc = couch(test_env, "GET", _ddoc_path(store))
    assert ddoc["views"] == DESIGN_VIEWS
    assert {key: ddoc[key] for key in ("language", "views", "validate_doc_update")} == (
        design_document(test_env["COUCHDB_USER"])
    )


async def test_design_document_install_is_idempotent(
    store: ProvenanceStore, test_env: dict[str, str]
) -> None:
    env = _env(test_env, store)
    admin = settings_from(env, MigrateSettings)
    async with open_store(admin, admin.admin()) as as_admin:
        assert await as_admin.install_design() is False
        assert await as_admin.install_design() is False
    assert couch(test_env, "GET", _ddoc_path(store))["_rev"].startswith("1-")
    assert await migrate(admin) == []


async def test_an_outdated_design_document_makes_the_store_unready_until_migrated(
    store: ProvenanceStore, test_env: dict[str, str]
) -> None:
    ddoc = couch(test_env, "GET", _ddoc_path(store))
    del ddoc["views"]["per_day"]
    couch(test_env, "PUT", _ddoc_path(store), json.dumps(ddoc).encode())

    with pytest.raises(StoreNotReady, match=r"is not the one .* provenancedb.migrate"):
        await store.ready()
    # The writer cannot repair it: design documents are the admin's.
    with pytest.raises(PermissionError):
        await store.install_design()

    changes = await migrate(settings_from(_env(test_env, store), MigrateSettings))
    assert changes == [f"{store._db.id}: _design/provenance installed"]
    assert await store.ready() is True


async def test_a_missing_design_document_is_reported(
    store: ProvenanceStore, test_env: dict[str, str]
) -> None:
    ddoc = couch(test_env, "GET", _ddoc_path(store))
    couch(test_env, "DELETE", f"{_ddoc_path(store)}?rev={ddoc['_rev']}")
    with pytest.raises(
        StoreNotReady, match=r"_design/provenance is missing .* provenancedb.migrate"
    ):
        await store.ready()


async def test_a_design_document_for_another_writer_is_not_current(
    store: ProvenanceStore, test_env: dict[str, str]
) -> None:
    settings: Settings = settings_from(_env(test_env, store, COUCHDB_USER="someone-else"), Settings)
    login = (test_env["COUCHDB_USER"], settings.couchdb_password)
    async with open_store(settings, login) as expecting_another_writer:
        with pytest.raises(StoreNotReady, match="writer 'someone-else'"):
            await expecting_another_writer.ready()


async def test_a_database_that_was_never_provisioned_is_reported(
    test_env: dict[str, str],
) -> None:
    settings: Settings = settings_from({**test_env, "COUCHDB_DB": "never-provisioned"}, Settings)
    async with open_store(settings, settings.login()) as store:
        with pytest.raises(StoreNotReady, match=r"'never-provisioned' does not exist: run"):
            await store.ready()
    assert "never-provisioned" not in couch(test_env, "GET", "/_all_dbs")


async def test_a_wrong_password_is_reported(
    store: ProvenanceStore, test_env: dict[str, str]
) -> None:
    settings: Settings = settings_from(_env(test_env, store), Settings)
    login = (settings.couchdb_user, SecretStr("not-the-password"))
    async with open_store(settings, login) as wrong:
        with pytest.raises(StoreNotReady, match=r"may not read .* wrong password"):
            await wrong.ready()


JOB_A = "5f0c2a9e-1b7d-4f5e-8a43-0c6e7d9b1a01"
JOB_B = "5f0c2a9e-1b7d-4f5e-8a43-0c6e7d9b1a02"
JOB_C = "5f0c2a9e-1b7d-4f5e-8a43-0c6e7d9b1a03"
JOB_D = "5f0c2a9e-1b7d-4f5e-8a43-0c6e7d9b1a04"
JOB_E = "5f0c2a9e-1b7d-4f5e-8a43-0c6e7d9b1a05"
JOB_F = "5f0c2a9e-1b7d-4f5e-8a43-0c6e7d9b1a06"
IN0, OUT_A, OUT_B = sha("store/in0"), sha("store/out-a"), sha("store/out-b")
DAY1 = datetime(2026, 3, 14, 9, 26, 53, 589_000, tzinfo=UTC)
DAY2 = datetime(2026, 3, 15, 16, 5, 0, 250_000, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))


class _Recorder:
    """Every HTTP request the store's CouchDB client makes."""

    def __init__(self, store: ProvenanceStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.requests: list[tuple[str, str]] = []
        remote = store._db._remote
        request = remote._request

        async def recording(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            self.requests.append((method, path))
            return await request(method, path, *args, **kwargs)

        monkeypatch.setattr(remote, "_request", recording)


async def test_record_all_writes_every_document_in_one_request(
    store: ProvenanceStore, test_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = documents(intake(JOB_A, input_ref(IN0), DAY1))
    recorder = _Recorder(store, monkeypatch)

    assert await store.record_all(docs) == [True, True]

    assert recorder.requests == [("POST", f"/{store._db.id}/_bulk_docs")]
    for doc in docs:
        assert _stored(test_env, store, doc["_id"]) == doc
    assert [d["_id"] for d in await store.job_documents(JOB_A)] == [d["_id"] for d in docs]


async def test_record_all_reports_documents_that_already_existed(
    store: ProvenanceStore, test_env: dict[str, str]
) -> None:
    # Three documents (as recorded before upload.received carried the stored input).
    received, stored, uploaded = documents(intake(JOB_A, input_ref(IN0), DAY1, legacy=True))
    assert await store.record(received) is True
    # A redelivered intake: the same ids, a later time; the first write stays.
    redelivered = {**received, "time": "2026-03-14T10:00:00Z"}

    assert await store.record_all([redelivered, stored, uploaded]) == [False, True, True]
    assert await store.record_all([redelivered, stored, uploaded]) == [False, False, False]

    assert _stored(test_env, store, received["_id"]) == received
    ids = [d["_id"] for d in await store.job_documents(JOB_A)]
    assert ids == [received["_id"], stored["_id"], uploaded["_id"]]


async def test_timeline_is_in_time_order_when_a_job_starts_on_a_whole_second(
    store: ProvenanceStore,
) -> None:
    docs = documents(intake(JOB_A, input_ref(IN0), datetime(2026, 3, 15, 16, 5, tzinfo=UTC)))
    assert await store.record_all(docs) == [True, True]
    assert [d["_id"] for d in await store.job_documents(JOB_A)] == [d["_id"] for d in docs]


async def test_record_all_of_nothing_writes_nothing(store: ProvenanceStore) -> None:
    assert await store.record_all([]) == []


# --------------------------------------------------------------------------- the views


def _trails() -> dict[str, list[dict[str, Any]]]:
    """Six jobs over two (UTC) days:

    A (day 1): IN0 -> OUT_A; B (day 2): OUT_A, uploaded again, -> OUT_B;
    C (day 1, also from IN0) and D (day 2) fail invalid_pipeline, E (day 2)
    retries_exhausted; F is queued, its intake stamped 01:29:59 CEST on day 2, which is
    still day 1 in UTC. B was recorded before image.processed carried the operations and
    upload.received the stored input (image.stored and operation.applied documents): the
    views read both kinds of trail."""
    output_a = output_ref(JOB_A, OUT_A)
    return {
        JOB_A: documents(job_trail(JOB_A, input_ref(IN0), output_a, DAY1)),
        JOB_B: legacy_documents(
            job_trail(
                JOB_B,
                reuploaded(output_a),
                output_ref(JOB_B, OUT_B),
                DAY2,
                durations=(11.0, 1.75),
                legacy=True,
            )
        ),
        JOB_C: documents(
            failed_trail(JOB_C, input_ref(IN0), DAY1 + timedelta(hours=1), "invalid_pipeline")
        ),
        JOB_D: documents(
            failed_trail(
                JOB_D, input_ref(sha("store/d")), DAY2 + timedelta(hours=1), "invalid_pipeline"
            )
        ),
        JOB_E: documents(
            failed_trail(
                JOB_E, input_ref(sha("store/e")), DAY2 + timedelta(hours=2), "retries_exhausted"
            )
        ),
        JOB_F: documents(
            intake(
                JOB_F,
                input_ref(sha("store/f")),
                datetime(2026, 3, 15, 1, 29, 59, 750_000, tzinfo=CEST),
            )
        ),
    }


@pytest.fixture
async def trails(store: ProvenanceStore) -> dict[str, list[dict[str, Any]]]:
    recorded = _trails()
    every = [doc for docs in recorded.values() for doc in docs]
    assert await store.record_all(every) == [True] * len(every)
    return recorded


async def test_by_job_is_each_jobs_timeline(
    store: ProvenanceStore, test_env: dict[str, str], trails: dict[str, list[dict[str, Any]]]
) -> None:
    for job_id, docs in trails.items():
        assert [d["_id"] for d in await store.job_documents(job_id)] == [d["_id"] for d in docs]
    rows = _view(test_env, store, "by_job", startkey=[JOB_A], endkey=[JOB_A, {}])
    assert [row["value"] for row in rows] == [d["type"] for d in trails[JOB_A]]
    assert [row["key"] for row in rows] == [[JOB_A, d["time"]] for d in trails[JOB_A]]


async def test_by_input_names_the_jobs_that_uploaded_an_image(
    store: ProvenanceStore, test_env: dict[str, str], trails: dict[str, list[dict[str, Any]]]
) -> None:
    assert await store.jobs_using(IN0) == sorted([JOB_A, JOB_C])
    assert await store.jobs_using(OUT_A) == [JOB_B]
    assert await store.jobs_using(OUT_B) == []
    # One row per upload: the other documents naming IN0 as input are not uploads.
    assert sum(d.get("input_sha256") == IN0 for d in trails[JOB_A]) > 1
    rows = _view(test_env, store, "by_input", key=IN0)
    assert sorted(row["value"] for row in rows) == sorted([JOB_A, JOB_C])


async def test_by_output_names_what_an_output_was_made_from(
    store: ProvenanceStore, test_env: dict[str, str], trails: dict[str, list[dict[str, Any]]]
) -> None:
    processed = trails[JOB_B][-1]
    assert processed["type"] == "image.processed"
    rows = _view(test_env, store, "by_output", key=OUT_B)
    assert [(row["id"], row["value"]) for row in rows] == [(processed["_id"], OUT_A)]
    assert _view(test_env, store, "by_output", key=IN0) == []


async def test_images_view_says_where_an_image_is_stored(
    store: ProvenanceStore, test_env: dict[str, str], trails: dict[str, list[dict[str, Any]]]
) -> None:
    image = {"format": "png", "width": 320, "height": 240, "bytes": 20_480}
    expected = [
        {
            "role": "input",
            "job_id": JOB_B,
            "location": f"s3://imagemesh-input/sha256/{OUT_A}.png",
            **image,
        },
        {
            "role": "output",
            "job_id": JOB_A,
            "location": f"s3://imagemesh-output/{JOB_A}/output.png",
            **image,
        },
    ]
    assert sorted(await store.image(OUT_A), key=lambda row: row["role"]) == expected
    rows = _view(test_env, store, "images", key=OUT_A)
    assert sorted((row["value"] for row in rows), key=lambda value: value["role"]) == expected
    assert await store.image(sha("never stored")) == []


async def test_derivations_link_images_both_ways_across_jobs(
    store: ProvenanceStore, test_env: dict[str, str], trails: dict[str, list[dict[str, Any]]]
) -> None:
    rows = _view(test_env, store, "derivations", key=[OUT_A, "from"])
    assert [row["value"] for row in rows] == [{"sha256": IN0, "job_id": JOB_A}]
    rows = _view(test_env, store, "derivations", key=[OUT_A, "to"])
    assert [row["value"] for row in rows] == [{"sha256": OUT_B, "job_id": JOB_B}]

    assert await store.lineage(OUT_B, "from") == [
        {"sha256": OUT_A, "depth": 1, "job_id": JOB_B, "derived": OUT_B},
        {"sha256": IN0, "depth": 2, "job_id": JOB_A, "derived": OUT_A},
    ]
    assert await store.lineage(IN0, "to") == [
        {"sha256": OUT_A, "depth": 1, "job_id": JOB_A, "source": IN0},
        {"sha256": OUT_B, "depth": 2, "job_id": JOB_B, "source": OUT_A},
    ]
    assert await store.lineage(IN0, "from") == []
    assert await store.lineage(OUT_B, "to") == []


async def test_failures_count_per_error_code(
    store: ProvenanceStore, test_env: dict[str, str], trails: dict[str, list[dict[str, Any]]]
) -> None:
    rows = _view(test_env, store, "failures", group_level=1)
    assert rows == [
        {"key": ["invalid_pipeline"], "value": 2},
        {"key": ["retries_exhausted"], "value": 1},
    ]
    assert _view(test_env, store, "failures") == [{"key": None, "value": 3}]
    # Drilling down: which jobs failed for a code, oldest first.
    rows = _view(
        test_env,
        store,
        "failures",
        reduce=False,
        startkey=["invalid_pipeline"],
        endkey=["invalid_pipeline", {}],
    )
    assert [row["value"] for row in rows] == [JOB_C, JOB_D]
    assert [row["key"][1] for row in rows] == [trails[JOB_C][-1]["time"], trails[JOB_D][-1]["time"]]


async def test_per_day_counts_events_per_utc_day_and_type(
    store: ProvenanceStore, test_env: dict[str, str], trails: dict[str, list[dict[str, Any]]]
) -> None:
    day1, day2 = "2026-03-14", "2026-03-15"
    expected = {
        (day1, "image.processed"): 1,
        (day1, "image.uploaded"): 3,
        (day1, "job.failed"): 1,
        (day1, "job.processing-started"): 1,
        (day1, "upload.received"): 3,
        (day2, "image.processed"): 1,
        (day2, "image.stored"): 2,
        (day2, "image.uploaded"): 3,
        (day2, "job.failed"): 2,
        (day2, "job.processing-started"): 1,
        (day2, "operation.applied"): 2,
        (day2, "upload.received"): 3,
    }
    rows = _view(test_env, store, "per_day", group_level=2)
    assert {tuple(row["key"]): row["value"] for row in rows} == expected
    assert len(rows) == len(expected)
    assert [row["key"][0] for row in rows] == sorted(row["key"][0] for row in rows)
    # Job F's intake happened at 01:29:59 CEST on the 15th: the 14th in UTC.
    assert {d["time"][:10] for d in trails[JOB_F]} == {day1}
    rows = _view(test_env, store, "per_day", group_level=1)
    assert rows == [{"key": [day1], "value": 9}, {"key": [day2], "value": 14}]
    every = [doc for docs in trails.values() for doc in docs]
    assert Counter(d["time"][:10] for d in every) == {day1: 9, day2: 14}


async def test_per_operation_gives_duration_stats(
    store: ProvenanceStore, test_env: dict[str, str], trails: dict[str, list[dict[str, Any]]]
) -> None:
    def stats(*durations: float) -> dict[str, float]:
        return {
            "sum": sum(durations),
            "count": len(durations),
            "min": min(durations),
            "max": max(durations),
            "sumsqr": sum(d * d for d in durations),
        }

    # Job A's operations are steps of its image.processed, job B's operation.applied
    # documents (its image.processed, recorded before, is not counted again).
    rows = _view(test_env, store, "per_operation", group=True)
    assert {tuple(row["key"]): row["value"] for row in rows} == {
        ("convert", "2026-03-14"): stats(3.25),
        ("convert", "2026-03-15"): stats(1.75),
        ("thumbnail", "2026-03-14"): stats(8.5),
        ("thumbnail", "2026-03-15"): stats(11.0),
    }
    rows = _view(test_env, store, "per_operation", group_level=1)
    assert rows == [
        {"key": ["convert"], "value": stats(3.25, 1.75)},
        {"key": ["thumbnail"], "value": stats(8.5, 11.0)},
    ]
    assert rows[1]["value"]["count"] == 2
    assert rows[1]["value"]["sum"] == 19.5


# --------------------------------------------------------------------------- paging


async def _every_document(store: ProvenanceStore, *, at_most: int) -> list[dict[str, Any]]:
    """All documents from `all_job_documents`, giving up (rather than hanging) once it has
    yielded more than `at_most`."""
    found: list[dict[str, Any]] = []
    # The generator is closed even when left early (all_job_documents is one).
    generator = cast(AsyncGenerator[dict[str, Any], None], store.all_job_documents())
    async with aclosing(generator) as docs:
        async for doc in docs:
            found.append(doc)
            if len(found) > at_most:
                break
    return found


def _check_job_by_job(found: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    ids = [doc["_id"] for doc in found]
    repeated = [doc_id for doc_id, count in Counter(ids).items() if count > 1]
    assert repeated == []
    assert sorted(ids) == sorted(doc["_id"] for doc in expected)
    jobs = [doc["job_id"] for doc in found]
    # Job by job: each job's documents are one run, in time order.
    runs = [job for n, job in enumerate(jobs) if n == 0 or jobs[n - 1] != job]
    assert len(runs) == len(set(jobs))
    for job in set(jobs):
        times = [doc["time"] for doc in found if doc["job_id"] == job]
        assert times == sorted(times)


@pytest.mark.parametrize("page", [1, 4, 23, 24])
async def test_all_job_documents_pages_through_every_document(
    store: ProvenanceStore,
    trails: dict[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    page: int,
) -> None:
    expected = [doc for docs in trails.values() for doc in docs]
    assert len(expected) == 23  # page 23: the last page is full, one more request ends it
    monkeypatch.setattr(queries_module, "PAGE", page)
    recorder = _Recorder(store, monkeypatch)

    found = await _every_document(store, at_most=2 * len(expected))

    _check_job_by_job(found, expected)
    assert [doc for doc in found if doc["_id"] == expected[0]["_id"]] == [
        {**expected[0], "_rev": found[0]["_rev"]}
    ]
    assert len(recorder.requests) == len(expected) // page + 1


async def test_all_job_documents_neither_skips_nor_repeats_identical_keys(
    store: ProvenanceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Several events of one job in the same millisecond, between two other jobs.
    docs = [_doc(f"burst-{n}", "job-m", "2026-03-14T09:00:00.000Z") for n in range(7)]
    docs += [_doc(f"before-{n}", "job-a", f"2026-03-14T09:00:0{n}Z") for n in range(3)]
    docs += [_doc(f"after-{n}", "job-z", "2026-03-14T09:00:00.000Z") for n in range(3)]
    assert await store.record_all(docs) == [True] * len(docs)
    monkeypatch.setattr(queries_module, "PAGE", 3)

    found = await _every_document(store, at_most=3 * len(docs))

    _check_job_by_job(found, docs)
