from typing import Any

import pytest
import pyvips

from imageproc.operations import OPERATIONS, ProcessingError, run_pipeline
from pipeline import OPERATION_MODELS, ImageFormat, ImageLimits, parse_pipeline
from tests.imageproc.images import LIMITS, MAGIC, ramp


def _rgb(width: int, height: int, grey: int = 128) -> pyvips.Image:
    return (
        (pyvips.Image.black(width, height) + grey)
        .bandjoin([grey, grey])
        .copy(interpretation="srgb")
        .cast("uchar")
    )


def _run(data: bytes, pipeline: list[dict[str, Any]], limits: ImageLimits = LIMITS):
    return run_pipeline(data, parse_pipeline(pipeline), limits=limits)


def _decode(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "")


def _with_exif_orientation(image: pyvips.Image, orientation: int) -> bytes:
    tagged = image.copy()
    tagged.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    return bytes(tagged.jpegsave_buffer())


def test_every_catalogue_operation_has_a_function():
    assert set(OPERATIONS) == set(OPERATION_MODELS)


# --- thumbnail -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "params", "expected"),
    [
        ((400, 200), {"width": 100}, (100, 50)),
        ((400, 200), {"height": 100}, (200, 100)),
        ((400, 200), {"width": 100, "height": 100}, (100, 50)),
        ((200, 400), {"width": 100, "height": 100}, (50, 100)),
        ((400, 200), {"width": 300, "height": 30}, (60, 30)),
    ],
)
def test_thumbnail_fits_inside_keeping_aspect_ratio(size, params, expected):
    data = ramp(*size).pngsave_buffer()

    result = _run(data, [{"op": "thumbnail", **params}])

    out = _decode(result.data)
    assert (out.width, out.height) == expected
    assert (result.info.width, result.info.height) == expected


def test_thumbnail_does_not_upscale_by_default():
    data = ramp(40, 20).pngsave_buffer()

    result = _run(data, [{"op": "thumbnail", "width": 400}])

    assert (result.info.width, result.info.height) == (40, 20)


def test_thumbnail_upscales_when_asked():
    data = ramp(40, 20).pngsave_buffer()

    result = _run(data, [{"op": "thumbnail", "width": 400, "upscale": True}])

    assert (result.info.width, result.info.height) == (400, 200)


def test_thumbnail_after_another_operation():
    data = ramp(400, 200).jpegsave_buffer()

    result = _run(data, [{"op": "grayscale"}, {"op": "thumbnail", "width": 100}])

    out = _decode(result.data)
    assert (out.width, out.height, out.bands) == (100, 50, 1)


def test_thumbnail_result_over_the_limits_is_refused():
    data = ramp(40, 20).pngsave_buffer()

    with pytest.raises(ProcessingError) as caught:
        _run(data, [{"op": "thumbnail", "height": 10000, "upscale": True}])

    assert caught.value.code == "too_many_pixels"
    assert caught.value.message == (
        "operation 1 (thumbnail): result image has 200,000,000 pixels (200 MP); "
        "at most 50,000,000 pixels (50 MP) are allowed"
    )


# --- grayscale -----------------------------------------------------------------------


def test_grayscale_gives_one_band():
    data = ramp(30, 20).jpegsave_buffer()

    result = _run(data, [{"op": "grayscale"}])

    out = _decode(result.data)
    assert out.bands == 1
    assert result.info.bands == 1
    assert result.content_type == "image/jpeg"


def test_grayscale_keeps_alpha():
    data = ramp(30, 20).bandjoin(200).pngsave_buffer()

    result = _run(data, [{"op": "grayscale"}])

    out = _decode(result.data)
    assert (out.bands, out.hasalpha()) == (2, True)


# --- dither --------------------------------------------------------------------------


def _values(image: pyvips.Image) -> set[int]:
    return set(bytes(image.write_to_memory()))


def _black_fraction(image: pyvips.Image) -> float:
    pixels = bytes(image.write_to_memory())
    return pixels.count(0) / len(pixels)


def test_dither_gives_pure_black_and_white_png():
    data = ramp(120, 80).jpegsave_buffer()

    result = _run(data, [{"op": "dither"}])

    assert result.data.startswith(MAGIC["png"])
    assert result.content_type == "image/png"
    assert result.info.format is ImageFormat.PNG
    out = _decode(result.data)
    assert out.bands == 1
    assert _values(out) == {0, 255}


