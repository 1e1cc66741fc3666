"""The CLI's picture of the API is the API's: its statuses equal the server's one source,
and the fake API it is tested against (fake.py) answers only what upload documents."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest
from aiohttp import ClientSession

from imagemesh_cli import statuses
from messaging import constants
from upload import schemas

from .contract import ContractViolation, check_answer, check_job, document
from .fake import FakeApi, job, serving, sse, succeeded

JOB = "6f1c2b3a-0000-4000-8000-000000000009"
ROUTE = "/api/v1/jobs/{job_id}"


def test_the_clients_statuses_are_the_servers() -> None:
    assert statuses.JOB_STATUSES == constants.JOB_STATUSES
    assert statuses.FINAL_STATUSES == constants.FINAL_STATUSES
    assert get_args(schemas.Job.model_fields["status"].annotation) == statuses.JOB_STATUSES
    published = document()["components"]["schemas"]["Job"]["properties"]["status"]
    assert tuple(published["enum"]) == statuses.JOB_STATUSES


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_a_documented_answer_passes() -> None:
    not_found = {"error": {"code": "not_found", "message": "no job"}}
    check_answer("GET", ROUTE, 200, "application/json", body(succeeded(JOB)))
    check_answer("GET", ROUTE, 404, "application/json", body(not_found))
    check_answer("GET", ROUTE + "/result", 200, "image/png", None)
    check_answer("GET", ROUTE + "/events", 200, "text/event-stream", None)


@pytest.mark.parametrize(
    ("method", "route", "status", "content_type", "value", "problem"),
    [
        ("GET", "/api/v1/nothing", 200, "application/json", {}, "no route GET /api/v1/nothing"),
        ("PUT", ROUTE, 200, "application/json", {}, "no route PUT"),
        ("DELETE", ROUTE, 200, "application/json", {}, "never answers DELETE"),
        ("GET", "/api/v1/operations", 503, "application/json", {}, "never answers"),
        ("GET", ROUTE, 200, "text/plain", {}, "'text/plain'"),
        ("GET", ROUTE, 200, "application/json", job(JOB, "done"), "not a valid Job"),
        ("GET", ROUTE, 200, "application/json", {**job(JOB, "queued"), "x": 1}, "not a valid Job"),
        ("GET", ROUTE, 200, "application/json", {"id": JOB, "status": "queued"}, "updated_at"),
        ("GET", ROUTE, 404, "application/json", {"error": "no job"}, "ErrorBody"),
        ("POST", "/api/v1/jobs", 202, "application/json", {"id": JOB}, "not a valid Accepted"),
    ],
)
def test_an_answer_upload_would_not_give_is_refused(
    method: str, route: str, status: int, content_type: str, value: Any, problem: str
) -> None:
    with pytest.raises(ContractViolation, match=problem):
        check_answer(method, route, status, content_type, body(value))


def test_numbers_are_not_coerced() -> None:
    snapshot = succeeded(JOB)
    snapshot["input"] = {**snapshot["input"], "bytes": "5000"}
    with pytest.raises(ContractViolation, match="bytes"):
        check_job(snapshot)


async def test_the_fake_fails_the_test_that_scripts_a_wrong_answer() -> None:
    async def script_a_wrong_job() -> None:
        async with serving(FakeApi()) as fake:
            fake.snapshots[JOB] = [{**job(JOB, "queued"), "progress": 0.5}]
            async with (
                ClientSession() as session,
                session.get(f"{fake.url}/api/v1/jobs/{JOB}") as response,
            ):
                assert response.status == 500

    with pytest.raises(ContractViolation, match="not a valid Job"):
        await script_a_wrong_job()


def test_a_status_event_must_carry_a_job() -> None:
    with pytest.raises(ContractViolation, match="not a valid Job"):
        sse("status", {"status": "processing"})
