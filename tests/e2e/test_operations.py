"""Every operation of the catalogue, end to end through the upload API."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.conftest import Mesh, job_documents
from tests.e2e.helpers import decode, photo, submit, submit_all, wait_finished
from tests.waiting import async_wait_for

pytestmark = pytest.mark.e2e

# One realistic use of each operation; (pipeline, expected output format, expected size).
SAMPLES: dict[str, tuple[list[dict[str, Any]], str, tuple[int, int] | None]] = {
    "thumbnail": (
        [{"op": "thumbnail", "width": 100, "height": 100, "fit": "cover", "crop": "attention"}],
        "jpeg",
        (100, 100),
    ),
    "resize": ([{"op": "resize", "scale": 0.5}], "jpeg", (160, 120)),
    "extract": ([{"op": "extract", "x": 10, "y": 20, "width": 50, "height": 40}], "jpeg", (50, 40)),
    "crop": ([{"op": "crop", "x": 0, "y": 0, "width": 30, "height": 30}], "jpeg", (30, 30)),
    "rotate": ([{"op": "rotate", "angle": 90}], "jpeg", (240, 320)),
    "autorotate": ([{"op": "autorotate"}], "jpeg", (320, 240)),
    "flip": ([{"op": "flip", "direction": "vertical"}], "jpeg", (320, 240)),
    "grayscale": ([{"op": "grayscale"}], "jpeg", (320, 240)),
    "blur": ([{"op": "blur", "sigma": 2}], "jpeg", (320, 240)),
    "sharpen": ([{"op": "sharpen"}], "jpeg", (320, 240)),
    "brightness": ([{"op": "brightness", "factor": 1.2}], "jpeg", (320, 240)),
    "contrast": ([{"op": "contrast", "factor": 1.5}], "jpeg", (320, 240)),
    "gamma": ([{"op": "gamma", "exponent": 0.8}], "jpeg", (320, 240)),
    "dither": ([{"op": "dither", "method": "bayer", "matrix_size": 8}], "png", (320, 240)),
    "watermark": (
        [{"op": "watermark", "text": "imagemesh", "gravity": "centre"}],
        "jpeg",
        (320, 240),
    ),
    "convert": ([{"op": "convert", "format": "avif", "quality": 60}], "avif", (320, 240)),
    "strip": ([{"op": "strip", "keep": ["icc"]}], "jpeg", (320, 240)),
    "info": ([{"op": "grayscale"}, {"op": "info"}], "jpeg", (320, 240)),
}


async def test_the_catalogue_documents_every_sampled_operation(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{mesh.upload_url}/api/v1/operations") as response:
        catalogue = (await response.json())["operations"]
    assert {op["name"] for op in catalogue} == set(SAMPLES)
    for op in catalogue:
        assert op["description"]
        assert op["params"]["type"] == "object"


async def test_every_operation_works_through_the_api(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    source = photo(320, 240)
    responses = await submit_all(
        http,
        mesh.upload_url,
        [(source, json.dumps(pipeline)) for pipeline, _, _ in SAMPLES.values()],
    )
    for name, response in zip(SAMPLES, responses, strict=True):
        assert response.status == 202, (name, await response.text())
    ids = {name: (await r.json())["id"] for name, r in zip(SAMPLES, responses, strict=True)}
    jobs = dict(
        zip(
            ids,
            await asyncio.gather(*(wait_finished(http, mesh.upload_url, i) for i in ids.values())),
            strict=True,
        )
    )
    for name, (_, fmt, size) in SAMPLES.items():
        job = jobs[name]
        assert job["status"] == "succeeded", (name, job)
        assert job["output"]["format"] == fmt, name
        if size is not None:
            assert (job["output"]["width"], job["output"]["height"]) == size, name
        async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job['id']}/result") as result:
            data = await result.read()
        if fmt != "avif":  # Pillow without a plugin cannot read AVIF; the header check below can
            assert decode(data).size == size, name
        assert job["output"]["info"]["format"] == fmt, name


async def test_image_info_is_recorded_in_provenance(
    mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    response = await submit(http, mesh.upload_url, photo(320, 240), json.dumps(SAMPLES["info"][0]))
    job = await wait_finished(http, mesh.upload_url, (await response.json())["id"])
    assert job["status"] == "succeeded"
    assert job["input"]["info"]["interpretation"] == "srgb"
    assert job["output"]["info"]["bands"] == 1

    def processed() -> dict[str, Any] | None:
        return next(
            (d for d in job_documents(mesh.env, job["id"]) if d["type"] == "image.processed"), None
        )

    doc = await async_wait_for(processed, timeout=20)
    entities = doc["prov"]["entity"]
    # PROV attribute values are literals: structured ones are typed JSON literals.
    input_info = entities[f"sha256:{job['input']['sha256']}"]["imagemesh:info"]
    output_info = entities[f"sha256:{job['output']['sha256']}"]["imagemesh:info"]
    assert input_info["type"] == output_info["type"] == "imagemesh:json"
    assert json.loads(input_info["$"])["width"] == 320
    assert json.loads(output_info["$"])["bands"] == 1
    [info_step] = [step for step in doc["data"]["steps"] if step["op"] == "info"]
    assert info_step["info"]["interpretation"] == "b-w"
