"""Golden tests of the tone family, through the whole engine on generated images."""

from pathlib import Path
from typing import Any

import pytest
import pyvips

from imageproc._dither import bayer_matrix
from imageproc.operations import run_pipeline
from pipeline import ImageLimits, parse_pipeline
from tests.imageproc.images import ramp

LIMITS = ImageLimits()
PHOTO_DIRS = (Path("/usr/share/backgrounds"), Path("/usr/share/wallpapers"))


def _flat(width: int, height: int, grey: int, bands: int = 3) -> pyvips.Image:
    image = (pyvips.Image.black(width, height, bands=bands) + grey).cast("uchar")
    return image.copy(interpretation="srgb" if bands >= 3 else "b-w")


def _noise(width: int, height: int) -> pyvips.Image:
    return pyvips.Image.gaussnoise(width, height, mean=128, sigma=40).cast("uchar")


def _run_image(image: pyvips.Image, pipeline: list[dict[str, Any]]) -> pyvips.Image:
    return _decode(_run(bytes(image.pngsave_buffer()), pipeline).data)


def _run(data: bytes, pipeline: list[dict[str, Any]]):
    return run_pipeline(data, parse_pipeline(pipeline), limits=LIMITS)


def _decode(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "")


def _values(image: pyvips.Image) -> set[int]:
    return set(bytes(image.write_to_memory()))


def _colours(image: pyvips.Image) -> set[bytes]:
    pixels = bytes(image.write_to_memory())
    size = image.bands
    return {pixels[i : i + size] for i in range(0, len(pixels), size)}


def _black_fraction(image: pyvips.Image) -> float:
    pixels = bytes(image.write_to_memory())
    return pixels.count(0) / len(pixels)


def _band_means(image: pyvips.Image) -> list[float]:
    return [image[band].avg() for band in range(image.bands)]


# --- every operation -----------------------------------------------------------------

KEEP_ALPHA: list[dict[str, Any]] = [
    {"op": "blur", "sigma": 2},
    {"op": "sharpen"},
    {"op": "brightness", "factor": 1.5},
    {"op": "contrast", "factor": 1.5},
    {"op": "gamma", "exponent": 2.2},
    {"op": "dither", "method": "palette"},
    {"op": "watermark", "text": "imagemesh"},
]


@pytest.mark.parametrize("op", KEEP_ALPHA, ids=lambda op: op["op"])
def test_colour_operations_keep_size_bands_and_alpha(op):
    image = ramp(120, 80).bandjoin(_flat(120, 80, 0, bands=1) + 77)

    out = _run_image(image, [op])

    assert (out.width, out.height, out.bands, out.format) == (120, 80, 4, "uchar")
    # Flat alpha stays flat (blur spreads it over nothing; the watermark only adds ink).
    assert out[3].min() >= 77


@pytest.mark.parametrize(
    "op",
    [op for op in KEEP_ALPHA if op["op"] != "watermark"] + [{"op": "dither", "method": "bayer"}],
    ids=lambda op: op["op"],
)
def test_grey_stays_grey(op):
    out = _run_image(ramp(60, 40).colourspace("b-w"), [op])

    assert (out.interpretation, out.bands) == ("b-w", 1)


def test_sixteen_bit_input_is_scaled_not_clipped():
    image = (ramp(40, 40).cast("ushort") * 257).copy(interpretation="rgb16")

    out = _run_image(image, [{"op": "brightness", "factor": 1}])

    assert (out.format, out.interpretation) == ("uchar", "srgb")
    assert _band_means(out) == pytest.approx(_band_means(ramp(40, 40)), abs=1)


# --- blur and sharpen ----------------------------------------------------------------


def test_blur_reduces_the_variance_of_noise_and_keeps_the_size():
    noise = _noise(200, 100)

    out = _run_image(noise, [{"op": "blur", "sigma": 3}])

    assert (out.width, out.height) == (200, 100)
    assert out.deviate() < noise.deviate() / 4
    assert out.avg() == pytest.approx(noise.avg(), abs=2)


def test_more_sigma_blurs_more():
    noise = _noise(200, 100)

    little = _run_image(noise, [{"op": "blur", "sigma": 0.5}])
    lots = _run_image(noise, [{"op": "blur", "sigma": 5}])

    assert lots.deviate() < little.deviate() < noise.deviate()


