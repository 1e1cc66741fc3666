"""What an input may be, and what its header says it is: pure data and checks, no image
library (the probes that read headers with pyvips and Pillow are `_probe`'s)."""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import ImageRejected
from ._formats import InputFormat, accepted_formats

__all__ = ["ImageInfo", "ImageLimits", "check_limits", "count_pixels", "unsupported_message"]


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What an input may be at most; pixels are summed over all frames."""

    max_pixels: int = 50_000_000
    max_side: int = 20_000
    max_frames: int = 100
    max_jpeg_scans: int = 100
    """Scans a (progressive) JPEG may have; real encoders write a few dozen at most, and
    every extra one is decoded again in full (see ``_jpeg``)."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the header says about an image (``height`` is one frame's height)."""

    format: InputFormat
    width: int
    height: int
    pages: int
    bands: int
    has_alpha: bool


def check_limits(info: ImageInfo, limits: ImageLimits) -> None:
    """Raise ImageRejected if the image described by ``info`` exceeds ``limits``."""
    side = max(info.width, info.height)
    if side > limits.max_side:
        raise ImageRejected(
            "too_large_side",
            f"image is {info.width}x{info.height} pixels; "
            f"each side must be at most {limits.max_side}",
        )
    if info.pages > limits.max_frames:
        raise ImageRejected(
            "too_many_frames",
            f"image has {info.pages} frames; at most {limits.max_frames} are allowed",
        )
    pixels = info.width * info.height * info.pages
    if pixels > limits.max_pixels:
        raise ImageRejected(
            "too_many_pixels",
            f"image has {count_pixels(pixels)}; at most {count_pixels(limits.max_pixels)} "
            "are allowed",
        )


def count_pixels(pixels: int) -> str:
    """A pixel count as people read it: digits grouped, megapixels beside large ones
    ("200,000,000 pixels (200 MP)")."""
    text = f"{pixels:,} pixels"
    if pixels >= 100_000:
        text += f" ({pixels / 1e6:.3g} MP)"
    return text


def unsupported_message() -> str:
    """Why a file is refused (415), naming every accepted input format."""
    allowed = ", ".join(accepted_formats())
    return f"not an allowed image type (allowed: {allowed})"
