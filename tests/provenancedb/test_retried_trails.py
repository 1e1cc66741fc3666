"""A retried job in provenance: the retried job's `job.retried` (one per retry, on behalf
of who asked, informed by the new job's intake) and the new job's intake naming it back
(`retry_of`). The trail rules (`trails.py`, what `make audit` checks) hold both ends to
each other; the job summaries (history, status) show the link both ways (a mark on a
finished job, whose summary the writer no longer keeps, is merged into the stored one).

The trail and PROV tests are pure (documents made as provenancedb makes them); the
history test records them in a provisioned database on the real server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prov.model import (
    PROV_ATTR_ACTIVITY,
    PROV_ATTR_INFORMANT,
    PROV_ATTR_INFORMED,
    PROV_ATTR_RESPONSIBLE,
    ProvActivity,
    ProvCommunication,
    ProvDelegation,
)

from messaging import RpcMessage, topology
from messaging.events import ImageRef, ImageUploaded, JobRetried
from messaging.jobs import fold_status
from messaging.rpc import rpc_handler
from provenancedb.app import Recorder
from provenancedb.audit import audit_documents
from provenancedb.documents import to_document
from provenancedb.provview import merge_prov
from provenancedb.store import ProvenanceStore
from tests.provenancedb.conftest import OpenStore
from tests.provenancedb.test_documents import (
    Step,
    documents,
    envelope_for,
    extra,
    failed_trail,
    formal,
    input_ref,
    intake,
    job_trail,
    named,
    output_ref,
    records,
    sha,
    valid_prov,
)

OLD = "0b1d2e3f-4a5b-4c6d-8e7f-a0b1c2d3e4f5"
NEW = "1c2d3e4f-5a6b-4d7e-8f90-b1c2d3e4f5a6"
THIRD = "2d3e4f5a-6b7c-4e8f-9a01-c2d3e4f5a6b7"
OWNER = "alice"
T0 = datetime(2026, 12, 2, 7, 30, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
SOURCE = input_ref(sha("retried.png"))


def retry_intake(job_id: str, retried: str, at: datetime, source: ImageRef = SOURCE) -> list[Step]:
    """The new job's intake as upload publishes a retry: the same stored input, and its
    `image.uploaded` naming the retried job."""
    steps = intake(job_id, source, at, principal=OWNER)
    envelope, uploaded = steps[-1]
    assert isinstance(uploaded, ImageUploaded)
    return [*steps[:-1], (envelope, uploaded.model_copy(update={"retry_of": retried}))]


def retried(job_id: str, retry: list[Step]) -> Step:
    """The retried job's `job.retried`, caused by the new job's `image.uploaded`."""
    cause, uploaded = next(step for step in retry if isinstance(step[1], ImageUploaded))
    event = JobRetried(job_id=job_id, retry=uploaded.job_id, principal=OWNER)
    return envelope_for(event, "upload", cause.time, cause=cause), event


def retried_succeeded(at: datetime = T0 + timedelta(minutes=1)) -> list[Step]:
    """The new job, run to success from the retried job's input."""
    done = job_trail(NEW, SOURCE, output_ref(NEW, sha("retried-out")), at, principal=OWNER)
    return [*retry_intake(NEW, OLD, at), *done[2:]]


def test_a_failed_job_retried_and_its_retry_are_both_complete() -> None:
    failed = failed_trail(OLD, SOURCE, T0, "operation_failed", principal=OWNER)
    retry = retried_succeeded()
    report, outputs = audit_documents(
        documents([*failed, *retry, retried(OLD, retry)]), now=NOW, grace=60
    )
    assert report.gaps == []
    assert report.jobs == {"failed": 1, "succeeded": 1}
    assert set(outputs) == {NEW}


def test_a_job_retried_twice_has_two_retry_steps_not_a_duplicate() -> None:
    failed = failed_trail(OLD, SOURCE, T0, "operation_failed", principal=OWNER)
    first = retried_succeeded()
    second = retry_intake(THIRD, OLD, T0 + timedelta(minutes=2))
    docs = documents([*failed, *first, *second, retried(OLD, first), retried(OLD, second)])
    report, _ = audit_documents(docs, now=NOW, grace=10_000)
    assert report.gaps == []
    status = fold_status(OLD, [d for d in docs if d["job_id"] == OLD])
    assert status is not None
    assert (status["status"], status["retried_by"]) == ("failed", [NEW, THIRD])


def test_a_retry_the_new_job_does_not_name_back_is_a_gap() -> None:
    failed = failed_trail(OLD, SOURCE, T0, "operation_failed", principal=OWNER)
    unrelated = intake(NEW, SOURCE, T0 + timedelta(minutes=1), principal=OWNER)  # no retry_of
    report, _ = audit_documents(
        documents([*failed, *unrelated, retried(OLD, unrelated)]), now=NOW, grace=10_000
    )
    assert [(g.kind, g.subject, g.detail) for g in report.gaps] == [
        ("incomplete_trail", OLD, f"retried as {NEW}, whose intake does not name this job")
    ]


