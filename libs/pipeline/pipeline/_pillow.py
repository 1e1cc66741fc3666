"""The input-only formats (``ExtendedFormat``): header checks and decoding with Pillow.

This machine's libvips has no BMP, ICO, PNM, QOI or JPEG 2000 loader, and its HEIF
loader decodes AV1 only: Pillow reads each of them, HEIF/HEIC through pillow-heif's
plugin (libheif with the libde265 HEVC decoder). ``Image.open`` parses the header only
(no pixel is decoded before ``load``), so the limits are checked exactly as for libvips'
formats before any decode. Only the plugin named by the sniffed format may read the
bytes: content that looks like a BMP is never handed to, say, Pillow's EPS plugin.

Decoding (``decode_extended``) belongs in imageproc's worker processes only, where the
deadline and memory limits of every pipeline stop a decoder that overruns (the worker
is killed).
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Callable
from typing import IO, Any

import pillow_heif
import pyvips
from PIL import IcoImagePlugin, Image, UnidentifiedImageError

from ._errors import ImageRejected
from ._formats import ExtendedFormat

__all__ = ["decode_extended", "header_of", "icon_sizes", "open_extended"]

_PLUGINS: dict[ExtendedFormat, list[str]] = {
    ExtendedFormat.BMP: ["BMP"],
    ExtendedFormat.ICO: ["ICO", "CUR"],
    ExtendedFormat.PNM: ["PPM"],
    ExtendedFormat.QOI: ["QOI"],
    ExtendedFormat.JP2: ["JPEG2000"],
    ExtendedFormat.HEIF: ["HEIF"],
}
# The HEIF plugin, for `_PLUGINS` only (Image.open is always told which plugin may
# read): no embedded thumbnails decoded, HDR made 8-bit as the other formats are.
pillow_heif.register_heif_opener(thumbnails=False)

# Pillow modes libvips takes as they are: mode -> (bands, band format).
_DIRECT = {
    "L": (1, "uchar"),
    "LA": (2, "uchar"),
    "RGB": (3, "uchar"),
    "RGBA": (4, "uchar"),
    "I;16": (1, "ushort"),
}
# Errors Pillow raises for bytes it cannot parse (a truncated or damaged header), and
# pillow-heif for anything libheif refuses (RuntimeError: corrupt data, or its own limits,
# e.g. an item whose declared extent passes libheif's 1 Gpx while its cropped size is small).
_PARSE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, RuntimeError)


_ICON_ENTRY = struct.Struct("<BBBBHHII")
_DIB_HEADER_SIZES = frozenset({40, 52, 56, 108, 124})
_MAX_ICON_ENTRIES = 256
"""Real icons hold a handful of sizes; a directory claiming more is refused unread."""


def icon_sizes(stream: IO[bytes]) -> list[tuple[int, int]]:
    """The size of each image in an icon (ICO/CUR) as its own header says, read without
    Pillow: Pillow's ICO plugin decodes the largest image as it opens the file, and an
    embedded PNG may be far larger than the directory's one-byte sides say.

    Raises ImageRejected(``undecodable``) for a directory that does not parse.
    """
    stream.seek(0)
    head = stream.read(6)
    if len(head) < 6:
        raise _bad_icon("cut short")
    count = int.from_bytes(head[4:6], "little")
    if not 0 < count <= _MAX_ICON_ENTRIES:
        raise _bad_icon(f"{count} images")
    table = stream.read(count * _ICON_ENTRY.size)
    if len(table) < count * _ICON_ENTRY.size:
        raise _bad_icon("cut short")
    return [_icon_image_size(stream, entry[7]) for entry in _ICON_ENTRY.iter_unpack(table)]


def _icon_image_size(stream: IO[bytes], offset: int) -> tuple[int, int]:
    stream.seek(offset)
    head = stream.read(24)
    if len(head) == 24 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
    elif len(head) >= 12 and int.from_bytes(head[:4], "little") in _DIB_HEADER_SIZES:
        width, height = struct.unpack("<ii", head[4:12])  # DIB: twice the height (mask)
        width, height = abs(width), abs(height) // 2
    else:
        raise _bad_icon("an image is neither PNG nor a bitmap")
    if width <= 0 or height <= 0:
        raise _bad_icon("an image without pixels")
    return width, height


def _bad_icon(why: str) -> ImageRejected:
    return ImageRejected("undecodable", f"the ico image header cannot be read ({why})")


def open_extended(stream: IO[bytes], fmt: ExtendedFormat) -> Any:
    """Parse the header of ``stream`` with the plugin of ``fmt`` only, decoding nothing.

    Raises ImageRejected: ``undecodable`` for a header that does not parse,
    ``too_many_pixels`` for one past Pillow's own bomb guard (twice its default pixels).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(stream, formats=_PLUGINS[fmt])
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", f"the {fmt.value} image is far too large") from exc
    except _PARSE_ERRORS as exc:
        raise ImageRejected("undecodable", f"the {fmt.value} image header cannot be read") from exc


