"""Every error case of the public contract answers with its status and JSON error body."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pyvips

from tests.conftest import Mesh
from tests.e2e.helpers import photo, submit, wait_finished

pytestmark = pytest.mark.e2e


async def _error(response: aiohttp.ClientResponse, status: int, code: str) -> str:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    message: str = body["error"]["message"]
    return message


async def test_bad_pipeline_is_400_naming_the_operation(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    pipeline = json.dumps([{"op": "grayscale"}, {"op": "thumbnail", "width": -5}])
    message = await _error(
        await submit(http, mesh.upload_url, photo(50, 50), pipeline), 400, "invalid_pipeline"
    )
    assert "operation 2 (thumbnail)" in message


async def test_unknown_operation_and_bad_json_are_400(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    await _error(
        await submit(http, mesh.upload_url, photo(50, 50), '[{"op": "melt"}]'),
        400,
        "invalid_pipeline",
    )
    await _error(await submit(http, mesh.upload_url, photo(50, 50), "[{"), 400, "invalid_pipeline")


async def test_missing_file_is_400(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("pipeline", "[]")
    await _error(await http.post(f"{mesh.upload_url}/api/v1/jobs", data=form), 400, "missing_file")
    not_multipart = await http.post(f"{mesh.upload_url}/api/v1/jobs", data={"pipeline": "[]"})
    await _error(not_multipart, 400, "bad_request")


async def test_too_large_is_413(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    limit = int(mesh.env.get("IMAGE_MAX_BYTES", 25 * 1024 * 1024))
    huge = b"\xff\xd8\xff" + b"\0" * limit
    message = await _error(await submit(http, mesh.upload_url, huge, "[]"), 413, "too_large")
    assert "MiB" in message


async def test_a_chunked_upload_without_length_is_411(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    # Without a Content-Length the body could not be bounded before it is read.
    boundary = "imagemesh-test"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
        ).encode()
        + photo(32, 32)
        + f"\r\n--{boundary}--\r\n".encode()
    )

    async def chunks() -> AsyncIterator[bytes]:
        yield body

    response = await http.post(
        f"{mesh.upload_url}/api/v1/jobs",
        data=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    await _error(response, 411, "length_required")


async def test_not_an_image_is_415_whatever_its_name(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    for data, name in ((b"hello, world" * 10, "photo.jpg"), (svg, "x.png")):
        message = await _error(
            await submit(http, mesh.upload_url, data, "[]", filename=name), 415, "unsupported_type"
        )
        assert "JPEG" in message


async def test_undecodable_and_over_pixel_limit_are_422(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    truncated = photo(64, 64, "PNG")[:40]
    await _error(
        await submit(http, mesh.upload_url, truncated, "[]", filename="t.png"), 422, "undecodable"
    )
    # 100 megapixels of one colour compress to a few kB; the header alone gives it away.
    bomb = pyvips.Image.black(10_000, 10_000).pngsave_buffer(compression=9, bitdepth=1)
    message = await _error(
        await submit(http, mesh.upload_url, bomb, "[]", filename="b.png"), 422, "too_many_pixels"
    )
    assert "50000000" in message.replace(",", "").replace("_", "")


async def test_unknown_job_is_404(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    for job_id in (str(uuid.uuid4()), "not-a-job-id"):
        async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job_id}") as response:
            await _error(response, 404, "not_found")
        async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job_id}/result") as response:
            await _error(response, 404, "not_found")


async def test_result_is_409_while_the_job_is_not_finished(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    # With the runner stopped the job stays queued (durably, in its quorum queue).
    mesh.stop("imageproc_runner")
    try:
        response = await submit(http, mesh.upload_url, photo(100, 100), "[]")
        assert response.status == 202
        job_id = (await response.json())["id"]
        async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job_id}/result") as result:
            await _error(result, 409, "not_finished")
    finally:
        mesh.start("imageproc_runner")
        mesh.wait_ready("imageproc_runner")
    job = await wait_finished(http, mesh.upload_url, job_id)
    assert job["status"] == "succeeded"


async def test_operations_catalogue(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{mesh.upload_url}/api/v1/operations") as response:
        assert response.status == 200
        body = await response.json()
    names = {op["name"] for op in body["operations"]}
    assert {"thumbnail", "grayscale", "dither", "convert"} <= names
    thumbnail = next(op for op in body["operations"] if op["name"] == "thumbnail")
    assert thumbnail["params"]["properties"]["width"]["maximum"] == 10000
