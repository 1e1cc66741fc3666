"""Small images in the input-only formats (``pipeline.ExtendedFormat``), made with Pillow,
and hand-written headers that claim more than they hold."""

from __future__ import annotations

import io
import struct

import pillow_heif
from PIL import Image

pillow_heif.register_heif_opener()  # for "HEIF" below (the mesh registers it itself)

EXTENDED_SAMPLES = (
    "bmp", "ico", "cur", "pbm", "pgm", "ppm", "pfm", "qoi", "jp2", "j2k", "heic",
)  # fmt: skip
"""Names ``extended_image`` makes; each is 40 x 30 pixels but the icons (32 x 32)."""


def _picture(mode: str = "RGB") -> Image.Image:
    ramp = Image.linear_gradient("L").resize((40, 30))
    return Image.merge(
        "RGB", (ramp, ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT), ramp)
    ).convert(mode)


def _saved(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def extended_image(name: str) -> bytes:
    """One of ``EXTENDED_SAMPLES`` as bytes."""
    if name == "cur":  # an icon directory of type 2 with a BMP (DIB) entry
        data = bytearray(_saved(_picture().resize((32, 32)), "ICO", bitmap_format="bmp"))
        data[2] = 2
        return bytes(data)
    if name == "ico":
        return _saved(_picture("RGBA").resize((32, 32)), "ICO", sizes=[(32, 32)])
    if name == "pfm":
        return pfm_image()
    formats: dict[str, tuple[str, str, dict[str, object]]] = {
        "bmp": ("BMP", "RGB", {}),
        "pbm": ("PPM", "1", {}),
        "pgm": ("PPM", "L", {}),
        "ppm": ("PPM", "RGB", {}),
        "qoi": ("QOI", "RGBA", {}),
        "jp2": ("JPEG2000", "RGB", {"no_jp2": False}),
        "j2k": ("JPEG2000", "RGB", {"no_jp2": True}),
        "heic": ("HEIF", "RGB", {"quality": 90}),
    }
    fmt, mode, options = formats[name]
    return _saved(_picture(mode), fmt, **options)


def pfm_image(width: int = 40, height: int = 30) -> bytes:
    """A greyscale PFM: little-endian floats (scale < 0), 0..1, rows bottom to top."""
    rows = [[x / (width - 1) for x in range(width)] for _ in range(height)]
    pixels = b"".join(struct.pack(f"<{width}f", *row) for row in rows)
    return f"Pf\n{width} {height}\n-1.0\n".encode() + pixels


def bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP's headers (no pixels) claiming ``width`` x ``height``."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 3 * width * height % 2**32, 0, 0, 54) + info


def pnm_header(width: int, height: int) -> bytes:
    return f"P6\n{width} {height}\n255\n".encode()


def qoi_header(width: int, height: int) -> bytes:
    return b"qoif" + struct.pack(">IIBB", width, height, 3, 0)


def icon_hiding_a_large_png(width: int, height: int) -> bytes:
    """An icon directory saying 16 x 16 whose one image is a PNG of ``width`` x ``height``."""
    png = _saved(Image.new("L", (width, height)), "PNG")
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def heif_header(width: int, height: int) -> bytes:
    """A real small HEIC whose item says (its `ispe` box) it is ``width`` x ``height``."""
    # 64 x 64: one whole coding block, so no clean-aperture box crops what ispe says.
    data = bytearray(_saved(_picture().resize((64, 64)), "HEIF", quality=50))
    assert b"clap" not in data
    at = data.find(b"ispe")
    assert at > 0, "a HEIC names its size in an ispe box"
    while at > 0:
        data[at + 8 : at + 16] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
        at = data.find(b"ispe", at + 4)
    return bytes(data)
