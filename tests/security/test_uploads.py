"""Hostile uploads through the running API: too large, not an image, bombs; and filenames,
which are data to show, never paths."""

from __future__ import annotations

import re

import aiohttp
import pytest
import stack

from tests.conftest import Mesh
from tests.e2e.helpers import photo, submit, wait_finished
from tests.hostile import corpus

pytestmark = pytest.mark.e2e

XSS_NAME = "<img src=x onerror=alert(1)>.jpg"
HOSTILE_NAMES = (
    XSS_NAME,
    "../../../etc/passwd.jpg",
    "..\\..\\windows\\win.ini.jpg",
    "unicode-\u202eGPJ.exe",
)
INPUT_KEY = re.compile(r"^sha256/[0-9a-f]{64}\.[a-z]+$")


async def refused(response: aiohttp.ClientResponse) -> tuple[int, str]:
    assert response.content_type == "application/json"
    return response.status, (await response.json())["error"]["code"]


async def test_too_large_is_413(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    limit = int(mesh.env.get("IMAGE_MAX_BYTES", 25 * 1024 * 1024))
    huge = b"\xff\xd8\xff" + b"\0" * limit
    assert await refused(await submit(http, mesh.upload_url, huge, "[]")) == (413, "too_large")


async def test_wrong_types_are_415_and_bombs_422(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    by_name = {item.name: item for item in corpus()}
    expected = {
        "text-named-jpg": (415, "unsupported_type"),
        "svg": (415, "unsupported_type"),
        "pdf": (415, "unsupported_type"),
        "bomb-100mp": (422, "too_many_pixels"),
        "bomb-side": (422, "too_large_side"),
        "too-many-frames": (422, "too_many_frames"),
        "jpeg-repeated-scans": (422, "too_many_scans"),
        "png-html-polyglot": (422, "undecodable"),
    }
    for name, outcome in expected.items():
        item = by_name[name]
        assert item.upload == outcome, name  # the corpus agrees
        response = await submit(http, mesh.upload_url, item.data, "[]", filename="fine.jpg")
        assert await refused(response) == outcome, name


async def submit_named(
    http: aiohttp.ClientSession, base: str, data: bytes, filename: str
) -> aiohttp.ClientResponse:
    """As a browser sends a file: its name as it is (aiohttp would percent-encode it)."""
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("file", data, filename=filename, content_type="image/jpeg")
    return await http.post(f"{base}/api/v1/jobs", data=form)


async def test_filenames_come_back_verbatim_and_are_never_paths(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    jobs = {}
    for n, name in enumerate(HOSTILE_NAMES):
        response = await submit_named(http, mesh.upload_url, photo(30 + n, 20), name)
        assert response.status == 202, (name, await response.text())
        jobs[name] = (await response.json())["id"]
    for name, job_id in jobs.items():
        job = await wait_finished(http, mesh.upload_url, job_id)
        assert job["status"] == "succeeded", job
        assert job["filename"] == name
        async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job_id}") as answer:
            assert answer.content_type == "application/json"
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
    # Inputs are stored by content, outputs by job id: no name reaches a key.
    inputs = keys(mesh, "S3_INPUT_BUCKET")
    assert inputs
    assert all(INPUT_KEY.match(key) for key in inputs), inputs
    outputs = keys(mesh, "S3_OUTPUT_BUCKET")
    for job_id in jobs.values():
        mine = [key for key in outputs if key.startswith(f"{job_id}/")]
        assert len(mine) == 1
        assert re.fullmatch(rf"{job_id}/output\.[a-z]+", mine[0])


def keys(mesh: Mesh, bucket: str) -> list[str]:
    s3 = stack.s3_client(stack.Config.of(mesh.env))
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=mesh.env[bucket])
    return [item["Key"] for page in pages for item in page.get("Contents", [])]
