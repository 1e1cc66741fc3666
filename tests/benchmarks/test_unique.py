"""Unique input bytes: a valid image with the original's pixels, different every time."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest
import pyvips

from benchmarks.unique import NONCE_BYTES, unique_bytes, unique_jpeg, unique_png


def picture() -> Any:
    xy = pyvips.Image.xyz(96, 64)
    return (xy[0] * 2).bandjoin([xy[1] * 3, (xy[0] + xy[1])]).cast("uchar")


def pixels(data: bytes) -> bytes:
    return bytes(pyvips.Image.new_from_buffer(data, "").write_to_memory())


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_gets_a_comment_after_soi_and_keeps_its_pixels(progressive: bool) -> None:
    original = bytes(picture().jpegsave_buffer(Q=85, interlace=progressive))
    made = unique_jpeg(original, b"n" * NONCE_BYTES)

    assert made[:2] == b"\xff\xd8"
    assert made[2:4] == b"\xff\xfe"
    assert struct.unpack(">H", made[4:6])[0] == NONCE_BYTES + 2
    assert made[6 : 6 + NONCE_BYTES] == b"n" * NONCE_BYTES
    assert made[6 + NONCE_BYTES :] == original[2:]
    assert pixels(made) == pixels(original)


def test_every_call_gives_new_bytes() -> None:
    original = bytes(picture().jpegsave_buffer(Q=85))
    made = {unique_bytes(original) for _ in range(50)}
    assert len(made) == 50
    assert original not in made


def test_png_gets_a_text_chunk_after_ihdr_and_keeps_its_pixels() -> None:
    original = bytes(picture().pngsave_buffer())
    made = unique_png(original, b"\x01" * NONCE_BYTES)

    length = struct.unpack(">I", made[33:37])[0]
    assert made[37:41] == b"tEXt"
    payload = made[41 : 41 + length]
    assert payload == b"imagemesh-bench\x00" + (b"\x01" * NONCE_BYTES).hex().encode()
    crc = struct.unpack(">I", made[41 + length : 45 + length])[0]
    assert crc == zlib.crc32(b"tEXt" + payload)
    assert made[45 + length :] == original[33:]
    assert pixels(made) == pixels(original)


def test_other_formats_are_refused() -> None:
    with pytest.raises(ValueError, match="only JPEG and PNG"):
        unique_bytes(b"GIF89a....")
    with pytest.raises(ValueError, match="not a JPEG"):
        unique_jpeg(b"\x89PNG")
