"""What an image's header says about the memory its decode holds, read in pure Python.

The service's parent reads this to admit jobs against a memory budget (``admission``)
before a worker decodes anything. It never hands untrusted bytes to a C decoder (that is
what the workers are for): only fixed-layout header fields are read, and anything
unexpected answers None ("unknown"), never an exception. Whether the image is acceptable
at all is decided later, in the worker (``pipeline.probe_image``).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

__all__ = ["Header", "read_header"]

_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: no length
_SCAN_LIMIT = 1 << 20
"""Bytes of markers walked to find a JPEG's frame header (it precedes the first scan;
EXIF and colour profiles before it are a few hundred KB at most)."""
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 2, 6: 4}  # a palette is expanded to RGBA


@dataclass(frozen=True, slots=True)
class Header:
    """Dimensions, and the bytes the decoder must hold whatever the pipeline."""

    format: str
    width: int
    height: int
    held_bytes: int
    """Held by the decoder for the whole decode: a progressive JPEG's DCT coefficients
    (2 bytes each, the whole image, whatever the shrink-on-load), an interlaced PNG's or
    a WebP's or GIF's whole frame. 0 for decoders that stream (baseline JPEG, PNG)."""

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(data: bytes) -> Header | None:
    """The header of a JPEG, PNG, WebP or GIF; None for other formats or a header that
    does not parse."""
    try:
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return _png(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack_from("<HH", data, 6)
            return _whole("gif", width, height, 4)
    except (struct.error, IndexError, ValueError, ZeroDivisionError):
        return None
    return None


def _whole(fmt: str, width: int, height: int, channels: int) -> Header | None:
    if width <= 0 or height <= 0:
        return None
    return Header(fmt, width, height, width * height * channels)


def _jpeg(data: bytes) -> Header | None:
    pos, end = 2, min(len(data), _SCAN_LIMIT)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # a fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or a scan before any frame header
            return None
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _SOF:
            return _jpeg_frame(data, pos + 4, progressive=marker in _PROGRESSIVE)
        pos += 2 + length
    return None


def _jpeg_frame(data: bytes, at: int, *, progressive: bool) -> Header | None:
    """A frame header: precision, height, width, then (id, sampling, table) per component."""
    height, width, count = struct.unpack_from(">HHB", data, at + 1)
    if width == 0 or height == 0 or count == 0:
        return None  # a height given later (DNL): unknown
    sampling = [(data[at + 7 + 3 * n] >> 4, data[at + 7 + 3 * n] & 15) for n in range(count)]
    if any(h == 0 or v == 0 for h, v in sampling):
        return None
    h_max = max(h for h, _ in sampling)
    v_max = max(v for _, v in sampling)
    coefficients = 0
    for h, v in sampling:
        # libjpeg's whole-image coefficient arrays: blocks of 64, rounded up to whole MCUs.
        blocks_wide = math.ceil(math.ceil(width * h / h_max) / 8)
        blocks_high = math.ceil(math.ceil(height * v / v_max) / 8)
        coefficients += _round_up(blocks_wide, h) * _round_up(blocks_high, v) * 64
    return Header("jpeg", width, height, 2 * coefficients if progressive else 0)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _png(data: bytes) -> Header | None:
    if data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if width == 0 or height == 0 or colour not in _PNG_CHANNELS:
        return None
    if not interlace:
        return Header("png", width, height, 0)
    # Adam7 is decoded whole: every pass fills the same buffer.
    sample = 2 if depth == 16 else 1
    return Header("png", width, height, width * height * _PNG_CHANNELS[colour] * sample)


def _webp(data: bytes) -> Header | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: a key frame's 14-bit sizes after its start code
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack_from("<HH", data, 26)
        return _whole("webp", width & 0x3FFF, height & 0x3FFF, 4)
    if chunk == b"VP8L":  # lossless: 14 bits each, minus one, after the signature byte
        if data[20] != 0x2F:
            return None
        (bits,) = struct.unpack_from("<I", data, 21)
        return _whole("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 4)
    if chunk == b"VP8X":  # extended: the canvas, 24 bits each, minus one
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return _whole("webp", width, height, 4)
    return None