def test_a_retry_of_a_job_that_succeeded_is_a_gap() -> None:
    done = job_trail(OLD, SOURCE, output_ref(OLD, sha("old-out")), T0, principal=OWNER)
    retry = retried_succeeded()
    report, _ = audit_documents(documents([*done, *retry, retried(OLD, retry)]), now=NOW, grace=60)
    assert [(g.subject, g.detail) for g in report.gaps] == [
        (NEW, f"a retry of {OLD}, which is succeeded, not failed or cancelled")
    ]


def test_the_retry_activity_is_on_behalf_of_its_principal_informed_by_the_new_intake() -> None:
    retry = retried_succeeded()
    envelope, event = retried(OLD, retry)
    document = valid_prov(to_document(envelope, event)["prov"])
    (activity,) = records(document, ProvActivity)
    assert named(activity.identifier, "imagemesh") == f"event/{envelope.id}"
    assert extra(activity, "imagemesh:retry") == [NEW]
    assert extra(activity, "imagemesh:job") == [OLD]
    (delegation,) = records(document, ProvDelegation)
    assert named(formal(delegation, PROV_ATTR_RESPONSIBLE), "imagemesh") == f"principal/{OWNER}"
    assert named(formal(delegation, PROV_ATTR_ACTIVITY), "imagemesh") == f"event/{envelope.id}"
    (informed,) = records(document, ProvCommunication)
    assert named(formal(informed, PROV_ATTR_INFORMED), "imagemesh") == f"event/{envelope.id}"
    new_intake = retry[1][0]  # the new job's image.uploaded
    assert named(formal(informed, PROV_ATTR_INFORMANT), "imagemesh") == f"event/{new_intake.id}"


def test_the_new_jobs_document_names_the_job_it_retries() -> None:
    retry = retried_succeeded()
    document = valid_prov(merge_prov([to_document(e, event)["prov"] for e, event in retry]))
    uploaded = next(
        a for a in records(document, ProvActivity) if extra(a, "prov:type") == ["image.uploaded"]
    )
    assert extra(uploaded, "imagemesh:retry_of") == [OLD]
    doc = to_document(*retry[1])
    assert (doc["type"], doc["retry_of"]) == ("image.uploaded", OLD)


# --------------------------------------------------------------------------- the store


@pytest.fixture
async def store(writer_store: OpenStore) -> AsyncIterator[ProvenanceStore]:
    async with writer_store("retried-test") as opened:
        yield opened


async def _call(handler: Any, route: Any, meta: dict[str, Any]) -> dict[str, Any]:
    reply = await rpc_handler(route, handler)(RpcMessage(meta))
    body: dict[str, Any] = reply.meta
    return body


async def _recorded(store: ProvenanceStore) -> Recorder:
    """The failed job, its retry (succeeded) and the failed job's `job.retried`, recorded
    in the order upload publishes them."""
    failed = failed_trail(OLD, SOURCE, T0, "operation_failed", principal=OWNER)
    retry = retried_succeeded()
    await store.record_all(documents(failed))
    await store.record_all(documents(retry))
    await store.record_all(documents([retried(OLD, retry)]))
    return Recorder(store)


@pytest.mark.integration
async def test_the_new_job_names_the_retried_one_and_the_retried_ones_prov_the_retry(
    store: ProvenanceStore,
) -> None:
    recorder = await _recorded(store)
    page = await _call(recorder.on_jobs_request, topology.PROVENANCE_JOBS, {"limit": 20})
    by_id = {job["id"]: job for job in page["jobs"]}
    assert (by_id[NEW]["status"], by_id[NEW]["retry_of"]) == ("succeeded", OLD)
    assert "retried_by" not in by_id[NEW]
    found = await _call(recorder.on_status_request, topology.PROVENANCE_JOB_STATUS, {"job_id": NEW})
    assert found["job"]["retry_of"] == OLD

    prov = await _call(
        recorder.on_provenance_request, topology.PROVENANCE_JOB_PROV, {"job_id": OLD}
    )
    (retry_activity,) = [
        a for a in prov["document"]["activity"].values() if a["prov:type"] == "job.retried"
    ]
    assert (retry_activity["imagemesh:retry"], retry_activity["imagemesh:principal"]) == (
        NEW,
        OWNER,
    )


@pytest.mark.integration
async def test_the_retried_jobs_summary_names_its_retry(store: ProvenanceStore) -> None:
    recorder = await _recorded(store)
    page = await _call(recorder.on_jobs_request, topology.PROVENANCE_JOBS, {"limit": 20})
    by_id = {job["id"]: job for job in page["jobs"]}
    assert (by_id[OLD]["status"], by_id[OLD]["retried_by"]) == ("failed", [NEW])
    found = await _call(recorder.on_status_request, topology.PROVENANCE_JOB_STATUS, {"job_id": OLD})
    assert found["job"]["retried_by"] == [NEW]
