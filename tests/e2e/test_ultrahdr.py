"""An UltraHDR JPEG (a JPEG with a gain map, as phones write them) is a JPEG: accepted and
processed like any other, through the running mesh."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.conftest import Mesh
from tests.e2e.helpers import decode, submit, wait_finished
from tests.ultrahdr import looks_ultra_hdr, ultra_hdr_jpeg

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("pipeline", "size"),
    [
        ([], (96, 64)),
        ([{"op": "thumbnail", "width": 48}], (48, 32)),
        ([{"op": "rotate", "angle": 90}, {"op": "grayscale"}], (64, 96)),
    ],
)
async def test_an_ultra_hdr_jpeg_is_processed_like_any_jpeg(
    mesh: Mesh,
    http: aiohttp.ClientSession,
    pipeline: list[dict[str, object]],
    size: tuple[int, int],
) -> None:
    data = ultra_hdr_jpeg(96, 64)
    assert looks_ultra_hdr(data)
    response = await submit(http, mesh.upload_url, data, json.dumps(pipeline))
    # It used to be 415 "content looks like jpeg but is not".
    assert response.status == 202, await response.text()
    job = await wait_finished(http, mesh.upload_url, (await response.json())["id"])
    assert job["status"] == "succeeded", job
    assert (job["input"]["format"], job["input"]["width"], job["input"]["height"]) == (
        "jpeg",
        96,
        64,
    )
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job['id']}/result") as result:
        assert result.status == 200
        assert result.content_type == "image/jpeg"
        output = decode(await result.read())
    assert (output.format, output.size) == ("JPEG", size)
