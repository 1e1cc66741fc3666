"""The image being worked on, and how it will be saved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline import ImageFormat

DEFAULT_QUALITY = 80


@dataclass(frozen=True, slots=True)
class Canvas:
    """The image being worked on and how it will be saved."""

    image: Any
    format: ImageFormat
    pages: int = 1
    """Frames stacked vertically in `image` (animations); operations see one at a time."""
    quality: int = DEFAULT_QUALITY
    # Only 0 and 255: PNG can store it at one bit per pixel.
    bilevel: bool = False
    progressive: bool = False
    """Progressive JPEG / interlaced PNG and GIF."""
    lossless: bool = False
    """WebP, AVIF (and TIFF) lossless where the format has it."""
    palette_colours: int | None = None
    """Save as an error-diffused palette image of this many colours (PNG, GIF)."""
    keep: frozenset[str] = frozenset()
    """Metadata to keep on save ("icc", "exif", "xmp", "iptc"); nothing by default."""


def to_grey(image: Any) -> Any:
    return image.colourspace("b-w").cast("uchar")
