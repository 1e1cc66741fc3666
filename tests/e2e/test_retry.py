"""Retrying a job through the real mesh: a failed job retried with a pipeline that works
succeeds on the same stored input; a cancelled job retried runs its own pipeline again.
Both ends are linked, in the statuses (`retry_of`, `retried_by`) and in provenance (the
retried job's `job.retried`, informed by the new job's intake, which names it back), and
both trails are complete. What cannot be retried says why: a job still running or one
that succeeded (409), an input no longer stored (410), a bad body (400)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from objectstore import S3Settings, open_store
from tests.conftest import Mesh, audit_env, complete_trail, settings_from
from tests.e2e.helpers import decode, job_status, photo, submit, wait_finished
from tests.waiting import async_wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

FAILING = json.dumps([{"op": "thumbnail", "width": 10000, "height": 10000, "upscale": True}])
"""Valid at upload, but the output would exceed the pixel limit: imageproc refuses it."""
FIXED = [{"op": "thumbnail", "width": 64}]
SLOW = json.dumps([{"op": "blur", "sigma": 100}] * 2 + [{"op": "convert", "format": "png"}])
"""~6 s of imageproc's work on 6 MP (tests/e2e/test_cancel.py)."""


async def _failed_job(http: aiohttp.ClientSession, mesh: Mesh) -> dict[str, Any]:
    response = await submit(
        http, mesh.upload_url, photo(200, 150, "PNG"), FAILING, filename="broken.png"
    )
    assert response.status == 202, await response.text()
    job = await wait_finished(http, mesh.upload_url, (await response.json())["id"])
    assert job["status"] == "failed", job
    return job


async def _retry(
    http: aiohttp.ClientSession, mesh: Mesh, job_id: str, body: Any = None
) -> tuple[int, dict[str, Any], str | None]:
    url = f"{mesh.upload_url}/api/v1/jobs/{job_id}/retry"
    async with http.post(url, json=body) if body is not None else http.post(url) as response:
        return response.status, await response.json(), response.headers.get("Location")


async def _prov(http: aiohttp.ClientSession, mesh: Mesh, job_id: str) -> dict[str, Any]:
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job_id}/provenance") as response:
        assert response.status == 200, await response.text()
        document: dict[str, Any] = await response.json()
        return document


