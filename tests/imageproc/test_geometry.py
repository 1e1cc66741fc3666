"""Golden tests of the geometry operations, run through the engine on generated images."""

import math
from pathlib import Path
from typing import Any

import pytest
import pyvips

from imageproc._canvas import Canvas
from imageproc.operations import ProcessingError, run_pipeline
from imageproc.ops.geometry import autorotate, autorotate_at_load, extract
from pipeline import ImageFormat, ImageLimits, parse_pipeline
from pipeline.geometry import Autorotate, Extract
from tests.imageproc.images import ramp

LIMITS = ImageLimits()
RED = (255, 0, 0)
BACKGROUNDS = Path("/usr/share/backgrounds")


def _marked(width: int, height: int, side: int = 8) -> pyvips.Image:
    """Dark grey with a red square in the top-left corner."""
    grey = (pyvips.Image.black(width, height) + 40).bandjoin([40, 40])
    image = grey.copy(interpretation="srgb").cast("uchar")
    return image.draw_rect(list(RED), 0, 0, side, side, fill=True)


def _run(data: bytes, pipeline: list[dict[str, Any]], limits: ImageLimits = LIMITS):
    return run_pipeline(data, parse_pipeline(pipeline), limits=limits)


def _out(data: bytes, pipeline: list[dict[str, Any]]) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(_run(data, pipeline).data, "")


def _size(image: pyvips.Image) -> tuple[int, int]:
    return image.width, image.height


def _same(a: pyvips.Image, b: pyvips.Image) -> bool:
    return _size(a) == _size(b) and a.bands == b.bands and (a - b).abs().max() == 0


def _is_red(pixel: list[float]) -> bool:
    return pixel[0] > 200 and pixel[1] < 80 and pixel[2] < 80


def _corners(image: pyvips.Image) -> dict[str, list[float]]:
    right, bottom = image.width - 1, image.height - 1
    return {
        "top-left": image(0, 0),
        "top-right": image(right, 0),
        "bottom-left": image(0, bottom),
        "bottom-right": image(right, bottom),
    }


def _red_corners(image: pyvips.Image) -> list[str]:
    return [name for name, pixel in _corners(image).items() if _is_red(pixel)]


def _with_exif_orientation(image: pyvips.Image, orientation: int) -> bytes:
    tagged = image.copy()
    tagged.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    return bytes(tagged.jpegsave_buffer(Q=95))


def _refused(data: bytes, pipeline: list[dict[str, Any]]) -> ProcessingError:
    with pytest.raises(ProcessingError) as caught:
        _run(data, pipeline)
    return caught.value


# --- thumbnail -----------------------------------------------------------------------

# Thumbnail as the first operation shrinks on load; after a flip it works on pixels.
PATHS = pytest.mark.parametrize("before", [[], [{"op": "flip"}]], ids=["from-bytes", "after-flip"])


@PATHS
@pytest.mark.parametrize(
    ("size", "params", "expected"),
    [
        ((400, 200), {"width": 100, "height": 100}, (100, 50)),
        ((400, 200), {"width": 100, "height": 100, "fit": "cover"}, (100, 100)),
        ((200, 400), {"width": 100, "height": 50, "fit": "cover"}, (100, 50)),
        ((400, 200), {"width": 120, "height": 30, "fit": "cover", "crop": "entropy"}, (120, 30)),
        ((400, 200), {"width": 100, "height": 100, "fit": "fill"}, (100, 100)),
        ((400, 200), {"width": 50, "height": 150, "fit": "fill"}, (50, 150)),
        # Never enlarged: cover crops what it can, fill keeps each side at most its own.
        ((40, 20), {"width": 30, "height": 30, "fit": "cover"}, (30, 20)),
        ((40, 20), {"width": 100, "height": 10, "fit": "fill"}, (40, 10)),
        ((40, 20), {"width": 30, "height": 30, "fit": "cover", "upscale": True}, (30, 30)),
        ((40, 20), {"width": 100, "height": 10, "fit": "fill", "upscale": True}, (100, 10)),
    ],
)
def test_thumbnail_fit_gives_the_box(before, size, params, expected):
    data = ramp(*size).pngsave_buffer()

    result = _run(data, [*before, {"op": "thumbnail", **params}])

    assert _size(pyvips.Image.new_from_buffer(result.data, "")) == expected
    assert (result.info.width, result.info.height) == expected


def test_thumbnail_fill_measures_the_upright_image():
    # Stored 40x20 on its side (orientation 6): upright it is 20x40.
    data = _with_exif_orientation(ramp(40, 20), 6)

    out = _out(data, [{"op": "thumbnail", "width": 100, "height": 30, "fit": "fill"}])

    assert _size(out) == (20, 30)


