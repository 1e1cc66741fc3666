"""Input bytes no earlier job had, with the same pixels.

The mesh reuses the output of an earlier job with the same input bytes, canonical pipeline
and engine (`imageproc_runner/reuse.py`). A test that must see work done (steps, timings,
failures, faults) gives each job bytes of its own: a JPEG gets a comment segment (COM)
right after SOI, a PNG a tEXt chunk right after IHDR. Decoders skip both, so the pixels,
and the work, stay the original's.
"""

from __future__ import annotations

import os
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"


def unique_bytes(data: bytes, nonce: bytes | None = None) -> bytes:
    """`data` (a JPEG or PNG) with a random (or the given) nonce nobody's bytes had."""
    body = os.urandom(16) if nonce is None else nonce
    if data.startswith(JPEG_SOI):
        segment = b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body
        return data[:2] + segment + data[2:]
    if data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR":
        payload = b"imagemesh-test\x00" + body.hex().encode()
        chunk = struct.pack(">I", len(payload)) + b"tEXt" + payload
        chunk += struct.pack(">I", zlib.crc32(b"tEXt" + payload) & 0xFFFFFFFF)
        ihdr_end = 8 + 4 + 4 + struct.unpack(">I", data[8:12])[0] + 4
        return data[:ihdr_end] + chunk + data[ihdr_end:]
    raise ValueError("unique_bytes: only JPEG and PNG")
