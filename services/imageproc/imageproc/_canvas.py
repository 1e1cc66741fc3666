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
    quality: int = DEFAULT_QUALITY
    # Only 0 and 255: PNG can store it at one bit per pixel.
    bilevel: bool = False


def to_grey(image: Any) -> Any:
    return image.colourspace("b-w").cast("uchar")
