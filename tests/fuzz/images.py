"""Image bytes to upload: real small images of every accepted format, the hostile corpus,
and non-images, mutated by Hypothesis (bit flips, truncation, splices, forged sizes...).

Mutations are plain tuples, so a falsifying example reads as the seed's name and the
edits made to it.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyvips
from hypothesis import strategies as st
from PIL import Image

from tests.extended_images import EXTENDED_SAMPLES, extended_image
from tests.hostile import corpus

Mutation = tuple[Any, ...]


@dataclass(frozen=True)
class Picture:
    """`seed`'s bytes with `mutations` applied, in order."""

    seed: str
    mutations: tuple[Mutation, ...]
    data: bytes = field(repr=False, compare=False)

    def __repr__(self) -> str:
        return f"Picture({self.seed!r}, {self.mutations!r}, {len(self.data)} bytes)"


@functools.cache
def seeds() -> dict[str, bytes]:
    """Small valid images of each accepted format, the hostile corpus, and non-images."""
    rgb = pyvips.Image.black(16, 12).new_from_image([40, 120, 200]).cast("uchar")
    noise = pyvips.Image.gaussnoise(16, 12).cast("uchar")
    found = {
        "png": rgb.pngsave_buffer(),
        "png-rgba": rgb.bandjoin(255).pngsave_buffer(),
        "png-16bit": noise.cast("ushort").pngsave_buffer(bitdepth=16),
        "png-interlaced": noise.pngsave_buffer(interlace=True),
        "png-palette": _pil(Image.new("P", (9, 7), 3), "PNG"),
        "jpeg": rgb.jpegsave_buffer(),
        "jpeg-progressive": noise.jpegsave_buffer(interlace=True),
        "jpeg-cmyk": _pil(Image.new("CMYK", (8, 8), (1, 2, 3, 4)), "JPEG"),
        "webp": rgb.webpsave_buffer(),
        "webp-lossless": noise.webpsave_buffer(lossless=True),
        "webp-animated": _frames("WEBP", 3),
        "gif": rgb.gifsave_buffer(),
        "gif-animated": _frames("GIF", 3),
        "tiff": rgb.tiffsave_buffer(),
        "tiff-big": rgb.tiffsave_buffer(bigtiff=True),
        "tiff-multipage": _frames("TIFF", 2),
        "avif": rgb.heifsave_buffer(compression="av1"),
        "html": b"<!doctype html><script>alert(1)</script>",
        "json": b'{"not": "an image"}',
        "empty": b"",
    }
    for hostile in corpus():
        found[f"hostile:{hostile.name}"] = hostile.data
    for name in EXTENDED_SAMPLES:  # the input-only formats, read by Pillow
        found[name] = extended_image(name)
    return found


def _pil(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def _frames(fmt: str, count: int) -> bytes:
    frames = [Image.new("RGB", (6, 5), (60 * n, 20, 200 - 50 * n)) for n in range(count)]
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:])
    return buffer.getvalue()


MAGIC = (
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00+",
    b"\x00\x00\x00\x1cftypavif",
    b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00avis",
    b"BM",
    b"\x00\x00\x01\x00\x01\x00",
    b"P6\n",
    b"qoif",
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",
)
"""What `sniff_format` looks for: random bytes after one of these get past sniffing."""


@functools.cache
def pictures() -> st.SearchStrategy[Picture]:
    return st.builds(
        _picture,
        st.sampled_from(sorted(seeds())),
        st.lists(_mutations(), max_size=4).map(tuple),
    )


def _picture(seed: str, mutations: tuple[Mutation, ...]) -> Picture:
    data = seeds()[seed]
    for mutation in mutations:
        data = _APPLY[mutation[0]](data, *mutation[1:])
    return Picture(seed, mutations, data)


_OFFSET = st.integers(0, 1 << 16)
_SIDE = st.sampled_from([0, 1, 2, 65_535, 20_001, 4_000, 100_000, 1 << 31, (1 << 32) - 1])