def test_dither_png_is_one_bit_deep():
    result = _run(ramp(64, 64).pngsave_buffer(), [{"op": "dither"}])

    # IHDR: 8-byte signature, 4 length, 4 type, 4 width, 4 height, then the bit depth.
    assert result.data[24] == 1


@pytest.mark.parametrize(("grey", "expected_black"), [(64, 0.75), (128, 0.5), (192, 0.25)])
def test_dither_black_fraction_tracks_brightness(grey, expected_black):
    data = _rgb(200, 200, grey).pngsave_buffer()

    out = _decode(_run(data, [{"op": "dither"}]).data)

    assert _black_fraction(out) == pytest.approx(expected_black, abs=0.02)


def test_dither_of_black_and_white_stays_put():
    black = _decode(_run(_rgb(20, 20, 0).pngsave_buffer(), [{"op": "dither"}]).data)
    white = _decode(_run(_rgb(20, 20, 255).pngsave_buffer(), [{"op": "dither"}]).data)

    assert _values(black) == {0}
    assert _values(white) == {255}


def test_dither_treats_transparency_as_white():
    transparent = _rgb(20, 20, 0).bandjoin(0).pngsave_buffer()

    out = _decode(_run(transparent, [{"op": "dither"}]).data)

    assert _values(out) == {255}


def test_convert_after_dither_changes_the_format():
    data = ramp(50, 50).pngsave_buffer()

    result = _run(data, [{"op": "dither"}, {"op": "convert", "format": "webp"}])

    assert result.data.startswith(MAGIC["webp"])
    assert result.content_type == "image/webp"


def test_thumbnail_after_dither_is_no_longer_one_bit():
    data = ramp(100, 100).pngsave_buffer()

    result = _run(data, [{"op": "dither"}, {"op": "thumbnail", "width": 33}])

    assert result.data[24] == 8
    assert _decode(result.data).width == 33


# --- convert and output format -------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_convert_sets_magic_and_content_type(fmt):
    data = ramp(40, 30).pngsave_buffer()

    result = _run(data, [{"op": "convert", "format": fmt}])

    assert result.data.startswith(MAGIC[fmt])
    assert result.content_type == f"image/{fmt}"
    assert result.info.format == fmt
    assert _decode(result.data).width == 40


def test_convert_quality_changes_the_size():
    data = ramp(200, 200).pngsave_buffer()

    low = _run(data, [{"op": "convert", "format": "jpeg", "quality": 10}])
    high = _run(data, [{"op": "convert", "format": "jpeg", "quality": 95}])

    assert len(low.data) < len(high.data)


def test_convert_to_jpeg_flattens_alpha():
    data = ramp(20, 20).bandjoin(128).pngsave_buffer()

    result = _run(data, [{"op": "convert", "format": "jpeg"}])

    assert _decode(result.data).bands == 3


@pytest.mark.parametrize("fmt", list(ImageFormat))
def test_empty_pipeline_keeps_the_input_format(fmt):
    data = ramp(16, 12).write_to_buffer(fmt.extension)

    result = _run(data, [])

    assert result.steps == ()
    assert result.data.startswith(MAGIC[fmt.value])
    assert result.content_type == fmt.content_type
    assert (result.info.width, result.info.height) == (16, 12)


def test_steps_record_each_operation():
    data = ramp(40, 30).pngsave_buffer()

    result = _run(data, [{"op": "thumbnail", "width": 20}, {"op": "convert", "format": "webp"}])

    assert [(step.op, step.params) for step in result.steps] == [
        ("thumbnail", {"width": 20, "fit": "inside", "upscale": False}),
        ("convert", {"format": "webp", "quality": 80, "progressive": False, "lossless": False}),
    ]
    assert all(step.duration_ms >= 0 for step in result.steps)
    assert result.encode_ms >= 0


# --- orientation and metadata --------------------------------------------------------


@pytest.mark.parametrize(
    "pipeline", [[], [{"op": "grayscale"}], [{"op": "thumbnail", "width": 1000}]]
)
def test_exif_orientation_is_applied(pipeline):
    data = _with_exif_orientation(ramp(40, 20), 6)
    assert _decode(data).get("orientation") == 6

    out = _decode(_run(data, pipeline).data)

    assert (out.width, out.height) == (20, 40)
    assert "orientation" not in out.get_fields()


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_metadata_is_stripped(fmt):
    data = _with_exif_orientation(ramp(40, 20), 1)
    assert "exif-data" in _decode(data).get_fields()

    out = _decode(_run(data, [{"op": "convert", "format": fmt}]).data)

    fields = out.get_fields()
    assert "exif-data" not in fields
    assert "xmp-data" not in fields
    assert "icc-profile-data" not in fields


