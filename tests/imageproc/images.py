"""Images the imageproc tests make for themselves."""

from __future__ import annotations

from typing import Any

import pyvips

from pipeline import ImageLimits

LIMITS = ImageLimits()

MAGIC = {
    "jpeg": b"\xff\xd8\xff",
    "png": b"\x89PNG\r\n\x1a\n",
    "webp": b"RIFF",
    "gif": b"GIF8",
    "tiff": b"II*\x00",
    "avif": b"\x00\x00\x00",
}
"""How each output format's file starts."""


def ramp(width: int, height: int) -> Any:
    """Colourful content: a red/green ramp over a blue constant."""
    xyz = pyvips.Image.xyz(width, height)
    red = (xyz[0] * 255 / max(width - 1, 1)).cast("uchar")
    green = (xyz[1] * 255 / max(height - 1, 1)).cast("uchar")
    return red.bandjoin([green, 90]).copy(interpretation="srgb").cast("uchar")