def _spotlit(width: int, height: int, left: int, top: int, side: int) -> pyvips.Image:
    """Dark, faintly noisy background with one white square."""
    noise = pyvips.Image.gaussnoise(width, height, mean=30, sigma=4)
    dark = noise.bandjoin([noise, noise]).cast("uchar").copy(interpretation="srgb")
    return dark.draw_rect([255, 255, 255], left, top, side, side, fill=True)


@PATHS
def test_thumbnail_cover_attention_keeps_the_feature(before):
    # The square is far right: a centre crop of the 200x100 shrink misses it.
    data = _spotlit(400, 200, left=330, top=80, side=40).pngsave_buffer()
    box = {"op": "thumbnail", "width": 100, "height": 100, "fit": "cover"}

    centre = _out(data, [*before, box])
    attention = _out(data, [*before, {**box, "crop": "attention"}])

    assert _size(attention) == (100, 100)
    assert centre.max() < 100
    assert attention.max() == 255
    # The whole 20x20 square made it: 400 pixels of white in three bands.
    assert (attention > 200).avg() * 100 * 100 * 3 / 255 >= 400 * 3 * 0.9


def test_thumbnail_cover_of_an_animation_keeps_every_frame():
    frames = [(pyvips.Image.black(60, 40) + 60 * i).cast("uchar") for i in range(3)]
    roll = pyvips.Image.arrayjoin(frames, across=1).copy()
    roll.set_type(pyvips.GValue.gint_type, "page-height", 40)
    roll.set_type(pyvips.GValue.array_int_type, "delay", [100, 100, 100])
    data = roll.gifsave_buffer()

    result = _run(data, [{"op": "thumbnail", "width": 30, "height": 30, "fit": "cover"}])

    out = pyvips.Image.new_from_buffer(result.data, "n=-1")
    assert (result.info.width, result.info.height, result.info.pages) == (30, 30, 3)
    assert (out.width, out.height, out.get_page_height()) == (30, 90, 30)
    assert [round(out[0].crop(0, 30 * i, 30, 30).avg()) for i in range(3)] == [0, 60, 120]


def _aramp() -> Path | None:
    photos = sorted(BACKGROUNDS.glob("*.jpg")) if BACKGROUNDS.is_dir() else []
    return photos[0] if photos else None


@pytest.mark.skipif(_aramp() is None, reason=f"no photographs under {BACKGROUNDS}")
def test_thumbnail_cover_attention_of_a_realramp():
    photo = _aramp()
    assert photo is not None
    data = photo.read_bytes()
    params = {"width": 256, "height": 256, "fit": "cover", "crop": "attention"}

    result = _run(data, [{"op": "thumbnail", **params}])

    assert result.content_type == "image/jpeg"
    assert (result.info.width, result.info.height) == (256, 256)


# --- resize --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"scale": 0.5}, (51, 41)),
        ({"scale": 2}, (202, 162)),
        ({"scale": 0.5, "vscale": 2.0}, (51, 162)),
        ({"scale": 0.001}, (1, 1)),
        *[({"scale": 0.3, "kernel": kernel}, (30, 24)) for kernel in ("nearest", "cubic")],
        *[({"scale": 0.3, "kernel": kernel}, (30, 24)) for kernel in ("linear", "mitchell")],
        *[({"scale": 0.3, "kernel": kernel}, (30, 24)) for kernel in ("lanczos2", "lanczos3")],
    ],
)
def test_resize_scales_and_rounds(params, expected):
    data = ramp(101, 81).pngsave_buffer()

    out = _out(data, [{"op": "resize", **params}])

    assert _size(out) == expected


def test_resize_nearest_copies_pixels():
    source = ramp(30, 20)

    out = _out(source.pngsave_buffer(), [{"op": "resize", "scale": 3, "kernel": "nearest"}])

    assert _same(out, source.zoom(3, 3))


def test_resize_nearest_keeps_a_dither_one_bit():
    data = ramp(64, 64).pngsave_buffer()

    result = _run(data, [{"op": "dither"}, {"op": "resize", "scale": 2, "kernel": "nearest"}])

    assert result.data[24] == 1  # IHDR bit depth


# --- extract and crop ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["extract", "crop"])
def test_extract_cuts_out_the_region(name):
    source = ramp(100, 80)

    out = _out(source.pngsave_buffer(), [{"op": name, "x": 10, "y": 20, "width": 30, "height": 40}])

    assert _same(out, source.crop(10, 20, 30, 40))


@pytest.mark.parametrize("name", ["extract", "crop"])
def test_extract_of_the_whole_image_is_the_image(name):
    source = ramp(100, 80)

    out = _out(source.pngsave_buffer(), [{"op": name, "x": 0, "y": 0, "width": 100, "height": 80}])

    assert _same(out, source)


