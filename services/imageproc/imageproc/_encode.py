"""Saving the canvas: format, encoder options, colour space, metadata."""

from __future__ import annotations

from typing import Any

import pyvips

from pipeline import ImageFormat

from ._canvas import Canvas


def start_format(fmt: ImageFormat) -> ImageFormat:
    """Keep the input's format when libvips can write it, else fall back to PNG."""
    return fmt if fmt.extension in pyvips.get_suffixes() else ImageFormat.PNG


def encode(canvas: Canvas) -> bytes:
    """The canvas as bytes in its format. Raises pyvips.Error (the engine names the step)."""
    image = _to_srgb(canvas.image)
    if canvas.format is ImageFormat.JPEG and image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1))
    return bytes(image.write_to_buffer(canvas.format.extension, **_save_options(canvas)))


def _save_options(canvas: Canvas) -> dict[str, Any]:
    # keep="none" strips EXIF, XMP, IPTC and ICC: the pixels are already sRGB.
    options: dict[str, Any] = {"keep": "none"}
    if canvas.format in (ImageFormat.JPEG, ImageFormat.WEBP, ImageFormat.AVIF):
        options["Q"] = canvas.quality
    if canvas.format is ImageFormat.PNG and canvas.bilevel:
        options["bitdepth"] = 1
    return options


def _to_srgb(image: Any) -> Any:
    if image.interpretation in ("b-w", "grey16"):
        return image.colourspace("b-w").cast("uchar")
    if "icc-profile-data" in image.get_fields():
        # Honour the embedded profile (e.g. CMYK or Adobe RGB) instead of guessing.
        return image.icc_transform("srgb", embedded=True, intent="perceptual")
    return image.colourspace("srgb").cast("uchar")
