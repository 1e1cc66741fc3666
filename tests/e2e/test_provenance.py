"""Provenance as an auditor meets it: the PROV-JSON of a job, an image's lineage across jobs,
the timeline view Fauxton shows, and the completeness check over everything the suite did."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import aiohttp
import pytest
from prov.model import ProvActivity, ProvAgent, ProvDerivation, ProvDocument, ProvEntity

from tests.conftest import Mesh, audit_env, complete_trail, couch
from tests.e2e.helpers import photo, submit, wait_finished
from tests.waiting import async_wait_for

pytestmark = pytest.mark.e2e

TRAIL = ["upload.received", "image.uploaded", "job.processing-started", "image.processed"]
"""A successful job's events, whatever its number of operations."""
PIPELINE: list[dict[str, Any]] = [
    {"op": "thumbnail", "width": 200, "height": 200},
    {"op": "grayscale"},
]


async def _job(
    mesh: Mesh, http: aiohttp.ClientSession, data: bytes, pipeline: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run a job to success; (the job as the API shows it, its complete documents)."""
    response = await submit(http, mesh.upload_url, data, json.dumps(pipeline), filename="in.jpg")
    assert response.status == 202, await response.text()
    accepted = await response.json()
    assert accepted["links"]["provenance"] == f"/api/v1/jobs/{accepted['id']}/provenance"
    assert accepted["links"]["input_lineage"] == (
        f"/api/v1/images/{hashlib.sha256(data).hexdigest()}/lineage"
    )
    job = await wait_finished(http, mesh.upload_url, accepted["id"])
    assert job["status"] == "succeeded", job
    docs = await async_wait_for(lambda: complete_trail(mesh.env, job["id"]), timeout=20)
    return job, docs


async def _result(mesh: Mesh, http: aiohttp.ClientSession, job_id: str) -> bytes:
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job_id}/result") as response:
        assert response.status == 200
        return await response.read()


async def test_job_provenance_is_valid_prov_json_with_every_step(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    job, docs = await _job(mesh, http, photo(640, 480), PIPELINE)
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job['id']}/provenance") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        body = await response.json()

    document = ProvDocument.deserialize(content=json.dumps(body), format="json")
    activities = {str(a.identifier): a for a in document.get_records(ProvActivity)}
    # One activity per event, and one per operation (in image.processed's document).
    assert [d["type"] for d in docs] == TRAIL
    assert len(activities) == len(docs) + len(PIPELINE)
    by_type = Counter(next(iter(a.get_attribute("prov:type"))) for a in activities.values())
    assert by_type == Counter(d["type"] for d in docs) + Counter({"operation.applied": 2})

    # Each operation: its name, its parameters as applied, its duration.
    operations = sorted(
        (a for a in body["activity"].values() if a["prov:type"] == "operation.applied"),
        key=lambda a: a["imagemesh:index"],
    )
    assert [a["imagemesh:operation"] for a in operations] == ["thumbnail", "grayscale"]
    assert json.loads(operations[0]["imagemesh:params"]["$"])["width"] == 200
    assert all(a["imagemesh:duration_ms"] >= 0 for a in operations)
    for activity in body["activity"].values():
        assert activity["imagemesh:job"] == job["id"]
        if activity["prov:type"] == "operation.applied":
            continue  # imageproc says how long an operation took, not when
        assert activity["prov:startTime"].endswith("Z")
        assert activity["prov:startTime"] <= activity["prov:endTime"]

    # Every service version that took part is an agent, associated with its steps.
    agents = [a for a in document.get_records(ProvAgent)]
    services = {
        next(iter(a.get_attribute("imagemesh:service")))
        for a in agents
        if a.get_attribute("imagemesh:service")
    }
    assert services == {"upload", "imageproc_runner", "imageproc"}
    assert all(v != "unknown" for a in agents for v in a.get_attribute("imagemesh:version"))
    # Who uploaded (address, user agent) is for auditors only; `local` is none by default.
    assert len(body["wasAssociatedWith"]) == len(docs) + len(PIPELINE)
    assert not any("imagemesh:address" in agent for agent in body["agent"].values())

    # The output was derived from the input, both identified by content, with their places.
    entities = {str(e.identifier): e for e in document.get_records(ProvEntity)}
    source, output = f"sha256:{job['input']['sha256']}", f"sha256:{job['output']['sha256']}"
    # Beside them, the intermediate image after each operation (never stored).
    assert {name for name in entities if name.startswith("sha256:")} == {source, output}
    assert len(entities) == 2 + len(PIPELINE)
    [derivation] = document.get_records(ProvDerivation)
    assert (str(derivation.args[0]), str(derivation.args[1])) == (output, source)
    assert body["entity"][output]["prov:location"] == f"s3://{mesh.env['S3_OUTPUT_BUCKET']}/" + (
        f"{job['id']}/output.jpg"
    )
    assert body["entity"][source]["prov:location"] == f"s3://{mesh.env['S3_INPUT_BUCKET']}/" + (
        f"sha256/{job['input']['sha256']}.jpg"
    )
    # Each step was informed by the one that caused it: a chain from upload to result.
    assert len(body["wasInformedBy"]) == len(docs) - 1


async def test_unknown_job_has_no_provenance(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{unknown}/provenance") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"


async def test_lineage_of_a_three_generation_chain_in_both_directions(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    original = photo(500, 400)
    first, _ = await _job(mesh, http, original, [{"op": "thumbnail", "width": 300}])
    second, _ = await _job(mesh, http, await _result(mesh, http, first["id"]), [{"op": "flip"}])
    third, _ = await _job(
        mesh, http, await _result(mesh, http, second["id"]), [{"op": "rotate", "angle": 90}]
    )
    # Re-uploading an output makes it the next job's input: the same entity, by content.
    assert second["input"]["sha256"] == first["output"]["sha256"]
    assert third["input"]["sha256"] == second["output"]["sha256"]
    sha = [
        hashlib.sha256(original).hexdigest(),
        first["output"]["sha256"],
        second["output"]["sha256"],
        third["output"]["sha256"],
    ]
    jobs = [first["id"], second["id"], third["id"]]

    async def lineage(digest: str) -> dict[str, Any]:
        async with http.get(f"{mesh.upload_url}/api/v1/images/{digest}/lineage") as response:
            assert response.status == 200, await response.text()
            answer: dict[str, Any] = await response.json()
            return answer

    def chain(links: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
        return sorted(
            ((link["sha256"], link["depth"], link["job_id"]) for link in links), key=lambda x: x[1]
        )

    middle = await lineage(sha[2])
    assert middle["sha256"] == sha[2]
    assert chain(middle["ancestors"]) == [(sha[1], 1, jobs[1]), (sha[0], 2, jobs[0])]
    assert chain(middle["descendants"]) == [(sha[3], 1, jobs[2])]
    assert middle["produced_by"] == [jobs[1]]
    assert middle["used_by"] == [jobs[2]]
    assert middle["image"]["locations"] == sorted(
        [
            f"s3://{mesh.env['S3_INPUT_BUCKET']}/sha256/{sha[2]}.jpg",
            f"s3://{mesh.env['S3_OUTPUT_BUCKET']}/{jobs[1]}/output.jpg",
        ]
    )

    root = await lineage(sha[0])
    assert root["ancestors"] == []
    assert chain(root["descendants"]) == [
        (sha[1], 1, jobs[0]),
        (sha[2], 2, jobs[1]),
        (sha[3], 3, jobs[2]),
    ]
    leaf = await lineage(sha[3])
    assert chain(leaf["ancestors"]) == [
        (sha[2], 1, jobs[2]),
        (sha[1], 2, jobs[1]),
        (sha[0], 3, jobs[0]),
    ]
    assert leaf["descendants"] == []


async def test_lineage_refuses_a_bad_name_and_does_not_know_a_stranger(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{mesh.upload_url}/api/v1/images/not-a-digest/lineage") as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "bad_request"
    stranger = hashlib.sha256(b"never uploaded").hexdigest()
    async with http.get(f"{mesh.upload_url}/api/v1/images/{stranger}/lineage") as response:
        assert response.status == 404


async def test_timeline_view_shows_every_step_as_fauxton_does(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    job, _ = await _job(mesh, http, photo(320, 240), PIPELINE)
    # What Fauxton requests for Design Documents > provenance > by_job with a key range.
    db = mesh.env["COUCHDB_DB"]
    path = (
        f"/{db}/_design/provenance/_view/by_job?include_docs=true"
        f"&startkey=%5B%22{job['id']}%22%5D&endkey=%5B%22{job['id']}%22%2C%7B%7D%5D"
    )
    rows = couch(mesh.env, "GET", path)["rows"]
    times = [row["key"][1] for row in rows]
    assert times == sorted(times)
    assert [row["value"] for row in rows] == TRAIL
    for row in rows:
        doc = row["doc"]
        assert doc["agent"]["version"], doc
        assert doc["time"].endswith("Z")
    received, processed = rows[0]["doc"], rows[-1]["doc"]
    assert received["location"] == f"s3://{mesh.env['S3_INPUT_BUCKET']}/" + (
        f"sha256/{job['input']['sha256']}.jpg"
    )
    assert received["data"]["input"]["sha256"] == job["input"]["sha256"]
    ops = processed["data"]["steps"]
    assert [(d["op"], d["params"]) for d in ops] == [
        ("thumbnail", {"width": 200, "height": 200, "fit": "inside", "upscale": False}),
        ("grayscale", {}),
    ]
    assert all(d["duration_ms"] >= 0 for d in ops)


@pytest.mark.parametrize("operations", [0, 1, 6])
async def test_a_successful_job_is_four_events_whatever_its_operations(
    mesh: Mesh, http: aiohttp.ClientSession, operations: int
) -> None:
    # Each event costs CPU all over the mesh (its overhead): the operations are in one of them.
    pipeline: list[dict[str, Any]] = [{"op": "thumbnail", "width": 120}]
    pipeline += [{"op": "flip"}] * (operations - 1)
    job, docs = await _job(mesh, http, photo(160, 120), pipeline[:operations])
    assert [d["type"] for d in docs] == TRAIL
    assert len(docs[-1]["data"]["steps"]) == operations
    # Nothing more arrives later (imageproc publishes nothing, the runner one event).
    assert [d["type"] for d in complete_trail(mesh.env, job["id"]) or []] == TRAIL


@pytest.mark.last
async def test_completeness_check_finds_no_gap_after_the_suite(mesh: Mesh) -> None:
    """Runs after every other test of the session (`last`): every job the suite made has
    its complete trail, every output its provenance."""

    reports = []

    async def settled() -> bool:
        reports.append(await audit_env(mesh.env, grace=float("inf")))
        return not reports[-1].in_progress

    try:
        await async_wait_for(settled, timeout=60)
    except AssertionError:
        raise AssertionError(f"jobs never finished:\n{reports[-1].summary()}") from None
    report = reports[-1]
    assert sum(report.jobs.values()) >= 5
    # Each succeeded job's output is checked (a missing one is a gap); a job that reused an
    # earlier job's output (tests/e2e/test_reuse.py) shares that job's object.
    assert report.outputs_checked > 0
    assert not report.gaps, report.summary()
