"""Saving the canvas: format, encoder options, colour space, metadata.

Pixels are saved as 8-bit sRGB with no metadata unless the canvas keeps some (the
``strip`` operation). Kept EXIF and XMP still lose their GPS location. With "icc" kept,
an RGB or grey image keeps its profile and the pixel values it describes instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any

import pyvips
from pyvips.enums import ForeignKeep

from pipeline import ImageFormat, InputFormat

from ._canvas import Canvas

_KEEP_FLAGS = {
    "icc": ForeignKeep.ICC,
    "exif": ForeignKeep.EXIF,
    "xmp": ForeignKeep.XMP,
    "iptc": ForeignKeep.IPTC,
}

# aom at effort 4 and up took 6-10x longer than at 3 for files ~10% smaller (1600 px
# photos); 3 keeps AVIF within a second or so.
_AVIF_EFFORT = 3

# Bit depths a palette PNG can have; the palette holds at most 2**depth colours.
_PNG_PALETTE_DEPTHS = (1, 2, 4, 8)
_GIF_PALETTE_DEPTHS = range(1, 9)

# libvips writes the EXIF GPS IFD from these fields: removing them removes the location.
_GPS_FIELDS = "exif-ifd3-"
# IFD1 holds an embedded preview of the ORIGINAL image: after a crop or an edit it would
# still show what was cut away. Never kept.
_THUMBNAIL_FIELDS = ("exif-ifd1-", "jpeg-thumbnail-data")

# An XMP property named GPS*: attribute, empty element, or element with content.
_XMP_GPS = re.compile(
    rb"""\s[\w.-]+:GPS[\w.-]*\s*=\s*(?:"[^"]*"|'[^']*')"""
    rb"|<[\w.-]+:GPS[\w.-]*\b[^>]*/>"
    rb"|<([\w.-]+:GPS[\w.-]*)\b[^>]*>.*?</\1\s*>",
    re.DOTALL,
)


def start_format(fmt: InputFormat) -> ImageFormat:
    """Keep the input's format when libvips can write it, else fall back to PNG (always
    for the input-only formats)."""
    if isinstance(fmt, ImageFormat) and fmt.extension in pyvips.get_suffixes():
        return fmt
    return ImageFormat.PNG


def encode(canvas: Canvas) -> bytes:
    """The canvas as bytes in its format. Raises pyvips.Error (the engine names the step)."""
    image = _output_colour(canvas.image, keep_icc="icc" in canvas.keep)
    image = _without_location(image, canvas.keep)
    if canvas.format is ImageFormat.JPEG and image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1))
    options = _FORMAT_OPTIONS[canvas.format](canvas)
    keep = sum(_KEEP_FLAGS[name] for name in canvas.keep)
    return bytes(image.write_to_buffer(canvas.format.extension, keep=keep, **options))


# --- encoder options per format -----------------------------------------------------


def _jpeg(canvas: Canvas) -> dict[str, Any]:
    return {"Q": canvas.quality, "interlace": canvas.progressive}


def _png(canvas: Canvas) -> dict[str, Any]:
    options: dict[str, Any] = {"interlace": canvas.progressive}
    if canvas.bilevel:
        options["bitdepth"] = 1
    elif canvas.palette_colours is not None and canvas.image.bands >= 3:
        # Grey images stay 8-bit grey: a palette PNG would decode as RGB.
        depth = _palette_depth(canvas.palette_colours, _PNG_PALETTE_DEPTHS)
        options.update(palette=True, bitdepth=depth, dither=1.0)
    return options


def _webp(canvas: Canvas) -> dict[str, Any]:
    return {"Q": canvas.quality, "lossless": canvas.lossless}


def _avif(canvas: Canvas) -> dict[str, Any]:
    return {
        "Q": canvas.quality,
        "lossless": canvas.lossless,
        "compression": "av1",
        "effort": _AVIF_EFFORT,
    }


