"""A corpus of hostile and awkward inputs, made by the tests, with the documented outcome
of each: at upload (HTTP status + code, or accepted) and as a job (succeeded, or failed
with a code)."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import pyvips
from PIL import Image


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    upload: tuple[int, str] | None
    """(status, error code) when upload refuses it; None when upload accepts it."""
    job: str
    """The job's outcome: "succeeded" or the error code it fails with."""


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), (10, 200, 30) if mode == "RGB" else 100).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((width, height), 50).convert(mode).save(buffer, "JPEG")
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _declared_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge image (a decompression bomb's signature)."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", pixels)
        + _chunk(b"IEND", b"")
    )


def _bad_crc_png() -> bytes:
    data = bytearray(_png(64, 64))
    start = data.index(b"IDAT")
    length = struct.unpack(">I", data[start - 4 : start])[0]
    data[start + 4 + length] ^= 0xFF
    return bytes(data)


def repeated_scan_jpeg(width: int, height: int, repeats: int) -> bytes:
    """A progressive JPEG whose last scan is repeated `repeats` more times: decoders only
    warn, and decode every scan again in full (Pillow: ~35 ms per scan at 49 MP, ~1.7 ms
    at 4 MP). A flat colour keeps each repeated scan a few bytes long, so a small file
    holds thousands of them. It has `10 + repeats` scans."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 130, 140)).save(
        buffer, "JPEG", quality=80, progressive=True
    )
    data = buffer.getvalue()
    last_scan, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    return data[:end] + data[last_scan:end] * repeats + data[end:]


def _frames_gif(count: int) -> bytes:
    frames = [
        Image.new("RGB", (8, 8), (n % 256, (n * 7) % 256, 255 - n % 256)) for n in range(count)
    ]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=40)
    return buffer.getvalue()


def corpus() -> list[Hostile]:
    jpeg = _jpeg(400, 300)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'
    return [
        Hostile("zero-byte", b"", (415, "unsupported_type"), "unsupported_type"),
        Hostile(
            "text-named-jpg",
            b"just some text\n" * 20,
            (415, "unsupported_type"),
            "unsupported_type",
        ),
        Hostile("svg", svg, (415, "unsupported_type"), "unsupported_type"),
        Hostile(
            "pdf", b"%PDF-1.7\n1 0 obj<<>>endobj\n", (415, "unsupported_type"), "unsupported_type"
        ),
        Hostile(
            "bomb-100mp", _declared_png(10_000, 10_000), (422, "too_many_pixels"), "too_many_pixels"
        ),
        Hostile(
            "bomb-side", _declared_png(100_000, 100_000), (422, "too_large_side"), "too_large_side"
        ),
        Hostile(
            "1x100000",
            pyvips.Image.black(1, 100_000).pngsave_buffer(),
            (422, "too_large_side"),
            "too_large_side",
        ),
        Hostile("too-many-frames", _frames_gif(150), (422, "too_many_frames"), "too_many_frames"),
        Hostile(
            "jpeg-repeated-scans",
            repeated_scan_jpeg(2000, 2000, 3000),
            (422, "too_many_scans"),
            "too_many_scans",
        ),
        Hostile("truncated-jpeg", jpeg[: len(jpeg) * 6 // 10], None, "undecodable"),
        Hostile("png-bad-crc", _bad_crc_png(), None, "undecodable"),
        Hostile(
            "gif-js-polyglot",
            b"GIF89a/*\0\0\0\0*/=alert(1)//" + b"A" * 64,
            (422, "undecodable"),
            "undecodable",
        ),
        Hostile(
            "png-html-polyglot",
            b"\x89PNG\r\n\x1a\n<html><script>x</script></html>",
            (422, "undecodable"),
            "undecodable",
        ),
        Hostile("jpeg-with-zip-appended", jpeg + b"PK\x03\x04" + b"Z" * 256, None, "succeeded"),
        Hostile("1x1", _png(1, 1), None, "succeeded"),
        Hostile("cmyk-jpeg", _jpeg(100, 80, "CMYK"), None, "succeeded"),
        Hostile(
            "16-bit-png",
            pyvips.Image.black(50, 40).cast("ushort").pngsave_buffer(bitdepth=16),
            None,
            "succeeded",
        ),
        Hostile("animated-gif", _frames_gif(5), None, "succeeded"),
    ]
