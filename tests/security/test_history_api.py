"""The history's search and thumbnails through the public API, against a real mesh with
three principals (tests/security/test_principals.py: two users and an auditor): a search
finds only the caller's jobs (the auditor's: everyone's), exactly like the history; a
job's thumbnail is a small cached square WebP for whoever may read its result, 404 for
anyone else, and a job without one is sent to its result."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest
import stack
from PIL import Image

from messaging.thumbnails import THUMBNAIL_SIZE, thumbnail_key
from tests.e2e.helpers import photo, wait_finished
from tests.security.test_principals import (  # noqa: F401 (fixtures)
    ALICE,
    Guarded,
    alice,
    alices_job,
    bob,
    carol,
    form,
    guarded,
)
from tests.waiting import async_wait_for

pytestmark = pytest.mark.e2e


async def thumbnail_made(reader: aiohttp.ClientSession, url: str, job_id: str) -> None:
    """Wait until the job's thumbnail is made (the runner makes it just after the job
    succeeded, in the background); until then upload redirects to the result."""

    async def made() -> bool:
        thumbnail = f"{url}/api/v1/jobs/{job_id}/thumbnail"
        async with reader.get(thumbnail, allow_redirects=False) as got:
            return got.status == 200

    await async_wait_for(made, timeout=30, interval=0.1, what=f"the thumbnail of {job_id}")


async def _search(reader: aiohttp.ClientSession, url: str, term: str) -> list[dict[str, Any]]:
    async with reader.get(f"{url}/api/v1/jobs", params={"search": term, "limit": "100"}) as got:
        assert got.status == 200, await got.text()
        jobs: list[dict[str, Any]] = (await got.json())["jobs"]
        return jobs


async def test_a_search_finds_only_ones_own_jobs_and_an_auditor_finds_all(
    guarded: Guarded,  # noqa: F811
    alice: aiohttp.ClientSession,  # noqa: F811
    bob: aiohttp.ClientSession,  # noqa: F811
    carol: aiohttp.ClientSession,  # noqa: F811
) -> None:
    job = await alices_job(guarded, alice)
    for term in (job["id"][:8], job["id"].upper(), "mine", "MINE.J"):
        mine = await _search(alice, guarded.url, term)
        assert job["id"] in {j["id"] for j in mine}, term
        assert {j["owner"] for j in mine} == {ALICE}, term
        assert await _search(bob, guarded.url, term) == [], term
        assert job["id"] in {j["id"] for j in await _search(carol, guarded.url, term)}, term
    assert await _search(alice, guarded.url, "ine") == []  # a prefix, not any part
    async with alice.get(f"{guarded.url}/api/v1/jobs", params={"search": "x" * 129}) as got:
        assert got.status == 400
        assert (await got.json())["error"]["code"] == "bad_request"


async def test_the_thumbnail_is_a_small_cached_square_for_its_readers_only(
    guarded: Guarded,  # noqa: F811
    alice: aiohttp.ClientSession,  # noqa: F811
    bob: aiohttp.ClientSession,  # noqa: F811
    carol: aiohttp.ClientSession,  # noqa: F811
) -> None:
    job = await alices_job(guarded, alice)
    await thumbnail_made(alice, guarded.url, job["id"])
    url = f"{guarded.url}/api/v1/jobs/{job['id']}/thumbnail"
    async with alice.get(url) as got:
        assert got.status == 200, await got.text()
        assert got.content_type == "image/webp"
        assert "immutable" in got.headers["Cache-Control"]
        assert "private" in got.headers["Cache-Control"]
        etag = got.headers["ETag"]
        data = await got.read()
    assert len(data) < 8 * 1024
    with Image.open(io.BytesIO(data)) as image:
        assert (image.format, image.size) == ("WEBP", (THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    async with alice.get(url, headers={"If-None-Match": etag}) as again:
        assert again.status == 304
        assert await again.read() == b""
    async with bob.get(url) as refused:
        assert refused.status == 404  # as for a job that does not exist
        assert (await refused.json())["error"]["code"] == "not_found"
    async with bob.get(url, headers={"If-None-Match": etag}) as refused:
        assert refused.status == 404  # the cache headers tell nobody else anything
    async with carol.get(url) as audited:
        assert audited.status == 200
        assert await audited.read() == data


async def test_a_job_without_a_thumbnail_is_sent_to_its_result(
    guarded: Guarded,  # noqa: F811
    alice: aiohttp.ClientSession,  # noqa: F811
    bob: aiohttp.ClientSession,  # noqa: F811
) -> None:
    async with alice.post(f"{guarded.url}/api/v1/jobs", data=form(photo(80, 60))) as made:
        assert made.status == 202, await made.text()
        job = await wait_finished(alice, guarded.url, (await made.json())["id"])
    assert job["status"] == "succeeded"
    await thumbnail_made(alice, guarded.url, job["id"])
    # As a job that finished before thumbnails were made: none is stored.
    s3 = stack.s3_client(stack.Config.of(guarded.mesh.env))
    bucket = guarded.mesh.env["S3_OUTPUT_BUCKET"]
    key = thumbnail_key(job["output"]["sha256"])
    s3.head_object(Bucket=bucket, Key=key)  # the runner made one
    s3.delete_object(Bucket=bucket, Key=key)
    url = f"{guarded.url}/api/v1/jobs/{job['id']}/thumbnail"
    async with alice.get(url, allow_redirects=False) as got:
        assert got.status == 307
        assert got.headers["Location"] == f"/api/v1/jobs/{job['id']}/result"
        assert got.headers["Cache-Control"] == "private, no-cache"
    async with alice.get(url) as followed:
        assert followed.status == 200
        assert followed.content_type == "image/jpeg"
    async with bob.get(url, allow_redirects=False) as refused:
        assert refused.status == 404
