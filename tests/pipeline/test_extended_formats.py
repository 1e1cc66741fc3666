"""The input-only formats (BMP, ICO/CUR, PNM, QOI, JPEG 2000): sniffed by content, their
headers read by Pillow and checked against the limits before any decode."""

import os
import tempfile

import pytest

from pipeline import (
    ExtendedFormat,
    ImageLimits,
    ImageRejected,
    accepted_format_names,
    accepted_formats,
    probe_file,
    probe_image,
    sniff_format,
    unsupported_message,
)
from pipeline._pillow import decode_extended
from tests.extended_images import (
    EXTENDED_SAMPLES,
    bmp_header,
    extended_image,
    heif_header,
    icon_hiding_a_large_png,
    pnm_header,
    qoi_header,
)

LIMITS = ImageLimits()
FORMAT_OF = {
    "bmp": ExtendedFormat.BMP,
    "ico": ExtendedFormat.ICO,
    "cur": ExtendedFormat.ICO,
    "pbm": ExtendedFormat.PNM,
    "pgm": ExtendedFormat.PNM,
    "ppm": ExtendedFormat.PNM,
    "pfm": ExtendedFormat.PNM,
    "qoi": ExtendedFormat.QOI,
    "jp2": ExtendedFormat.JP2,
    "j2k": ExtendedFormat.JP2,
    "heic": ExtendedFormat.HEIF,
}
ICONS = ("ico", "cur")


def _any_size(width: int, height: int) -> None:
    assert width > 0
    assert height > 0


def _rejected(data: bytes, limits: ImageLimits = LIMITS) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        probe_image(data, limits=limits)
    return caught.value


@pytest.mark.parametrize("name", EXTENDED_SAMPLES)
def test_sniffs_each_sample(name):
    assert sniff_format(extended_image(name)[:32]) is FORMAT_OF[name]


@pytest.mark.parametrize(
    "head",
    [
        b"BM",  # too short for a BMP header
        b"\x00\x00\x01\x00\x00\x00",  # an icon directory without images
        b"\x00\x00\x03\x00\x01\x00",  # not an icon type
        b"P7\nWIDTH 2\n",  # PAM: no decoder here
        b"PF\n2 2\n-1.0\n",  # colour PFM: Pillow reads only greyscale
        b"P6x",
        b"\x00\x00\x00\x14ftypmp42\x00\x00\x00\x00isom",  # an MP4 video: not HEIF
    ],
)
def test_does_not_sniff_lookalikes(head):
    assert sniff_format(head) is None


@pytest.mark.parametrize("name", EXTENDED_SAMPLES)
def test_probes_the_header_of_each_sample(name):
    info = probe_image(extended_image(name), limits=LIMITS)

    assert info.format is FORMAT_OF[name]
    assert (info.width, info.height) == ((32, 32) if name in ICONS else (40, 30))
    assert info.pages == 1


@pytest.mark.parametrize("name", EXTENDED_SAMPLES)
def test_probe_file_reads_like_probe_image_and_leaves_the_offset(name):
    data = extended_image(name)
    with tempfile.TemporaryFile() as file:
        file.write(data)
        file.flush()
        os.lseek(file.fileno(), 7, os.SEEK_SET)

        info = probe_file(file.fileno(), limits=LIMITS)

        assert info == probe_image(data, limits=LIMITS)
        assert os.lseek(file.fileno(), 0, os.SEEK_CUR) == 7


@pytest.mark.parametrize("name", EXTENDED_SAMPLES)
def test_decodes_each_sample(name):
    image = decode_extended(extended_image(name), FORMAT_OF[name], _any_size)

    assert (image.width, image.height) == ((32, 32) if name in ICONS else (40, 30))
    assert image.format in ("uchar", "ushort")
    assert 50 < image.avg() < 200  # a ramp, not black or white


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (bmp_header(100_000, 100_000), "too_many_pixels"),  # past Pillow's own bomb guard
        (bmp_header(9_000, 9_000), "too_many_pixels"),  # 81 MP against our 50 MP
        (bmp_header(30_000, 10), "too_large_side"),
        (pnm_header(100_000, 100_000), "too_many_pixels"),
        (pnm_header(10, 30_000), "too_large_side"),
        (qoi_header(100_000, 100_000), "too_many_pixels"),
        (qoi_header(9_000, 9_000), "too_many_pixels"),
        (heif_header(9_000, 9_000), "too_many_pixels"),
        (heif_header(30_000, 10), "too_large_side"),
    ],
)
def test_refuses_huge_headers_before_decoding(header, code):
    # Only the header is there: a decode would fail, the limit answers first.
    assert _rejected(header).code == code


