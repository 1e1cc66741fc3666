import pytest
import pyvips

from pipeline import SNIFF_BYTES, ExtendedFormat, ImageFormat, sniff_format


def _encoded(fmt: ImageFormat) -> bytes:
    image = (pyvips.Image.black(8, 8) + 100).bandjoin([50, 200]).copy(interpretation="srgb")
    return bytes(image.write_to_buffer(fmt.extension))


@pytest.mark.parametrize("fmt", list(ImageFormat))
def test_recognises_files_libvips_writes(fmt):
    assert sniff_format(_encoded(fmt)[:SNIFF_BYTES]) is fmt


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", ImageFormat.JPEG),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ImageFormat.PNG),
        (b"RIFF\x24\x00\x00\x00WEBPVP8L", ImageFormat.WEBP),
        (b"GIF87a\x01\x00\x01\x00", ImageFormat.GIF),
        (b"GIF89a\x01\x00\x01\x00", ImageFormat.GIF),
        (b"II*\x00\x08\x00\x00\x00", ImageFormat.TIFF),
        (b"MM\x00*\x00\x00\x00\x08", ImageFormat.TIFF),
        (b"II+\x00\x08\x00\x00\x00", ImageFormat.TIFF),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", ImageFormat.AVIF),
        (b"\x00\x00\x00\x1cftypavis\x00\x00\x00\x00avismif1miaf", ImageFormat.AVIF),
        # Major brand mif1, AVIF only among the compatible brands.
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf", ImageFormat.AVIF),
        # HEIF: HEVC brands, and mif1 with "avif" only past the end of the ftyp box.
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", ExtendedFormat.HEIF),
        (b"\x00\x00\x00\x10ftypmif1\x00\x00\x00\x00avif", ExtendedFormat.HEIF),
    ],
)
def test_recognises_magic_bytes(head, fmt):
    assert sniff_format(head) is fmt


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\xff\xd8",
        b"hello, world",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3",
        b"BM\x36\x00\x00\x00\x00\x00",  # BMP: not on the allow-list
        b"RIFF\x24\x00\x00\x00WAVEfmt ",  # RIFF, but audio
        b"\x00\x00\x00\x14ftypmp42\x00\x00\x00\x00isom",  # MP4 video
        b"\x00" * 32,
    ],
)
def test_rejects_everything_else(head):
    assert sniff_format(head) is None


def test_formats_carry_content_type_and_extension():
    assert [(f.value, f.content_type, f.extension) for f in ImageFormat] == [
        ("jpeg", "image/jpeg", ".jpg"),
        ("png", "image/png", ".png"),
        ("webp", "image/webp", ".webp"),
        ("gif", "image/gif", ".gif"),
        ("tiff", "image/tiff", ".tiff"),
        ("avif", "image/avif", ".avif"),
    ]
