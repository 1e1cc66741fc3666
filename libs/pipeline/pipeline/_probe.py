"""Header-only inspection of untrusted images, with the size limits applied before decoding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyvips

from ._errors import ImageRejected
from ._formats import SNIFF_BYTES, ImageFormat, sniff_format
from ._jpeg import count_jpeg_scans

__all__ = ["ImageInfo", "ImageLimits", "check_limits", "harden_vips", "probe_image"]

# The libvips loaders each allowed format may be read by; any other means the bytes are
# not what their magic claims. An UltraHDR JPEG (a JPEG with a gain map after it, named
# in an MPF segment) is read by libvips' uhdrload: its primary image is an ordinary JPEG.
_LOADERS = {
    ImageFormat.JPEG: ("jpegload", "uhdrload"),
    ImageFormat.PNG: ("pngload",),
    ImageFormat.WEBP: ("webpload",),
    ImageFormat.GIF: ("gifload",),
    ImageFormat.TIFF: ("tiffload",),
    ImageFormat.AVIF: ("heifload",),
}


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

    format: ImageFormat
    width: int
    height: int
    pages: int
    bands: int
    has_alpha: bool


def harden_vips() -> None:
    """Configure libvips for untrusted input; call once at process start.

    Only the loaders libvips fuzzes stay enabled, and the operation cache is off
    because every image is different (the cache would only hold memory).
    """
    pyvips.block_untrusted_set(True)
    pyvips.cache_set_max(0)


def probe_image(data: bytes, *, limits: ImageLimits) -> ImageInfo:
    """Read only the header of ``data`` and check it against the allow-list and ``limits``.

    Raises ImageRejected with code ``unsupported_type``, ``undecodable``,
    ``too_large_side``, ``too_many_frames``, ``too_many_pixels`` or ``too_many_scans``.
    """
    fmt = sniff_format(data[:SNIFF_BYTES])
    if fmt is None:
        raise ImageRejected("unsupported_type", _unsupported_message())
    image = _load_header(data, fmt)
    info = ImageInfo(
        format=fmt,
        width=image.width,
        height=image.height,
        pages=_pages(image),
        bands=image.bands,
        has_alpha=bool(image.hasalpha()),
    )
    check_limits(info, limits)
    if fmt is ImageFormat.JPEG:
        _check_scans(data, limits.max_jpeg_scans)
    return info


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
            f"image has {pixels} pixels; at most {limits.max_pixels} are allowed",
        )


def _check_scans(data: bytes, limit: int) -> None:
    scans = count_jpeg_scans(data, stop_after=limit)
    if scans > limit:
        raise ImageRejected(
            "too_many_scans",
            f"the JPEG has more than {limit} scans; at most {limit} are allowed",
        )


def _load_header(data: bytes, fmt: ImageFormat) -> Any:
    # new_from_buffer reads the header only; pixels are decoded on demand later.
    try:
        image = pyvips.Image.new_from_buffer(data, "", access="sequential")
    except pyvips.Error as exc:
        raise ImageRejected("undecodable", f"the {fmt.value} image header cannot be read") from exc
    loader = str(image.get("vips-loader"))
    if not loader.startswith(_LOADERS[fmt]):
        raise ImageRejected(
            "unsupported_type",
            f"content looks like {fmt.value} but is not; " + _unsupported_message(),
        )
    return image


def _pages(image: Any) -> int:
    if "n-pages" in image.get_fields():
        return max(1, int(image.get("n-pages")))
    return 1


def _unsupported_message() -> str:
    allowed = ", ".join(f.value for f in ImageFormat)
    return f"not an allowed image type (allowed: {allowed})"
