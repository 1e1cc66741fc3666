"""Erasing a job through the real mesh: `DELETE /api/v1/jobs/{id}` deletes the job's
objects from the real (moto) S3 before its 204, except those another job that is not
erased still uses; `/result`, `/input` and `/thumbnail` then answer 410; the status keeps
its outcome and says who erased it when; provenance records one `job.erased` (a PROV
activity invalidating the deleted images), and the audit counts the deleted objects as
erased, not missing. Another principal's job sharing the input:
tests/security/test_erase_scope.py."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from messaging.thumbnails import thumbnail_key
from objectstore import ObjectNotFound, ObjectStore, S3Settings, open_store
from tests.conftest import Mesh, audit_env, settings_from, trail
from tests.e2e.helpers import photo, submit, wait_finished
from tests.waiting import async_wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SMALL = json.dumps([{"op": "thumbnail", "width": 64}])
GRAY = json.dumps([{"op": "grayscale"}])
SLOW = json.dumps([{"op": "blur", "sigma": 100}] * 2 + [{"op": "convert", "format": "png"}])


@pytest.fixture
async def s3(mesh: Mesh) -> AsyncIterator[tuple[ObjectStore, S3Settings]]:
    """The mesh's real S3, read directly (not through upload)."""
    settings = settings_from(mesh.env, S3Settings)
    async with open_store(settings) as store:
        yield store, settings


async def _job(
    http: aiohttp.ClientSession, mesh: Mesh, data: bytes, pipeline: str = SMALL
) -> dict[str, Any]:
    response = await submit(http, mesh.upload_url, data, pipeline, filename="holiday.jpg")
    assert response.status == 202, await response.text()
    return await wait_finished(http, mesh.upload_url, str((await response.json())["id"]))


async def _erase(http: aiohttp.ClientSession, mesh: Mesh, job_id: str) -> int:
    """DELETE the job: its status (a 204 has no body)."""
    async with http.delete(f"{mesh.upload_url}/api/v1/jobs/{job_id}") as response:
        body = await response.read()
        assert body == b"" if response.status == 204 else json.loads(body)["error"], body
        return response.status


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with http.get(url, allow_redirects=True) as response:
        return response.status, await response.read()


async def _exists(store: ObjectStore, bucket: str, key: str) -> bool:
    try:
        await store.metadata(bucket, key)
    except ObjectNotFound:
        return False
    return True


async def _objects(
    s3: tuple[ObjectStore, S3Settings], job: dict[str, Any]
) -> dict[str, tuple[str, str]]:
    """The job's objects in S3, by role, found directly: its output (`<id>/`), the output's
    thumbnail (waited for: it is made just after the job succeeds), its reuse index entry
    (the one naming it) and its input (content-addressed)."""
    store, settings = s3
    out, found = settings.s3_output_bucket, {}
    found["input"] = (settings.s3_input_bucket, f"sha256/{job['input']['sha256']}.jpg")
    if job["status"] != "succeeded":
        return found
    if not job.get("reused_from"):
        (output,) = [o.key async for o in store.objects(out, f"{job['id']}/")]
        found["output"] = (out, output)
        async for entry in store.objects(out, "computations/"):
            if json.loads(await store.get(out, entry.key))["job_id"] == job["id"]:
                found["computation"] = (out, entry.key)
        assert "computation" in found, "the runner indexes every computation it stores"
    thumbnail = thumbnail_key(job["output"]["sha256"])
    await async_wait_for(
        lambda: _exists(store, out, thumbnail), timeout=20, what="the job's thumbnail"
    )
    found["thumbnail"] = (out, thumbnail)
    return found


async def _present(store: ObjectStore, objects: dict[str, tuple[str, str]]) -> set[str]:
    return {role for role, (bucket, key) in objects.items() if await _exists(store, bucket, key)}