@pytest.mark.parametrize(
    ("region", "message"),
    [
        ((10, 10, 200, 200), "region 10,10 200x200 exceeds the 100x80 image"),
        ((100, 0, 1, 1), "region 100,0 1x1 exceeds the 100x80 image"),
        ((0, 1, 100, 80), "region 0,1 100x80 exceeds the 100x80 image"),
    ],
)
def test_extract_outside_the_image_is_refused(region, message):
    x, y, width, height = region
    canvas = Canvas(ramp(100, 80), ImageFormat.PNG)

    with pytest.raises(ValueError, match=f"^{message}$"):
        extract(canvas, Extract(x=x, y=y, width=width, height=height))


@pytest.mark.parametrize("name", ["extract", "crop"])
def test_extract_outside_the_image_names_the_step(name):
    data = ramp(100, 80).pngsave_buffer()
    region = {"x": 10, "y": 10, "width": 200, "height": 200}

    error = _refused(data, [{"op": "flip"}, {"op": name, **region}])

    assert error.code == "invalid_parameter"
    assert error.message == f"operation 2 ({name}): region 10,10 200x200 exceeds the 100x80 image"


def test_extract_is_checked_against_the_image_at_that_step():
    data = ramp(100, 80).pngsave_buffer()
    region = {"x": 0, "y": 0, "width": 60, "height": 60}

    error = _refused(data, [{"op": "thumbnail", "width": 50}, {"op": "extract", **region}])

    assert error.message == "operation 2 (extract): region 0,0 60x60 exceeds the 50x40 image"


# --- rotate --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("angle", "expected"),
    [
        (90, lambda image: image.rot90()),
        (-270, lambda image: image.rot90()),
        (180, lambda image: image.flip("horizontal").flip("vertical")),
        (-180, lambda image: image.rot180()),
        (270, lambda image: image.rot270()),
        (-90.0, lambda image: image.rot270()),
        (0, lambda image: image),
        (360, lambda image: image),
        (-360, lambda image: image),
    ],
)
def test_rotate_by_right_angles_is_lossless(angle, expected):
    source = ramp(40, 20)

    out = _out(source.pngsave_buffer(), [{"op": "rotate", "angle": angle}])

    assert _same(out, expected(source))


def test_rotate_90_four_times_gives_the_same_pixels():
    source = ramp(40, 20)

    out = _out(source.pngsave_buffer(), [{"op": "rotate", "angle": 90}] * 4)

    assert _same(out, source)


def test_rotate_90_is_clockwise():
    out = _out(_marked(40, 20).pngsave_buffer(), [{"op": "rotate", "angle": 90}])

    assert _size(out) == (20, 40)
    assert _red_corners(out) == ["top-right"]


@pytest.mark.parametrize("angle", [30, -30, 45.5, 100, 200, -315])
def test_rotate_by_other_angles_grows_to_hold_the_image(angle):
    width, height = 40, 20
    rad = math.radians(angle)
    grown_width = abs(width * math.cos(rad)) + abs(height * math.sin(rad))
    grown_height = abs(width * math.sin(rad)) + abs(height * math.cos(rad))

    out = _out(ramp(width, height).pngsave_buffer(), [{"op": "rotate", "angle": angle}])

    assert out.width == pytest.approx(grown_width, abs=1)
    assert out.height == pytest.approx(grown_height, abs=1)


