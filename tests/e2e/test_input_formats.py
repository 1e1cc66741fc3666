"""The input-only formats (BMP, PNM, HEIC, ...) through the running mesh: accepted by
upload, decoded by Pillow (HEIC through pillow-heif) in an imageproc worker; a format
still refused (PAM) gets a 415 that names what is accepted."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.conftest import Mesh
from tests.e2e.helpers import decode, submit, wait_finished
from tests.extended_images import bmp_header, extended_image, heif_header

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("name", "fmt"), [("bmp", "bmp"), ("ppm", "pnm"), ("pgm", "pnm")])
async def test_a_bmp_or_pnm_becomes_a_thumbnail(
    mesh: Mesh, http: aiohttp.ClientSession, name: str, fmt: str
) -> None:
    pipeline = json.dumps([{"op": "thumbnail", "width": 20}])
    response = await submit(http, mesh.upload_url, extended_image(name), pipeline)
    assert response.status == 202, await response.text()
    job = await wait_finished(http, mesh.upload_url, (await response.json())["id"])
    assert job["status"] == "succeeded", job
    assert (job["input"]["format"], job["input"]["width"], job["input"]["height"]) == (fmt, 40, 30)
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job['id']}/result") as result:
        assert result.status == 200
        assert result.content_type == "image/png"
        output = decode(await result.read())
    assert (output.format, output.size) == ("PNG", (20, 15))
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job['id']}/input") as stored:
        assert stored.status == 200
        assert stored.content_type == ("image/bmp" if fmt == "bmp" else "image/x-portable-anymap")
        assert await stored.read() == extended_image(name)


async def test_a_bmp_header_over_the_limits_is_422_before_decoding(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    response = await submit(http, mesh.upload_url, bmp_header(100_000, 100_000), "[]")
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["code"] == "too_many_pixels"


async def test_an_iphone_style_heic_becomes_a_jpeg(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    pipeline = json.dumps([{"op": "thumbnail", "width": 20}, {"op": "convert", "format": "jpeg"}])
    heic = extended_image("heic")
    response = await submit(http, mesh.upload_url, heic, pipeline, filename="IMG_0001.HEIC")
    assert response.status == 202, await response.text()
    job = await wait_finished(http, mesh.upload_url, (await response.json())["id"])
    assert job["status"] == "succeeded", job
    assert (job["input"]["format"], job["input"]["width"], job["input"]["height"]) == (
        "heif",
        40,
        30,
    )
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job['id']}/result") as result:
        assert result.status == 200
        output = decode(await result.read())
    assert (output.format, output.size) == ("JPEG", (20, 15))
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job['id']}/input") as stored:
        assert (stored.status, stored.content_type) == (200, "image/heif")
        assert await stored.read() == heic


async def test_a_heic_header_over_the_limits_is_422_before_decoding(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    response = await submit(http, mesh.upload_url, heif_header(9_000, 9_000), "[]")
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["code"] == "too_many_pixels"


async def test_pam_is_415_naming_the_accepted_formats(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    pam = b"P7\nWIDTH 2\nHEIGHT 2\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n" + bytes(12)
    response = await submit(http, mesh.upload_url, pam, "[]", filename="picture.pam")
    assert response.status == 415
    message = (await response.json())["error"]["message"]
    assert "BMP" in message
    assert "HEIF/HEIC" in message


async def test_about_lists_the_input_formats(mesh: Mesh, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{mesh.upload_url}/api/v1/about") as response:
        about = await response.json()
    assert about["input_formats"] == [
        "jpeg", "png", "webp", "gif", "tiff", "avif", "bmp", "ico", "pnm", "qoi", "jp2", "heif",
    ]  # fmt: skip
