"""Dithering: Floyd-Steinberg and Bayer to pure black and white, palette quantisation.

libvips' palette dither picks two grey levels rather than black and white, and a
Python loop is ~20x slower than Pillow's ``convert("1")`` (threshold 128), so
Floyd-Steinberg is done in C by Pillow. Bayer is a comparison with a tiled threshold
image, all in libvips. Palette quantisation is libvips' own (libimagequant/quantizr).
"""

from __future__ import annotations

from typing import Any

import pyvips
from PIL import Image

__all__ = ["PALETTE_SIZES", "bayer", "bayer_matrix", "floyd_steinberg", "quantise"]

PALETTE_SIZES = (2, 4, 16, 256)


def floyd_steinberg(grey: Any) -> Any:
    """Dither a 1-band 8-bit pyvips image to a 1-band 8-bit image of only 0 and 255."""
    size = (grey.width, grey.height)
    # Pillow reads libvips' pixels where they are (no copy) and its 1-bit result is
    # unpacked straight to one byte per pixel: a 24 MP image needs ~50 MB here, not ~100.
    pixels = Image.frombuffer("L", size, grey.write_to_memory(), "raw", "L", 0, 1)
    bilevel = pixels.convert("1", dither=Image.Dither.FLOYDSTEINBERG)
    del pixels
    # Back to one byte per pixel so later operations see an ordinary grey image.
    unpacked = bilevel.tobytes("raw", "L")
    del bilevel
    return pyvips.Image.new_from_memory(unpacked, grey.width, grey.height, 1, "uchar").copy(
        interpretation="b-w"
    )


def bayer_matrix(size: int) -> list[list[int]]:
    """The size x size Bayer index matrix (0 .. size**2 - 1); size is a power of two."""
    matrix = [[0]]
    while len(matrix) < size:
        # Each level interleaves four shifted copies of the one before: [[0, 2], [3, 1]].
        matrix = [_widen(row, 0, 2) for row in matrix] + [_widen(row, 3, 1) for row in matrix]
    return matrix


def _widen(row: list[int], left: int, right: int) -> list[int]:
    return [4 * cell + left for cell in row] + [4 * cell + right for cell in row]


def bayer(grey: Any, size: int) -> Any:
    """Ordered dithering of a 1-band 8-bit image to only 0 and 255.

    A pixel is white when it is brighter than its cell's threshold; the thresholds are
    spread evenly over 0..256, so a flat grey g turns about g/255 of its pixels white.
    """
    step = 256 / size**2
    thresholds = [[(index + 0.5) * step for index in row] for row in bayer_matrix(size)]
    tile = pyvips.Image.new_from_array(thresholds)
    across, down = -(-grey.width // size), -(-grey.height // size)
    plane = tile.replicate(across, down).crop(0, 0, grey.width, grey.height)
    # A comparison gives 255 where true and 0 where false: the result is already bilevel.
    return (grey > plane).copy(interpretation="b-w")


def quantise(image: Any, colours: int) -> Any:
    """Reduce an 8-bit sRGB or grey image (alpha kept) to at most ``colours`` colours.

    ``colours`` is one of PALETTE_SIZES, the palettes of PNG's 1, 2, 4 and 8-bit depths.

    libvips quantises only when saving, so this goes through an in-memory palette PNG:
    error-diffused, highest quality, and read back as an ordinary RGB(A) or grey image.
    """
    # Not colours=: libvips (8.18) turns it into bitdepth=ceil(log2(colours)), so 3 gives 4
    # colours and 5..8, 17..128 give bit depths PNG does not have.
    if colours not in PALETTE_SIZES:
        raise ValueError(f"a PNG palette has 2, 4, 16 or 256 colours, not {colours}")
    bitdepth = colours.bit_length() - 1
    png = image.pngsave_buffer(palette=True, Q=100, bitdepth=bitdepth, dither=1.0, keep="none")
    quantised = pyvips.Image.new_from_buffer(png, "")
    if image.interpretation != "b-w":
        return quantised
    # A grey image gets a grey palette, read back as RGB: keep one of its equal bands.
    grey = quantised[0].copy(interpretation="b-w")
    return grey.bandjoin(quantised[quantised.bands - 1]) if image.hasalpha() else grey
