"""Floyd-Steinberg dithering to pure black and white, done in C by Pillow.

libvips' palette dither picks two grey levels rather than black and white, and a
Python loop is ~20x slower than Pillow's ``convert("1")`` (threshold 128).
"""

from __future__ import annotations

from typing import Any

import pyvips
from PIL import Image

__all__ = ["floyd_steinberg"]


def floyd_steinberg(grey: Any) -> Any:
    """Dither a 1-band 8-bit pyvips image to a 1-band 8-bit image of only 0 and 255."""
    size = (grey.width, grey.height)
    bilevel = Image.frombytes("L", size, grey.write_to_memory()).convert(
        "1", dither=Image.Dither.FLOYDSTEINBERG
    )
    # Back to one byte per pixel so later operations see an ordinary grey image.
    pixels = bilevel.convert("L").tobytes()
    return pyvips.Image.new_from_memory(pixels, grey.width, grey.height, 1, "uchar").copy(
        interpretation="b-w"
    )