@functools.cache
def _mutations() -> st.SearchStrategy[Mutation]:
    return st.one_of(
        st.tuples(st.just("flip"), _OFFSET, st.integers(0, 7)),
        st.tuples(st.just("set"), _OFFSET, st.integers(0, 255)),
        st.tuples(st.just("truncate"), _OFFSET),
        st.tuples(st.just("insert"), _OFFSET, st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("delete"), _OFFSET, st.integers(1, 256)),
        st.tuples(st.just("repeat"), _OFFSET, st.integers(1, 64), st.integers(2, 64)),
        st.tuples(st.just("splice"), st.sampled_from(sorted(seeds())), _OFFSET, _OFFSET),
        st.tuples(st.just("after-magic"), st.sampled_from(MAGIC), st.binary(max_size=256)),
        st.tuples(st.just("append"), st.binary(min_size=1, max_size=256)),
        st.tuples(st.just("size"), _SIDE, _SIDE),
        st.tuples(st.just("fix-png-crc")),
    )


def _at(data: bytes, offset: int) -> int:
    return offset % len(data) if data else 0


def _flip(data: bytes, offset: int, bit: int) -> bytes:
    if not data:
        return data
    at = _at(data, offset)
    return data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1 :]


def _set(data: bytes, offset: int, value: int) -> bytes:
    if not data:
        return data
    at = _at(data, offset)
    return data[:at] + bytes([value]) + data[at + 1 :]


def _truncate(data: bytes, offset: int) -> bytes:
    return data[: _at(data, offset)]


def _insert(data: bytes, offset: int, extra: bytes) -> bytes:
    at = _at(data, offset)
    return data[:at] + extra + data[at:]


def _delete(data: bytes, offset: int, count: int) -> bytes:
    at = _at(data, offset)
    return data[:at] + data[at + count :]


def _repeat(data: bytes, offset: int, length: int, times: int) -> bytes:
    at = _at(data, offset)
    return data[:at] + data[at : at + length] * times + data[at + length :]


def _splice(data: bytes, other: str, offset: int, other_offset: int) -> bytes:
    tail = seeds()[other]
    return data[: _at(data, offset)] + tail[_at(tail, other_offset) :]


def _after_magic(_data: bytes, magic: bytes, rest: bytes) -> bytes:
    return magic + rest


def _append(data: bytes, extra: bytes) -> bytes:
    return data + extra


def _size(data: bytes, width: int, height: int) -> bytes:
    """Forge the declared size in the header, where the format has one we know."""
    if data.startswith(b"\x89PNG") and data[12:16] == b"IHDR":
        data = data[:16] + struct.pack(">II", width, height) + data[24:]
        return _fix_png_crc(data)
    if data.startswith(b"GIF8") and len(data) >= 10:
        return data[:6] + struct.pack("<HH", width & 0xFFFF, height & 0xFFFF) + data[10:]
    if data.startswith(b"\xff\xd8"):
        for marker in (b"\xff\xc0", b"\xff\xc2"):
            at = data.find(marker)
            if at >= 0 and len(data) >= at + 9:
                sides = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
                return data[: at + 5] + sides + data[at + 9 :]
    if data[12:16] == b"VP8X" and len(data) >= 30:
        sides = ((width - 1) & 0xFFFFFF).to_bytes(3, "little")
        sides += ((height - 1) & 0xFFFFFF).to_bytes(3, "little")
        return data[:24] + sides + data[30:]
    return data


def _fix_png_crc(data: bytes) -> bytes:
    """Recompute every chunk's CRC, so that edits reach past libpng's checksum test."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    out, at = bytearray(data[:8]), 8
    while at + 8 <= len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        end = at + 8 + length
        if end + 4 > len(data):
            break
        out += data[at:end] + struct.pack(">I", zlib.crc32(data[at + 4 : end]))
        at = end + 4
    return bytes(out + data[at:])


_APPLY: dict[str, Callable[..., bytes]] = {
    "flip": _flip,
    "set": _set,
    "truncate": _truncate,
    "insert": _insert,
    "delete": _delete,
    "repeat": _repeat,
    "splice": _splice,
    "after-magic": _after_magic,
    "append": _append,
    "size": _size,
    "fix-png-crc": _fix_png_crc,
}