def test_output_is_srgb():
    data = ramp(20, 20).colourspace("lab").tiffsave_buffer()

    result = _run(data, [{"op": "convert", "format": "png"}])

    out = _decode(result.data)
    assert (out.interpretation, out.format, out.bands) == ("srgb", "uchar", 3)


# --- errors --------------------------------------------------------------------------


def _refused(
    data: bytes, pipeline: list[dict[str, Any]], limits: ImageLimits = LIMITS
) -> ProcessingError:
    with pytest.raises(ProcessingError) as caught:
        _run(data, pipeline, limits)
    return caught.value


def test_over_limit_input_is_refused_before_decoding():
    # A valid header over a corrupt body: the limit wins because nothing was decoded.
    png = bytes(pyvips.Image.gaussnoise(20, 20).cast("uchar").pngsave_buffer())
    body = png.index(b"IDAT") + 4
    corrupt = png[:body] + b"\x00" * (len(png) - body)

    error = _refused(corrupt, [{"op": "grayscale"}], ImageLimits(max_pixels=100))

    assert error.code == "too_many_pixels"
    assert error.message == "image has 400 pixels; at most 100 pixels are allowed"


def test_unsupported_type_is_refused():
    error = _refused(b"<svg xmlns='http://www.w3.org/2000/svg'/>", [])

    assert error.code == "unsupported_type"


def test_unreadable_header_is_undecodable():
    error = _refused(b"\x89PNG\r\n\x1a\n" + b"junk" * 20, [{"op": "grayscale"}])

    assert error.code == "undecodable"


@pytest.mark.parametrize(
    "pipeline", [[], [{"op": "grayscale"}], [{"op": "thumbnail", "width": 50}], [{"op": "dither"}]]
)
def test_truncated_body_is_undecodable(pipeline):
    jpeg = bytes(pyvips.Image.gaussnoise(300, 200).cast("uchar").jpegsave_buffer())

    error = _refused(jpeg[: len(jpeg) // 2], pipeline)

    assert error.code == "undecodable"
    assert "corrupt or truncated" in error.message


@pytest.mark.parametrize(
    "pipeline", [[{"op": "convert", "format": "webp"}], [{"op": "thumbnail", "width": 50}]]
)
def test_a_corrupt_input_says_decoding_it_failed_not_the_step_that_noticed(pipeline):
    # libvips decodes lazily: the encoder (or a thumbnail) is what first reads the pixels,
    # but what failed is decoding the input, and that is what a user is told.
    jpeg = bytes(pyvips.Image.gaussnoise(300, 200).cast("uchar").jpegsave_buffer())

    error = _refused(jpeg[: len(jpeg) // 2], pipeline)

    assert error.code == "undecodable"
    assert error.message == ("the input image cannot be decoded: its data is corrupt or truncated")


def test_failing_operation_is_named(monkeypatch):
    def broken(canvas, op):
        return canvas.image.flip("sideways-ish")

    monkeypatch.setitem(OPERATIONS, "grayscale", broken)
    data = ramp(10, 10).pngsave_buffer()

    error = _refused(data, [{"op": "thumbnail", "width": 5}, {"op": "grayscale"}])

    assert error.code == "operation_failed"
    assert error.message.startswith("operation 2 (grayscale) failed: ")


def test_a_sequential_read_asked_out_of_order_is_run_again_with_random_access(monkeypatch):
    """libvips' sequential JPEG read sometimes fails a large blur under threading ("out of
    order read", about 1 run in 5 for sigma 90 on a 16 MP photo): the job must not fail."""
    real_blur = OPERATIONS["blur"]
    accesses: list[str] = []

    def blur_that_reads_behind_a_sequential_load(canvas, op):
        # A sequential load cannot give rows it has passed; a random-access one can.
        sequential = canvas.image.get_typeof("vips-sequential") != 0
        accesses.append("sequential" if sequential else "random")
        if sequential:
            raise pyvips.Error("unable to call gaussblur", "VipsJpeg: out of order read at line 8")
        return real_blur(canvas, op)

    monkeypatch.setitem(OPERATIONS, "blur", blur_that_reads_behind_a_sequential_load)
    data = _rgb(64, 48).jpegsave_buffer()
    result = _run(data, [{"op": "blur", "sigma": 2}])
    assert accesses == ["sequential", "random"]
    assert _decode(result.data).width == 64
