import pytest
import pyvips

from pipeline import (
    ImageFormat,
    ImageInfo,
    ImageLimits,
    ImageRejected,
    harden_vips,
    probe_file,
    probe_image,
)
from tests.ultrahdr import looks_ultra_hdr, ultra_hdr_jpeg

LIMITS = ImageLimits()


@pytest.fixture(autouse=True, scope="module")
def _hardened():
    harden_vips()


def _rgb(width: int, height: int) -> pyvips.Image:
    return (pyvips.Image.black(width, height) + 100).bandjoin([50, 200]).copy(interpretation="srgb")


def _png(width: int = 20, height: int = 10) -> bytes:
    return bytes(_rgb(width, height).pngsave_buffer())


def _animated_gif(frames: int, width: int = 10, height: int = 6) -> bytes:
    # A vertical ramp, so no two frames are equal (the encoder would merge them).
    ramp = (pyvips.Image.xyz(width, height * frames)[1] * 10).cast("uchar")
    strip = ramp.bandjoin([ramp, ramp]).copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", height)
    return bytes(strip.gifsave_buffer())


def test_reads_the_header():
    info = probe_image(_png(20, 10), limits=LIMITS)

    assert info == ImageInfo(
        format=ImageFormat.PNG, width=20, height=10, pages=1, bands=3, has_alpha=False
    )


def test_reports_alpha():
    rgba = _rgb(4, 4).bandjoin(255).pngsave_buffer()

    info = probe_image(rgba, limits=LIMITS)

    assert info.bands == 4
    assert info.has_alpha is True


@pytest.mark.parametrize("fmt", list(ImageFormat))
def test_reads_every_allowed_format(fmt):
    data = _rgb(12, 7).write_to_buffer(fmt.extension)

    info = probe_image(data, limits=LIMITS)

    assert (info.format, info.width, info.height) == (fmt, 12, 7)


def test_counts_frames():
    info = probe_image(_animated_gif(3), limits=LIMITS)

    assert (info.format, info.width, info.height, info.pages) == (ImageFormat.GIF, 10, 6, 3)


def _rejected(data: bytes, limits: ImageLimits = LIMITS) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        probe_image(data, limits=limits)
    return caught.value


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"just some text",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n",
        b"P7\nWIDTH 2\nHEIGHT 2\n",  # PAM: no decoder here
        b"\x00\x00\x00\x14ftypmp42\x00\x00\x00\x00isom",  # an MP4 video
    ],
)
def test_rejects_unsupported_types(data):
    error = _rejected(data)

    assert error.code == "unsupported_type"
    assert error.message == (
        "not an allowed image type "
        "(allowed: jpeg, png, webp, gif, tiff, avif, bmp, ico, pnm, qoi, jp2, heif)"
    )


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + b"garbage" * 10,
        _png()[:30],  # cut inside the header
        b"\xff\xd8\xff" + b"\x00" * 40,
        b"GIF89a",
    ],
)
def test_rejects_undecodable_headers(data):
    error = _rejected(data)

    assert error.code == "undecodable"
    assert "cannot be read" in error.message


def test_rejects_too_many_pixels():
    error = _rejected(_png(20, 20), ImageLimits(max_pixels=399))

    assert error.code == "too_many_pixels"
    assert error.message == "image has 400 pixels; at most 399 pixels are allowed"


def test_accepts_exactly_the_limits():
    limits = ImageLimits(max_pixels=400, max_side=20, max_frames=1)

    assert probe_image(_png(20, 20), limits=limits).width == 20


def test_sums_pixels_over_frames():
    error = _rejected(_animated_gif(3), ImageLimits(max_pixels=179))

    assert error.code == "too_many_pixels"
    assert error.message == "image has 180 pixels; at most 179 pixels are allowed"


def test_rejects_a_too_large_side():
    error = _rejected(_png(30, 5), ImageLimits(max_side=29))

    assert error.code == "too_large_side"
    assert error.message == "image is 30x5 pixels; each side must be at most 29"


def test_rejects_too_many_frames():
    error = _rejected(_animated_gif(3), ImageLimits(max_frames=2))

    assert error.code == "too_many_frames"
    assert error.message == "image has 3 frames; at most 2 are allowed"


def test_limits_are_checked_before_decoding():
    # A valid header followed by a corrupt body: only decoding would notice.
    png = bytes(pyvips.Image.gaussnoise(20, 20).cast("uchar").pngsave_buffer())
    body = png.index(b"IDAT") + 4
    corrupt = png[:body] + b"\x00" * (len(png) - body)

    assert probe_image(corrupt, limits=LIMITS).width == 20
    assert _rejected(corrupt, ImageLimits(max_pixels=10)).code == "too_many_pixels"


def test_huge_declared_size_is_rejected_cheaply():
    # 20001 x 1 PNG header: rejected on the side without decoding.
    error = _rejected(bytes(pyvips.Image.black(20_001, 1).pngsave_buffer()))

    assert error.code == "too_large_side"


def test_default_limits():
    assert ImageLimits(max_pixels=50_000_000, max_side=20_000, max_frames=100) == LIMITS


def test_image_rejected_is_a_value_error_with_code():
    error = ImageRejected("undecodable", "broken")

    assert isinstance(error, ValueError)
    assert (error.code, error.message, str(error)) == ("undecodable", "broken", "broken")


def test_an_ultra_hdr_jpeg_is_a_jpeg():
    # libvips reads a JPEG with a gain map through uhdrload, not jpegload: it is still a
    # JPEG (its primary image is an ordinary one), never "looks like jpeg but is not".
    data = ultra_hdr_jpeg(96, 64)
    assert looks_ultra_hdr(data)
    assert str(pyvips.Image.new_from_buffer(data, "").get("vips-loader")).startswith("uhdrload")

    info = probe_image(data, limits=LIMITS)

    assert info == ImageInfo(
        format=ImageFormat.JPEG, width=96, height=64, pages=1, bands=3, has_alpha=False
    )


@pytest.mark.parametrize(
    "data",
    [
        _png(20, 10),
        _animated_gif(3),
        ultra_hdr_jpeg(40, 30),
        *(_rgb(12, 7).write_to_buffer(fmt.extension) for fmt in ImageFormat),
    ],
)
def test_a_file_on_disk_probes_as_its_bytes(tmp_path, data):
    # The upload spools large files to disk: the same answer, read from a descriptor.
    with (tmp_path / "spooled").open("w+b") as file:
        file.write(data)
        file.flush()  # left at its end: the probe reads from the start anyway

        assert probe_file(file.fileno(), limits=LIMITS) == probe_image(data, limits=LIMITS)
        file.seek(0)  # the caller's descriptor is still open (its offset may have moved)
        assert file.read() == data


@pytest.mark.parametrize(
    ("data", "code"),
    [(b"just some text", "unsupported_type"), (b"\xff\xd8\xff" + b"\x00" * 40, "undecodable")],
)
def test_a_file_on_disk_is_refused_as_its_bytes(tmp_path, data, code):
    with (tmp_path / "spooled").open("w+b") as file:
        file.write(data)
        file.flush()

        with pytest.raises(ImageRejected) as caught:
            probe_file(file.fileno(), limits=LIMITS)

    assert caught.value.code == code


def test_a_file_on_disk_is_held_to_the_limits(tmp_path):
    with (tmp_path / "spooled").open("w+b") as file:
        file.write(_png(200, 100))
        file.flush()

        with pytest.raises(ImageRejected) as caught:
            probe_file(file.fileno(), limits=ImageLimits(max_pixels=19_999))

    assert caught.value.code == "too_many_pixels"