def _erasures(env: dict[str, str], job_id: str) -> list[dict[str, Any]] | None:
    _, gaps, docs = trail(env, job_id)
    assert not gaps, gaps
    erased = [d for d in docs if d["type"] == "job.erased"]
    return erased or None


async def test_erasing_a_job_deletes_its_images_and_keeps_its_record(
    mesh: Mesh, http: aiohttp.ClientSession, s3: tuple[ObjectStore, S3Settings]
) -> None:
    job = await _job(http, mesh, photo(320, 200))
    job_id, url = job["id"], f"{mesh.upload_url}/api/v1/jobs/{job['id']}"
    objects = await _objects(s3, job)
    assert await _present(s3[0], objects) == {"input", "output", "computation", "thumbnail"}

    assert await _erase(http, mesh, job_id) == 204
    assert await _present(s3[0], objects) == set()  # gone before the 204
    for path in ("result", "input", "thumbnail"):
        status, body = await _get(http, f"{url}/{path}")
        assert (status, json.loads(body)["error"]["code"]) == (410, "gone"), path
    async with http.get(f"{mesh.upload_url}/api/v1/results.zip?ids={job_id}") as zipped:
        assert (zipped.status, (await zipped.json())["error"]["code"]) == (410, "gone")
    async with http.get(url) as response:
        status = await response.json()
    assert (status["status"], status["erased_by"]) == ("succeeded", "local")
    assert status["erased_at"] >= status["updated_at"]
    assert status["output"]["sha256"] == job["output"]["sha256"]  # the record stays

    (erased,) = await async_wait_for(lambda: _erasures(mesh.env, job_id), timeout=20)
    recorded = {o["role"]: o for o in erased["data"]["objects"]}
    assert set(recorded) == {"input", "output", "computation", "thumbnail"}
    assert all(o["deleted"] and o["kept_because"] is None for o in recorded.values())
    assert (recorded["output"]["bucket"], recorded["output"]["key"]) == objects["output"]
    assert erased["data"]["principal"] == "local"
    assert erased["service"] == "upload"
    async with http.get(f"{url}/provenance") as response:
        prov = await response.json()
    (activity,) = [a for a in prov["activity"].values() if a["prov:type"] == "job.erased"]
    assert activity["imagemesh:principal"] == "local"
    invalidated = {r["prov:entity"] for r in prov["wasInvalidatedBy"].values()}
    images = {f"sha256:{job['input']['sha256']}", f"sha256:{job['output']['sha256']}"}
    assert invalidated == images
    assert all(prov["entity"][image]["imagemesh:erased"] is True for image in images)

    assert await _erase(http, mesh, job_id) == 204  # again: nothing new done or recorded
    _, _, docs = trail(mesh.env, job_id)
    assert Counter(d["type"] for d in docs)["job.erased"] == 1
    report = await audit_env(mesh.env, grace=600)
    uris = {f"s3://{bucket}/{key}" for bucket, key in objects.values()}
    assert [gap for gap in report.gaps if gap.subject in uris | {job_id}] == []
    assert report.erased_objects >= 1


async def test_an_input_another_job_uses_stays_until_that_job_is_erased_too(
    mesh: Mesh, http: aiohttp.ClientSession, s3: tuple[ObjectStore, S3Settings]
) -> None:
    data = photo(300, 200)
    first = await _job(http, mesh, data, SMALL)
    second = await _job(http, mesh, data, GRAY)  # the same bytes: the same stored input
    assert first["input"]["sha256"] == second["input"]["sha256"]
    objects = await _objects(s3, first)

    assert await _erase(http, mesh, first["id"]) == 204
    assert await _present(s3[0], objects) == {"input"}
    (erased,) = await async_wait_for(lambda: _erasures(mesh.env, first["id"]), timeout=20)
    kept = {o["role"]: o for o in erased["data"]["objects"] if not o["deleted"]}
    assert list(kept) == ["input"]
    assert kept["input"]["kept_because"] == "used by 1 other job"
    second_url = f"{mesh.upload_url}/api/v1/jobs/{second['id']}"
    assert await _get(http, f"{second_url}/input") == (200, data)  # the other job still works
    assert (await _get(http, f"{second_url}/result"))[0] == 200

    assert await _erase(http, mesh, second["id"]) == 204  # its last user: the input goes
    assert not await _exists(s3[0], *objects["input"])


