"""Input bytes that no earlier job had, with the same pixels.

The mesh reuses the output of a job whose input bytes, canonical pipeline and engine
version equal an earlier succeeded one's. A benchmark that sent the same file twice would
then measure a lookup, not the work: every job gets its own bytes. A JPEG gets a comment
segment (COM, FF FE) right after SOI, a PNG a tEXt chunk right after IHDR; decoders skip
both, so the pixels, and the work, are the original's.
"""

from __future__ import annotations

import os
import struct
import zlib

NONCE_BYTES = 16
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
COMMENT_KEYWORD = b"imagemesh-bench"


def unique_jpeg(data: bytes, nonce: bytes | None = None) -> bytes:
    """`data` with a COM segment (FF FE, 2-byte length, `nonce`) right after SOI."""
    if not data.startswith(JPEG_SOI):
        raise ValueError("not a JPEG (no SOI)")
    body = os.urandom(NONCE_BYTES) if nonce is None else nonce
    segment = b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body
    return data[:2] + segment + data[2:]


def unique_png(data: bytes, nonce: bytes | None = None) -> bytes:
    """`data` with a tEXt chunk (keyword, NUL, hex nonce) right after IHDR."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG (no signature and IHDR)")
    body = (os.urandom(NONCE_BYTES) if nonce is None else nonce).hex().encode()
    payload = COMMENT_KEYWORD + b"\x00" + body
    chunk = struct.pack(">I", len(payload)) + b"tEXt" + payload
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + payload) & 0xFFFFFFFF)
    ihdr_end = 8 + 4 + 4 + struct.unpack(">I", data[8:12])[0] + 4  # length, type, data, CRC
    return data[:ihdr_end] + chunk + data[ihdr_end:]


def unique_bytes(data: bytes, nonce: bytes | None = None) -> bytes:
    """A JPEG or PNG made unique (see the module); anything else is refused, so that a
    corpus file of another format cannot silently be sent twice."""
    if data.startswith(JPEG_SOI):
        return unique_jpeg(data, nonce)
    if data.startswith(PNG_SIGNATURE):
        return unique_png(data, nonce)
    raise ValueError("unique_bytes: only JPEG and PNG")