def header_of(image: Any) -> tuple[int, int, int, int, bool]:
    """Width, height, frames, bands and alpha of an opened (not loaded) Pillow image.

    Frames count only where Pillow decodes more than one (none of these formats is
    animated here: the first frame or, for an icon, its largest image is used), but a
    header claiming thousands is still refused as ``too_many_frames``.
    """
    mode = image.mode
    bands = len(image.getbands())
    alpha = mode in ("LA", "RGBA", "PA", "La", "RGBa") or "transparency" in image.info
    pages = int(getattr(image, "n_frames", 1) or 1)
    return image.width, image.height, pages, bands, alpha


def decode_extended(data: bytes, fmt: ExtendedFormat, check: Callable[[int, int], None]) -> Any:
    """Decode ``data`` (already probed against the limits) into a pyvips image in memory.

    ``check(width, height)`` sees the size about to be decoded first, and raises to stop
    it: an icon's directory may say 16 x 16 for an embedded PNG whose own header says
    far more, and Pillow decodes what the PNG says.

    Raises ImageRejected(``undecodable``) for a body Pillow cannot decode (truncated,
    damaged): the same error libvips' formats give.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = _unloaded(data, fmt)
            try:
                check(image.width, image.height)
                image.load()
                return _with_profile(_to_vips(_normalised(image)), image.info.get("icc_profile"))
            finally:
                image.close()
    except _PARSE_ERRORS as exc:
        raise ImageRejected(
            "undecodable", f"the {fmt.value} image cannot be decoded: its data is corrupt"
        ) from exc


def _unloaded(data: bytes, fmt: ExtendedFormat) -> Any:
    """What Pillow will decode, its header read and no pixel yet. For an icon, its
    largest image, read from the directory without ``Image.open`` (whose ICO plugin
    decodes that image as it opens the file)."""
    if data[:4] == b"\x00\x00\x01\x00":
        return IcoImagePlugin.IcoFile(io.BytesIO(data)).frame(0)  # the largest first
    return open_extended(io.BytesIO(data), fmt)


def _normalised(image: Any) -> Any:
    """The image in a mode libvips takes: 8-bit L/LA/RGB/RGBA or 16-bit grey."""
    mode = image.mode
    if mode in _DIRECT:
        return image
    if mode == "1":  # PBM, 1-bit BMP
        return image.convert("L")
    if mode == "F":  # PFM: linear floats, 0..1 is black..white
        return image.point(lambda value: value * 255).convert("L")
    if mode.startswith("I"):  # 16-bit PGM in other layouts, 32-bit integers
        return image.convert("I").convert("I;16")  # clamped to 0..65535
    has_alpha = "A" in mode or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def _to_vips(image: Any) -> Any:
    bands, band_format = _DIRECT[image.mode]
    vips = pyvips.Image.new_from_memory(
        image.tobytes(), image.width, image.height, bands, band_format
    )
    if band_format == "ushort":
        return vips.copy(interpretation="grey16")
    return vips.copy(interpretation="b-w" if bands <= 2 else "srgb")


MAX_PROFILE_BYTES = 1024 * 1024
"""An embedded colour profile larger than this is dropped (real ones are a few KB)."""


def _with_profile(image: Any, profile: Any) -> Any:
    """`image` with the colour profile its file embedded (a phone's HEIC is Display P3),
    so that the pipeline's colour handling reads it as libvips' own loaders would; a
    grey image, or an implausible profile, is left without one."""
    if not isinstance(profile, bytes) or not 0 < len(profile) <= MAX_PROFILE_BYTES:
        return image
    if image.bands < 3:
        return image
    tagged = image.copy()
    tagged.set_type(pyvips.GValue.blob_type, "icc-profile-data", profile)
    return tagged