def _soft_edge() -> pyvips.Image:
    """Dark left half, light right half, joined by a soft ramp."""
    x = pyvips.Image.xyz(100, 40)[0]
    step = (x >= 50).ifthenelse(170, 80).cast("uchar")
    return step.gaussblur(2).bandjoin([step.gaussblur(2)] * 2).copy(interpretation="srgb")


def test_sharpen_increases_edge_contrast():
    soft = _soft_edge()

    out = _run_image(soft, [{"op": "sharpen", "sigma": 2, "m2": 10}])

    def steepest(image: pyvips.Image) -> float:
        grey = image.colourspace("b-w").cast("float")
        return float((grey.crop(1, 0, 99, 40) - grey.crop(0, 0, 99, 40)).max())

    assert steepest(out) > steepest(soft) * 1.2
    # Overshoot: the dark side gets darker and the light side lighter near the edge.
    assert out.min() < soft.min()
    assert out.max() > soft.max()


def test_sharpen_leaves_flat_areas_alone():
    flat = _flat(50, 50, 100)

    out = _run_image(flat, [{"op": "sharpen"}])

    assert _values(out) == {100}


# --- brightness, contrast, gamma -----------------------------------------------------


def test_brightness_doubles_a_dark_image():
    out = _run_image(_flat(40, 40, 50), [{"op": "brightness", "factor": 2}])

    assert _values(out) == {100}


def test_brightness_clips_at_white():
    out = _run_image(ramp(64, 64), [{"op": "brightness", "factor": 2}])

    assert out.max() == 255
    # Red ramps 0..255 over 64 columns: columns with red over 127 all end at 255.
    assert out[0].crop(40, 0, 24, 64).min() == 255


def test_brightness_zero_is_black_and_leaves_alpha():
    image = _flat(20, 20, 200).bandjoin(_flat(20, 20, 99, bands=1))

    out = _run_image(image, [{"op": "brightness", "factor": 0}])

    assert _colours(out) == {bytes([0, 0, 0, 99])}


def test_contrast_zero_gives_flat_mid_grey():
    out = _run_image(ramp(64, 48), [{"op": "contrast", "factor": 0}])

    assert _values(out) == {128}


@pytest.mark.parametrize(("grey", "expected"), [(100, 72), (128, 128), (200, 255), (20, 0)])
def test_contrast_stretches_around_mid_grey(grey, expected):
    out = _run_image(_flat(10, 10, grey), [{"op": "contrast", "factor": 2}])

    assert _values(out) == {expected}


@pytest.mark.parametrize(("exponent", "grey"), [(2.2, 100), (0.5, 100), (1, 77), (3, 200)])
def test_gamma_changes_mid_tones(exponent, grey):
    out = _run_image(_flat(10, 10, grey), [{"op": "gamma", "exponent": exponent}])

    expected = 255 * (grey / 255) ** (1 / exponent)
    assert out.avg() == pytest.approx(expected, abs=1)


@pytest.mark.parametrize("exponent", [0.3, 2.2])
def test_gamma_keeps_black_and_white(exponent):
    ends = _flat(10, 10, 0).join(_flat(10, 10, 255), "horizontal")

    out = _run_image(ends, [{"op": "gamma", "exponent": exponent}])

    assert out.crop(0, 0, 10, 10).max() == 0
    assert out.crop(10, 0, 10, 10).min() == 255


# --- dither: bayer -------------------------------------------------------------------


@pytest.mark.parametrize("size", [2, 4, 8])
def test_bayer_matrix_holds_each_threshold_once(size):
    matrix = bayer_matrix(size)

    assert len(matrix) == size
    assert sorted(cell for row in matrix for cell in row) == list(range(size * size))


def test_bayer_gives_a_one_bit_png():
    result = _run(ramp(64, 64).jpegsave_buffer(), [{"op": "dither", "method": "bayer"}])

    assert result.content_type == "image/png"
    assert result.data[24] == 1
    out = _decode(result.data)
    assert out.bands == 1
    assert _values(out) == {0, 255}