async def test_a_reused_output_stays_for_the_job_that_reused_it(
    mesh: Mesh, http: aiohttp.ClientSession, s3: tuple[ObjectStore, S3Settings]
) -> None:
    data = photo(280, 200)
    first = await _job(http, mesh, data)
    second = await _job(http, mesh, data)  # the same work: it takes the first's output
    assert second["reused_from"] == first["id"]
    objects = await _objects(s3, first)

    assert await _erase(http, mesh, first["id"]) == 204
    # The output and its thumbnail stay for the second job, the input too; the index
    # entry goes: no later job is given the erased job's computation.
    assert await _present(s3[0], objects) == {"input", "output", "thumbnail"}
    result = await _get(http, f"{mesh.upload_url}/api/v1/jobs/{second['id']}/result")
    assert result[0] == 200
    third = await _job(http, mesh, data)
    assert "reused_from" not in third  # computed afresh
    ids = f"{second['id']},{first['id']}"
    async with http.get(f"{mesh.upload_url}/api/v1/results.zip?ids={ids}") as zipped:
        assert zipped.status == 200
        archive = zipfile.ZipFile(io.BytesIO(await zipped.read()))
    assert archive.namelist() == ["holiday.jpg", "erased.txt"]
    assert archive.read("holiday.jpg") == result[1]
    assert first["id"] in archive.read("erased.txt").decode()

    assert await _erase(http, mesh, second["id"]) == 204  # the output's last user
    # What the third job still uses stays: the input, the index entry (the same key: the
    # same work, now the third job's computation), and the thumbnail if its output has
    # the same bytes.
    same_output = third["output"]["sha256"] == first["output"]["sha256"]
    thumbnail = {"thumbnail"} if same_output else set()
    assert await _present(s3[0], objects) == {"input", "computation"} | thumbnail
    assert await _erase(http, mesh, third["id"]) == 204
    assert await _present(s3[0], objects) == set()


async def test_a_running_job_is_not_erased_until_it_ends(
    mesh: Mesh, http: aiohttp.ClientSession, s3: tuple[ObjectStore, S3Settings]
) -> None:
    response = await submit(http, mesh.upload_url, photo(3000, 2000), SLOW)
    job_id = (await response.json())["id"]
    url = f"{mesh.upload_url}/api/v1/jobs/{job_id}"
    # Refused at once (queued, or just started), and again once it is surely processing.
    for wanted in ("queued", "processing"):

        async def seen(wanted: str = wanted) -> bool:
            async with http.get(url) as status:
                now = (await status.json())["status"]
            assert now in {"queued", "processing"}, f"the slow job is already {now}"
            return bool(now == wanted)

        if wanted == "processing":
            await async_wait_for(seen, timeout=60, interval=0.05, what="the job processing")
        async with http.delete(url) as refused:
            assert refused.status == 409
            body = await refused.json()
        assert body["error"]["code"] == "not_finished"
        assert "cancel it first" in body["error"]["message"]
    async with http.post(f"{mesh.upload_url}/api/v1/jobs/{job_id}/cancel") as cancelled:
        assert cancelled.status == 202
    job = await wait_finished(http, mesh.upload_url, job_id, timeout=120)
    assert job["status"] == "cancelled"
    objects = await _objects(s3, job)
    assert await _erase(http, mesh, job_id) == 204
    assert await _present(s3[0], objects) == set()
    assert await _erase(http, mesh, "00000000-0000-4000-8000-000000000000") == 404
