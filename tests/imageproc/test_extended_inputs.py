"""Pipelines over the input-only formats (decoded by Pillow in the worker, then run as
any other input): a thumbnail from each, the input described as what it was, and a
damaged body failing as ``undecodable``."""

from typing import Any

import pytest
import pyvips

from imageproc.operations import ProcessingError, run_pipeline
from imageproc.workers import PoolConfig, WorkerPool
from pipeline import ImageFormat, ImageLimits, parse_pipeline, probe_image
from tests.extended_images import (
    EXTENDED_SAMPLES,
    bmp_header,
    extended_image,
    icon_hiding_a_large_png,
)

LIMITS = ImageLimits()
INPUT_FORMAT = {
    "cur": "ico", "pbm": "pnm", "pgm": "pnm", "ppm": "pnm", "pfm": "pnm", "j2k": "jp2",
    "heic": "heif",
}  # fmt: skip


def _run(data: bytes, pipeline: list[dict[str, Any]], limits: ImageLimits = LIMITS):
    return run_pipeline(data, parse_pipeline(pipeline), limits=limits, timeout=30)


@pytest.mark.parametrize("name", EXTENDED_SAMPLES)
def test_a_thumbnail_from_each_format(name):
    result = _run(extended_image(name), [{"op": "thumbnail", "width": 16}])

    out = pyvips.Image.new_from_buffer(result.data, "")
    assert result.content_type == "image/png"  # libvips writes none of these: PNG
    assert result.info.format is ImageFormat.PNG
    assert out.width == 16
    assert out.get("vips-loader").startswith("pngload")
    assert 30 < out.avg() < 220
    assert result.input_info["format"] == INPUT_FORMAT.get(name, name)
    assert result.input_info["width"] == (32 if name in ("ico", "cur") else 40)


@pytest.mark.parametrize("name", ["bmp", "ppm", "qoi", "jp2"])
def test_converts_to_any_output_format(name):
    result = _run(extended_image(name), [{"op": "convert", "format": "jpeg", "quality": 80}])

    assert result.content_type == "image/jpeg"
    assert (result.info.width, result.info.height) == (40, 30)


def test_other_operations_run_on_the_decoded_image():
    pipeline: list[dict[str, Any]] = [
        {"op": "grayscale"},
        {"op": "thumbnail", "width": 20},
        {"op": "info"},
    ]
    result = _run(extended_image("bmp"), pipeline)

    assert result.info.width == 20
    snapshot = result.steps[-1].info
    assert snapshot is not None
    assert snapshot["width"] == 20


def test_a_truncated_body_is_undecodable():
    data = extended_image("ppm")

    with pytest.raises(ProcessingError) as caught:
        _run(data[: len(data) // 2], [{"op": "thumbnail", "width": 16}])

    assert caught.value.code == "undecodable"


def test_a_huge_header_is_refused_before_decoding():
    with pytest.raises(ProcessingError) as caught:
        _run(bmp_header(100_000, 100_000), [{"op": "thumbnail", "width": 16}])

    assert caught.value.code == "too_many_pixels"


def test_the_limits_apply():
    with pytest.raises(ProcessingError) as caught:
        _run(extended_image("qoi"), [{"op": "thumbnail", "width": 16}], ImageLimits(max_side=20))

    assert caught.value.code == "too_large_side"


@pytest.mark.timeout(60)
async def test_the_worker_pool_decodes_them_within_its_limits():
    # Real worker processes under their memory ceiling, as the service runs them.
    pool = WorkerPool(PoolConfig(workers=1, timeout=30, memory_bytes=256 * 2**20))
    await pool.start()
    try:
        ops = parse_pipeline([{"op": "thumbnail", "width": 16}])
        for name in ("bmp", "pgm", "jp2"):
            result = await pool.run(extended_image(name), ops, limits=LIMITS)
            assert (result.info.width, result.content_type) == (16, "image/png")
        with pytest.raises(ProcessingError) as caught:
            await pool.run(bmp_header(9_000, 9_000), ops, limits=LIMITS)
        assert caught.value.code == "too_many_pixels"
    finally:
        await pool.close()


def test_an_icon_hiding_a_larger_png_is_checked_before_it_is_decoded():
    # Pillow's ICO plugin decodes the largest image as it opens the file: its size is
    # read from the PNG's own header first, not from the directory's (16 x 16).
    data = icon_hiding_a_large_png(3_000, 2_000)

    with pytest.raises(ProcessingError) as caught:
        _run(data, [{"op": "thumbnail", "width": 16}], ImageLimits(max_pixels=1_000_000))

    assert caught.value.code == "too_many_pixels"
    assert "6,000,000 pixels" in caught.value.message
    assert probe_image(data, limits=LIMITS).width == 3_000
