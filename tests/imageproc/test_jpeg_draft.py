"""A leading thumbnail of a JPEG decodes it with Pillow's DCT scaling (faster than
pyvips-binary's decoder) and must give what libvips' own thumbnail gives: the same size,
orientation and colours."""

from __future__ import annotations

from typing import Any

import pytest
import pyvips

import imageproc.ops.geometry as geometry
from benchmarks.quality import ssim
from pipeline.geometry import Thumbnail
from tests.imageproc.images import ramp

BOX = Thumbnail(width=160, height=160)


def photo(width: int = 1200, height: int = 800) -> Any:
    """Smooth colour with detail, as a photo has."""
    xy = pyvips.Image.xyz(width, height)
    base = (xy[0] * (200 / width) + 20).bandjoin(
        [xy[1] * (200 / height) + 30, ((xy[0] + xy[1]) / 13).sin() * 60 + 120]
    )
    return (base + pyvips.Image.gaussnoise(width, height, sigma=6, seed=3)).cast("uchar")


def jpeg(image: Any, **options: Any) -> bytes:
    return bytes(image.jpegsave_buffer(Q=90, **options))


def both(data: bytes, monkeypatch: pytest.MonkeyPatch, op: Thumbnail = BOX) -> tuple[Any, Any]:
    """The thumbnail through Pillow's scaled decode (checked to be taken), and through
    libvips' thumbnail."""
    decoded: list[object] = []
    real = geometry.decode_jpeg_scaled

    def spy(*args: Any) -> Any:
        decoded.append(result := real(*args))
        return result

    with monkeypatch.context() as patched:
        patched.setattr(geometry, "decode_jpeg_scaled", spy)
        fast = geometry.thumbnail_from_buffer(data, op, "")
    assert decoded, "the scaled decode was not tried"
    assert decoded[0] is not None, "the scaled decode refused this JPEG"
    with monkeypatch.context() as patched:
        patched.setattr(geometry, "decode_jpeg_scaled", lambda *args: None)
        plain = geometry.thumbnail_from_buffer(data, op, "")
    return fast, plain


def test_the_scaled_decode_is_used_and_matches_libvips(monkeypatch: pytest.MonkeyPatch) -> None:
    data = jpeg(photo())
    header = pyvips.Image.new_from_buffer(data, "")
    scaled = geometry.decode_jpeg_scaled(data, header, (160, 160), True)
    assert scaled is not None
    assert (scaled.width, scaled.height) == (600, 400)  # DCT-scaled by 2: >= 2x the box
    fast, plain = both(data, monkeypatch)
    assert (fast.width, fast.height) == (plain.width, plain.height) == (160, 107)
    assert ssim(fast, plain) > 0.99


def test_exif_orientation_is_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    image = photo(1200, 800).copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", 6)  # stored on its side
    fast, plain = both(jpeg(image), monkeypatch)
    assert (fast.width, fast.height) == (plain.width, plain.height) == (107, 160)
    assert ssim(fast, plain) > 0.99


def test_an_embedded_colour_profile_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    wide = photo().icc_export(output_profile="p3")  # pixels in Display P3, profile embedded
    fast, plain = both(jpeg(wide), monkeypatch)
    assert fast.get("icc-profile-data") == plain.get("icc-profile-data")
    assert ssim(fast, plain) > 0.99


def test_greyscale_jpegs_stay_grey(monkeypatch: pytest.MonkeyPatch) -> None:
    fast, plain = both(jpeg(ramp(900, 600).colourspace("b-w")), monkeypatch)
    assert fast.bands == plain.bands == 1
    assert ssim(fast, plain) > 0.99


def test_cmyk_and_broken_jpegs_are_left_to_libvips() -> None:
    cmyk = jpeg(photo().icc_export(output_profile="cmyk"))
    header = pyvips.Image.new_from_buffer(cmyk, "")
    assert header.interpretation == "cmyk"
    assert geometry.decode_jpeg_scaled(cmyk, header, (160, 160), True) is None
    truncated = jpeg(photo())[:5000]
    header = pyvips.Image.new_from_buffer(truncated, "")
    assert geometry.decode_jpeg_scaled(truncated, header, (160, 160), True) is None


def test_only_inside_fits_take_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("a cover thumbnail must not use the scaled decode")

    monkeypatch.setattr(geometry, "decode_jpeg_scaled", refuse)
    cover = Thumbnail(width=100, height=100, fit="cover")
    image = geometry.thumbnail_from_buffer(jpeg(photo()), cover, "")
    assert (image.width, image.height) == (100, 100)


def test_a_thumbnail_that_would_not_scale_the_decode_is_left_to_libvips() -> None:
    # 1200x800 into 1000x1000: the decode would need more than half the size, so
    # Pillow's draft would decode it whole (twice over, with the copy); libvips streams.
    data = jpeg(photo())
    header = pyvips.Image.new_from_buffer(data, "")
    assert geometry.decode_jpeg_scaled(data, header, (1000, 1000), True) is None
    assert geometry.decode_jpeg_scaled(data, header, (300, 300), True) is not None
    image = geometry.thumbnail_from_buffer(data, Thumbnail(width=1000, height=1000), "")
    assert (image.width, image.height) == (1000, 667)