@pytest.mark.parametrize("size", [2, 4, 8])
@pytest.mark.parametrize(("grey", "expected_black"), [(64, 0.75), (128, 0.5), (192, 0.25)])
def test_bayer_black_fraction_tracks_brightness(size, grey, expected_black):
    pipeline = [{"op": "dither", "method": "bayer", "matrix_size": size}]

    out = _run_image(_flat(200, 200, grey), pipeline)

    assert _values(out) == {0, 255}
    assert _black_fraction(out) == pytest.approx(expected_black, abs=0.03)


def _shifted_equal(image: pyvips.Image, dx: int, dy: int) -> bool:
    width, height = image.width - dx, image.height - dy
    moved = image.crop(dx, dy, width, height)
    return bool((moved == image.crop(0, 0, width, height)).min() == 255)


# Greys whose pattern repeats every `size` pixels and not every size / 2.
@pytest.mark.parametrize(("size", "grey"), [(2, 128), (4, 96), (8, 20)])
def test_bayer_pattern_repeats_with_the_matrix_size(size, grey):
    pipeline = [{"op": "dither", "method": "bayer", "matrix_size": size}]

    out = _run_image(_flat(67, 45, grey), pipeline)

    assert _shifted_equal(out, size, 0)
    assert _shifted_equal(out, 0, size)
    assert not (_shifted_equal(out, size // 2, 0) and _shifted_equal(out, 0, size // 2))


def test_bayer_of_black_and_white_stays_put():
    ends = _flat(16, 16, 0).join(_flat(16, 16, 255), "horizontal")

    out = _run_image(ends, [{"op": "dither", "method": "bayer", "matrix_size": 8}])

    assert _values(out.crop(0, 0, 16, 16)) == {0}
    assert _values(out.crop(16, 0, 16, 16)) == {255}


def test_bayer_treats_transparency_as_white():
    transparent = _flat(20, 20, 0).bandjoin(0)

    out = _run_image(transparent, [{"op": "dither", "method": "bayer"}])

    assert _values(out) == {255}


# --- dither: palette -----------------------------------------------------------------


@pytest.mark.parametrize(("colours", "tolerance"), [(2, 8), (4, 4), (16, 3), (256, 2)])
def test_palette_keeps_at_most_n_colours_and_the_mean(colours, tolerance):
    image = ramp(160, 120)

    result = _run(
        bytes(image.pngsave_buffer()), [{"op": "dither", "method": "palette", "colours": colours}]
    )

    assert result.content_type == "image/png"
    out = _decode(result.data)
    assert (out.width, out.height, out.bands) == (160, 120, 3)
    assert len(_colours(out)) <= colours
    assert _band_means(out) == pytest.approx(_band_means(image), abs=tolerance)


def test_palette_defaults_to_sixteen_colours():
    out = _run_image(ramp(160, 120), [{"op": "dither", "method": "palette"}])

    assert 8 < len(_colours(out)) <= 16


def test_palette_result_survives_a_convert():
    data = bytes(ramp(80, 60).pngsave_buffer())
    pipeline: list[dict[str, Any]] = [
        {"op": "dither", "method": "palette", "colours": 4},
        {"op": "convert", "format": "webp"},
    ]

    result = _run(data, pipeline)

    assert result.content_type == "image/webp"


# --- watermark -----------------------------------------------------------------------

CORNERS = {
    "north-west": (0, 0),
    "north-east": (1, 0),
    "south-west": (0, 1),
    "south-east": (1, 1),
}


def _corner(image: pyvips.Image, where: tuple[int, int]) -> pyvips.Image:
    """One quarter of the image."""
    width, height = image.width // 2, image.height // 2
    return image.crop(where[0] * width, where[1] * height, width, height)


@pytest.mark.parametrize("gravity", list(CORNERS))
def test_watermark_marks_its_corner_only(gravity):
    black = _flat(300, 200, 0)

    out = _run_image(black, [{"op": "watermark", "text": "mesh", "gravity": gravity}])

    assert (out.width, out.height, out.bands) == (300, 200, 3)
    where = CORNERS[gravity]
    opposite = (1 - where[0], 1 - where[1])
    assert _corner(out, where).max() > 100
    assert _corner(out, opposite).max() == 0


@pytest.mark.parametrize("gravity", ["north", "south", "east", "west", "centre"])
def test_watermark_edges_and_centre(gravity):
    black = _flat(300, 200, 0)
    out = _run_image(black, [{"op": "watermark", "text": "mesh", "gravity": gravity}])

    ink = out.colourspace("b-w") > 0
    columns, rows = ink.project()
    xs = [x for x in range(300) if columns(x, 0)[0] > 0]
    ys = [y for y in range(200) if rows(0, y)[0] > 0]
    centre_x, centre_y = (xs[0] + xs[-1]) / 2, (ys[0] + ys[-1]) / 2
    expected_x = {"east": 300 - 16, "west": 16}.get(gravity)
    expected_y = {"south": 200 - 16, "north": 16}.get(gravity)
    if expected_x is None:
        assert centre_x == pytest.approx(150, abs=5)
    else:
        assert min(abs(xs[0] - expected_x), abs(xs[-1] - expected_x)) <= 3
    if expected_y is None:
        assert centre_y == pytest.approx(100, abs=8)
    else:
        assert min(abs(ys[0] - expected_y), abs(ys[-1] - expected_y)) <= 4


def test_watermark_opacity_zero_leaves_the_image_unchanged():
    image = ramp(120, 80)
    data = bytes(image.pngsave_buffer())

    out = _decode(_run(data, [{"op": "watermark", "text": "x", "opacity": 0}]).data)

    assert bytes(out.write_to_memory()) == bytes(image.write_to_memory())


def test_watermark_colour_and_opacity():
    black = _flat(200, 100, 0)
    pipeline = [{"op": "watermark", "text": "MESH", "colour": "#ff0000", "font_size": 40}]

    half = _run_image(black, [{**pipeline[0], "opacity": 0.5}])
    full = _run_image(black, [{**pipeline[0], "opacity": 1}])

    assert full[0].max() == 255
    assert half[0].max() == pytest.approx(128, abs=2)
    assert full[1].max() == full[2].max() == half[1].max() == 0


def test_watermark_larger_than_the_image_is_shrunk_inside_the_margins():
    black = _flat(80, 40, 0)
    op = {"op": "watermark", "text": "a rather long watermark", "font_size": 400, "margin": 5}

    out = _run_image(black, [{**op, "opacity": 1}])

    assert (out.width, out.height) == (80, 40)
    assert out.max() > 100
    inner = out.crop(5, 5, 70, 30)
    assert out.avg() * out.width * out.height == pytest.approx(
        inner.avg() * inner.width * inner.height
    )


def test_watermark_text_is_not_markup():
    out = _run_image(_flat(300, 60, 0), [{"op": "watermark", "text": "<b>a & b</b> &amp;"}])

    assert out.max() > 0


def test_watermark_on_grey_gives_colour_and_keeps_alpha():
    grey = _flat(100, 60, 30, bands=1)

    plain = _run_image(grey, [{"op": "watermark", "text": "hi", "colour": "#00ff00"}])
    with_alpha = _run_image(grey.bandjoin(255), [{"op": "watermark", "text": "hi"}])

    assert (plain.bands, plain.interpretation) == (3, "srgb")
    assert plain[1].max() > plain[0].max()
    assert (with_alpha.bands, with_alpha.hasalpha()) == (4, True)


# --- real photographs ----------------------------------------------------------------


def _smallestramp() -> Path | None:
    photos = [path for folder in PHOTO_DIRS if folder.is_dir() for path in folder.rglob("*.jpg")]
    if not photos:
        return None
    return min(photos, key=_pixels)


def _pixels(path: Path) -> int:
    image = pyvips.Image.new_from_file(str(path))
    return int(image.width * image.height)


@pytest.mark.parametrize("method", ["floyd-steinberg", "bayer", "palette"])
def test_dither_a_realramp(method):
    path = _smallestramp()
    if path is None:
        pytest.skip("no photographs under /usr/share/backgrounds or /usr/share/wallpapers")
    data = path.read_bytes()
    photo = _decode(data).autorot()

    result = _run(data, [{"op": "dither", "method": method}])

    out = _decode(result.data)
    assert result.content_type == "image/png"
    assert (out.width, out.height) == (photo.width, photo.height)
    if method == "palette":
        assert len(_colours(out)) <= 16
        assert _band_means(out) == pytest.approx(_band_means(photo), abs=4)
    else:
        assert _values(out) == {0, 255}
        lightness = photo.colourspace("b-w").avg() / 255
        assert 1 - _black_fraction(out) == pytest.approx(lightness, abs=0.03)