def _tiff(canvas: Canvas) -> dict[str, Any]:
    # Always lossless: deflate with a predictor suits both photos and graphics.
    if canvas.bilevel:
        # libtiff has no predictor for 1-bit samples.
        return {"compression": "deflate", "predictor": "none", "bitdepth": 1}
    return {"compression": "deflate", "predictor": "horizontal"}


def _gif(canvas: Canvas) -> dict[str, Any]:
    colours = 2 if canvas.bilevel else (canvas.palette_colours or 256)
    depth = _palette_depth(colours, _GIF_PALETTE_DEPTHS)
    return {"interlace": canvas.progressive, "bitdepth": depth, "dither": 1.0}


def _palette_depth(colours: int, depths: Collection[int]) -> int:
    """The smallest depth whose palette holds ``colours`` (libvips quantises to 2**depth)."""
    return min((depth for depth in depths if 2**depth >= colours), default=max(depths))


_FORMAT_OPTIONS: dict[ImageFormat, Callable[[Canvas], dict[str, Any]]] = {
    ImageFormat.JPEG: _jpeg,
    ImageFormat.PNG: _png,
    ImageFormat.WEBP: _webp,
    ImageFormat.AVIF: _avif,
    ImageFormat.TIFF: _tiff,
    ImageFormat.GIF: _gif,
}


# --- colour -------------------------------------------------------------------------


def _output_colour(image: Any, *, keep_icc: bool) -> Any:
    """8-bit pixels: in the image's own profile when it is kept and fits, else sRGB."""
    own_space = _profile_space(image) if keep_icc else None
    if own_space is not None:
        # Same values, only 16 bits to 8: the kept profile still describes them.
        return image.colourspace(own_space)
    return _to_srgb(image)


def _profile_space(image: Any) -> str | None:
    """The colour space ("srgb" or "b-w") of the pixels if the embedded profile fits them."""
    if "icc-profile-data" not in image.get_fields():
        return None
    # ICC header: the data colour space signature is at bytes 16-19.
    kind = bytes(image.get("icc-profile-data"))[16:20]
    if kind == b"RGB " and image.interpretation in ("srgb", "rgb16"):
        return "srgb"
    if kind == b"GRAY" and image.interpretation in ("b-w", "grey16"):
        return "b-w"
    return None


def _to_srgb(image: Any) -> Any:
    if image.interpretation in ("b-w", "grey16"):
        # A colour profile left over from before a grey conversion no longer applies.
        return _without_fields(image.colourspace("b-w").cast("uchar"), ["icc-profile-data"])
    if "icc-profile-data" in image.get_fields():
        # Honour the embedded profile (e.g. CMYK or Adobe RGB) instead of guessing;
        # the result carries the sRGB profile.
        return image.icc_transform("srgb", embedded=True, intent="perceptual")
    return image.colourspace("srgb").cast("uchar")


# --- metadata -----------------------------------------------------------------------


def _without_location(image: Any, keep: Collection[str]) -> Any:
    """Remove GPS data from the EXIF and XMP that will be kept, and the EXIF thumbnail."""
    fields = image.get_fields()
    unsafe = (_GPS_FIELDS, *_THUMBNAIL_FIELDS)
    dropped = [name for name in fields if name.startswith(unsafe)] if "exif" in keep else []
    xmp = "xmp" in keep and "xmp-data" in fields
    if not dropped and not xmp:
        return image
    image = image.copy()
    for name in dropped:
        image.remove(name)
    if xmp:
        scrubbed = _XMP_GPS.sub(b"", bytes(image.get("xmp-data")))
        if b"GPS" in scrubbed:
            # Location in a shape the pattern does not know: drop the whole packet.
            image.remove("xmp-data")
        else:
            image.set_type(pyvips.GValue.blob_type, "xmp-data", scrubbed)
    return image


def _without_fields(image: Any, names: Collection[str]) -> Any:
    present = [name for name in names if name in image.get_fields()]
    if not present:
        return image
    image = image.copy()
    for name in present:
        image.remove(name)
    return image