def test_rotate_fills_the_corners_with_the_background():
    data = _rgb_grey(60, 40, 128).pngsave_buffer()

    out = _out(data, [{"op": "rotate", "angle": 30, "background": "#FF0000"}])

    assert out.bands == 3
    assert all(pixel == [255, 0, 0] for pixel in _corners(out).values())
    assert out(out.width // 2, out.height // 2) == [128, 128, 128]


def test_rotate_with_a_transparent_background_adds_alpha():
    data = _rgb_grey(60, 40, 128).pngsave_buffer()

    out = _out(data, [{"op": "rotate", "angle": 30, "background": "#00000000"}])

    assert (out.bands, out.hasalpha()) == (4, True)
    assert all(pixel[3] == 0 for pixel in _corners(out).values())
    assert out(out.width // 2, out.height // 2) == [128, 128, 128, 255]


def test_rotate_grey_image_onto_a_colour_becomes_colour():
    data = pyvips.Image.black(60, 40).cast("uchar").pngsave_buffer()
    assert pyvips.Image.new_from_buffer(data, "").bands == 1

    out = _out(data, [{"op": "rotate", "angle": 30, "background": "#00ff00"}])

    assert out.bands == 3
    assert out(0, 0) == [0, 255, 0]


def test_rotate_grey_image_onto_grey_stays_grey():
    data = pyvips.Image.black(60, 40).cast("uchar").pngsave_buffer()

    out = _out(data, [{"op": "rotate", "angle": 30, "background": "#808080"}])

    assert out.bands == 1
    assert out(0, 0) == [128]


def _rgb_grey(width: int, height: int, grey: int) -> pyvips.Image:
    return (
        (pyvips.Image.black(width, height, bands=3) + grey)
        .cast("uchar")
        .copy(interpretation="srgb")
    )


# --- flip ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "corner"),
    [
        ({}, "top-right"),
        ({"direction": "horizontal"}, "top-right"),
        ({"direction": "vertical"}, "bottom-left"),
    ],
)
def test_flip_moves_the_marked_corner(params, corner):
    out = _out(_marked(40, 20).pngsave_buffer(), [{"op": "flip", **params}])

    assert _size(out) == (40, 20)
    assert _red_corners(out) == [corner]


def test_flip_twice_gives_the_same_pixels():
    source = ramp(40, 20)

    out = _out(source.pngsave_buffer(), [{"op": "flip", "direction": "vertical"}] * 2)

    assert _same(out, source)


# --- autorotate ----------------------------------------------------------------------

# What to store so that a viewer obeying EXIF orientation n shows the upright image:
# the inverse of the turn orientation n asks for.
STORED = {
    1: lambda upright: upright,
    2: lambda upright: upright.flip("horizontal"),
    3: lambda upright: upright.rot180(),
    4: lambda upright: upright.flip("vertical"),
    5: lambda upright: upright.rot90().flip("horizontal"),  # transpose
    6: lambda upright: upright.rot270(),
    7: lambda upright: upright.rot270().flip("horizontal"),  # transverse
    8: lambda upright: upright.rot90(),
}


@pytest.mark.parametrize("orientation", sorted(STORED))
@pytest.mark.parametrize(
    "pipeline",
    [[], [{"op": "autorotate"}], [{"op": "flip"}, {"op": "autorotate"}, {"op": "flip"}]],
    ids=["at-load", "explicit", "idempotent"],
)
def test_autorotate_turns_every_orientation_upright(orientation, pipeline):
    data = _with_exif_orientation(STORED[orientation](_marked(48, 24)), orientation)

    out = _out(data, pipeline)

    assert _size(out) == (48, 24)
    assert _red_corners(out) == ["top-left"]
    assert "orientation" not in out.get_fields()


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_thumbnail_from_bytes_turns_every_orientation_upright(orientation):
    data = _with_exif_orientation(STORED[orientation](_marked(96, 48, side=16)), orientation)

    out = _out(data, [{"op": "thumbnail", "width": 48}])

    assert _size(out) == (48, 24)
    assert _red_corners(out) == ["top-left"]


@pytest.mark.parametrize("orientation", [3, 6])
@pytest.mark.parametrize(
    "before", [[], [{"op": "thumbnail", "width": 1000}]], ids=["load", "thumbnail"]
)
def test_autorotate_disabled_keeps_the_stored_pixels(orientation, before):
    stored = STORED[orientation](_marked(48, 24))
    data = _with_exif_orientation(stored, orientation)

    out = _out(data, [*before, {"op": "autorotate", "enabled": False}])

    assert _size(out) == _size(stored)
    assert _red_corners(out) == _red_corners(stored)
    assert "orientation" not in out.get_fields() or out.get("orientation") == 1


def _tagged_canvas(orientation: int) -> Canvas:
    image = _marked(40, 20).copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    return Canvas(image, ImageFormat.JPEG)


def test_autorotate_function_disabled_leaves_pixels_and_neutralises_the_tag():
    canvas = _tagged_canvas(6)

    out = autorotate(canvas, Autorotate(enabled=False)).image

    assert _same(out, canvas.image)
    assert out.get("orientation") == 1


def test_autorotate_function_is_idempotent():
    once = autorotate(_tagged_canvas(6), Autorotate())

    twice = autorotate(once, Autorotate())

    assert _size(once.image) == (20, 40)
    assert _same(twice.image, once.image)


@pytest.mark.parametrize(
    ("pipeline", "expected"),
    [
        ([], True),
        ([{"op": "autorotate"}], True),
        ([{"op": "flip"}, {"op": "autorotate", "enabled": False}], False),
    ],
)
def test_autorotate_at_load_unless_disabled(pipeline, expected):
    assert autorotate_at_load(parse_pipeline(pipeline)) is expected


# --- steps ---------------------------------------------------------------------------


def test_steps_record_geometry_defaults():
    data = ramp(40, 30).pngsave_buffer()
    pipeline = [
        {"op": "thumbnail", "width": 20, "height": 20, "fit": "cover"},
        {"op": "rotate", "angle": 10, "background": "#ABCDEF"},
    ]

    result = _run(data, pipeline)

    assert [(step.op, step.params) for step in result.steps] == [
        ("thumbnail", {"width": 20, "height": 20, "fit": "cover", "upscale": False}),
        ("rotate", {"angle": 10.0, "background": "#abcdef"}),
    ]