async def test_a_failed_job_retried_with_a_fixed_pipeline_succeeds_linked_both_ways(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    old = await _failed_job(http, mesh)
    code, body, location = await _retry(http, mesh, old["id"], {"pipeline": FIXED})
    assert code == 202, body
    new_id = body["id"]
    assert new_id != old["id"]
    assert (body["status"], body["retry_of"]) == ("queued", old["id"])
    assert location == body["links"]["self"] == f"/api/v1/jobs/{new_id}"
    assert body["links"]["input_lineage"] == f"/api/v1/images/{old['input']['sha256']}/lineage"

    new = await wait_finished(http, mesh.upload_url, new_id)
    assert (new["status"], new["retry_of"], new["owner"]) == ("succeeded", old["id"], "local")
    assert new["input"]["sha256"] == old["input"]["sha256"]  # the same stored input
    assert [step["op"] for step in new["pipeline"]] == ["thumbnail"]
    assert new["filename"] == "broken.png"
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{new_id}/result") as result:
        assert result.status == 200
        assert decode(await result.read()).width == 64
    retried = await job_status(http, mesh.upload_url, old["id"])
    assert (retried["status"], retried["retried_by"]) == ("failed", [new_id])
    assert retried["error"] == old["error"]

    # Provenance: both trails complete; the retry is the old job's, on behalf of its owner,
    # informed by the new job's intake, which names the old job.
    old_docs = await async_wait_for(lambda: _retried_trail(mesh, old["id"]), timeout=20)
    assert await async_wait_for(lambda: complete_trail(mesh.env, new_id), timeout=20)
    (mark,) = [d for d in old_docs if d["type"] == "job.retried"]
    assert (mark["service"], mark["data"]["retry"], mark["data"]["principal"]) == (
        "upload",
        new_id,
        "local",
    )
    old_prov, new_prov = await _prov(http, mesh, old["id"]), await _prov(http, mesh, new_id)
    activity = f"imagemesh:event/{mark['_id']}"
    assert old_prov["activity"][activity]["imagemesh:retry"] == new_id
    (informant,) = [
        r["prov:informant"]
        for r in old_prov["wasInformedBy"].values()
        if r["prov:informed"] == activity
    ]
    assert new_prov["activity"][informant]["prov:type"] == "image.uploaded"
    assert new_prov["activity"][informant]["imagemesh:retry_of"] == old["id"]
    delegation = next(
        d for d in old_prov["actedOnBehalfOf"].values() if d["prov:activity"] == activity
    )
    assert delegation["prov:responsible"] == "imagemesh:principal/local"
    report = await audit_env(mesh.env, grace=600)  # `make audit` holds both ends to each other
    assert [gap for gap in report.gaps if gap.subject in {old["id"], new_id}] == []


def _retried_trail(mesh: Mesh, job_id: str) -> list[dict[str, Any]] | None:
    """The job's documents once its trail is complete and has its `job.retried`."""
    docs = complete_trail(mesh.env, job_id)
    return docs if docs and any(d["type"] == "job.retried" for d in docs) else None


async def test_a_cancelled_job_retried_runs_its_own_pipeline_again(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    response = await submit(http, mesh.upload_url, photo(3000, 2000), SLOW)
    assert response.status == 202, await response.text()
    old_id = (await response.json())["id"]
    code, body, _ = await _retry(http, mesh, old_id)  # still queued or processing
    assert (code, body["error"]["code"]) == (409, "not_retryable"), body
    assert "only a failed or cancelled job" in body["error"]["message"]
    async with http.post(f"{mesh.upload_url}/api/v1/jobs/{old_id}/cancel") as cancelled:
        assert cancelled.status == 202, await cancelled.text()
    old = await wait_finished(http, mesh.upload_url, old_id, timeout=120)
    assert old["status"] == "cancelled", old

    code, body, _ = await _retry(http, mesh, old_id)  # no body: the same pipeline
    assert code == 202, body
    new = await wait_finished(http, mesh.upload_url, body["id"], timeout=120)
    assert (new["status"], new["retry_of"]) == ("succeeded", old_id), new
    assert new["pipeline"] == old["pipeline"]
    assert (await job_status(http, mesh.upload_url, old_id))["retried_by"] == [body["id"]]


async def test_a_job_retried_twice_names_both_retries_oldest_first(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    old = await _failed_job(http, mesh)
    first = await _retry(http, mesh, old["id"])  # fails again: same pipeline
    assert first[0] == 202, first
    again = await wait_finished(http, mesh.upload_url, first[1]["id"])
    assert (again["status"], again["retry_of"]) == ("failed", old["id"])
    second = await _retry(http, mesh, old["id"], {"pipeline": FIXED})
    assert second[0] == 202, second
    assert (await job_status(http, mesh.upload_url, old["id"]))["retried_by"] == [
        first[1]["id"],
        second[1]["id"],
    ]


async def test_what_cannot_be_retried_says_why(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    response = await submit(http, mesh.upload_url, photo(64, 64), json.dumps(FIXED))
    done = await wait_finished(http, mesh.upload_url, (await response.json())["id"])
    assert done["status"] == "succeeded"
    code, body, _ = await _retry(http, mesh, done["id"])
    assert (code, body["error"]["code"]) == (409, "not_retryable")
    assert "succeeded" in body["error"]["message"]
    code, body, _ = await _retry(http, mesh, "00000000-0000-4000-8000-000000000000")
    assert (code, body["error"]["code"]) == (404, "not_found")

    failed = await _failed_job(http, mesh)
    for bad in ({"pipeline": [{"op": "sharpen-everything"}]}, {"pipeline": "thumbnail"}):
        code, body, _ = await _retry(http, mesh, failed["id"], bad)
        assert code == 400, body
        assert body["error"]["code"] in {"invalid_pipeline", "bad_request"}, body
    code, body, _ = await _retry(http, mesh, failed["id"], {"pipeline": FIXED, "extra": 1})
    assert (code, body["error"]["code"]) == (400, "bad_request")
    assert "retried_by" not in await job_status(
        http, mesh.upload_url, failed["id"]
    )  # nothing was made

    # The input gone from the store (as an erasure leaves it): 410, and no job is made.
    settings = settings_from(mesh.env, S3Settings)
    async with open_store(settings) as store:
        prefix = f"sha256/{failed['input']['sha256']}"
        (stored,) = [o async for o in store.objects(settings.s3_input_bucket, prefix)]
        await store._client.delete_object(Bucket=stored.bucket, Key=stored.key)
    code, body, _ = await _retry(http, mesh, failed["id"], {"pipeline": FIXED})
    assert (code, body["error"]["code"]) == (410, "gone"), body
    assert "retried_by" not in await job_status(http, mesh.upload_url, failed["id"])


async def test_an_erased_job_is_not_retried(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    failed = await _failed_job(http, mesh)
    async with http.delete(f"{mesh.upload_url}/api/v1/jobs/{failed['id']}") as erased:
        assert erased.status == 204, await erased.text()
    code, body, _ = await _retry(http, mesh, failed["id"], {"pipeline": FIXED})
    assert (code, body["error"]["code"]) == (410, "gone"), body
    assert "erased by local" in body["error"]["message"]
    assert "retried_by" not in await job_status(http, mesh.upload_url, failed["id"])