def test_small_limits_apply_to_the_input_only_formats():
    error = _rejected(extended_image("ppm"), ImageLimits(max_pixels=100))

    assert error.code == "too_many_pixels"
    assert "1,200 pixels" in error.message


@pytest.mark.parametrize(
    ("name", "cut", "fmt"), [("bmp", 20, "bmp"), ("ppm", 7, "pnm"), ("jp2", 40, "jp2")]
)
def test_a_header_cut_short_is_undecodable(name, cut, fmt):
    error = _rejected(extended_image(name)[:cut])

    assert error.code == "undecodable"
    assert error.message == f"the {fmt} image header cannot be read"


@pytest.mark.parametrize("name", ["bmp", "pgm", "ppm", "pfm", "jp2", "j2k"])
def test_a_truncated_body_probes_but_does_not_decode(name):
    data = extended_image(name)
    truncated = data[: len(data) // 2]
    info = probe_image(truncated, limits=LIMITS)
    assert isinstance(info.format, ExtendedFormat)

    with pytest.raises(ImageRejected) as caught:
        decode_extended(truncated, info.format, _any_size)

    assert caught.value.code == "undecodable"
    assert "cannot be decoded" in caught.value.message


def test_people_read_the_names_they_know():
    assert accepted_format_names() == (
        "JPEG, PNG, WebP, GIF, TIFF, AVIF, BMP, ICO/CUR, PNM, QOI, JPEG 2000, HEIF/HEIC"
    )


def test_the_refusal_names_every_accepted_format():
    message = unsupported_message()

    names = ["jpeg", "png", "webp", "gif", "tiff", "avif"]
    names += ["bmp", "ico", "pnm", "qoi", "jp2", "heif"]
    for name in names:
        assert name in message
    assert accepted_formats() == names


@pytest.mark.parametrize(
    ("fmt", "content_type", "extension"),
    [
        (ExtendedFormat.BMP, "image/bmp", ".bmp"),
        (ExtendedFormat.ICO, "image/vnd.microsoft.icon", ".ico"),
        (ExtendedFormat.PNM, "image/x-portable-anymap", ".pnm"),
        (ExtendedFormat.QOI, "image/qoi", ".qoi"),
        (ExtendedFormat.JP2, "image/jp2", ".jp2"),
        (ExtendedFormat.HEIF, "image/heif", ".heic"),
    ],
)
def test_names_and_types(fmt, content_type, extension):
    assert (fmt.content_type, fmt.extension) == (content_type, extension)


def test_an_icon_is_measured_by_its_images_own_headers():
    # The directory says 16 x 16; the PNG inside says 3000 x 2000.
    data = icon_hiding_a_large_png(3_000, 2_000)

    assert probe_image(data, limits=LIMITS).width == 3_000
    assert _rejected(data, ImageLimits(max_pixels=1_000_000)).code == "too_many_pixels"
    assert _rejected(data, ImageLimits(max_side=2_000)).code == "too_large_side"


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x01\x00\x01\x00" + bytes(8),  # the directory cut short
        b"\x00\x00\x01\x00\x00\x10" + bytes(16 * 4096),  # 4096 images
        b"\x00\x00\x01\x00\x01\x00" + bytes(16),  # an image that is neither PNG nor DIB
    ],
)
def test_a_broken_icon_directory_is_undecodable(data):
    error = _rejected(data)

    assert error.code == "undecodable"
    assert error.message.startswith("the ico image header cannot be read")
