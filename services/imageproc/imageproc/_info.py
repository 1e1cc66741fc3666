"""What an image is, as plain JSON-ready values for provenance: never pixels, never GPS.

``describe_image`` reads only metadata, so it costs nothing on a lazy pyvips image.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pyvips
from PIL import Image

from pipeline import SNIFF_BYTES, ImageFormat, InputFormat, sniff_format

__all__ = ["describe_bytes", "describe_image"]

# EXIF tags (TIFF/EXIF 2.3 numbering).
_IFD0 = {"make": 0x010F, "model": 0x0110, "software": 0x0131}
_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_DATETIME_ORIGINAL = 0x9003
_NUMBERS = {"exposure_time": 0x829A, "f_number": 0x829D, "focal_length": 0x920A}
_ISO = 0x8827
_SUMMARY_KEYS = (*_IFD0, "datetime_original", *_NUMBERS, "iso")

# EXIF text is untrusted and unbounded; provenance records need only a name.
_MAX_TEXT = 100
_EXIF_DATETIME = re.compile(r"(\d{4}):(\d{2}):(\d{2}) (\d{2}:\d{2}:\d{2})")


def describe_image(image: Any, fmt: InputFormat, *, pages: int = 1) -> dict[str, Any]:
    """Size (one frame's height), format, bands, colour space, alpha, orientation,
    profile presence and an EXIF summary (None without EXIF) of a pyvips image."""
    fields = image.get_fields()
    return {
        "format": fmt.value,
        "width": image.width,
        "height": _frame_height(image, fields, pages),
        "pages": pages,
        "bands": image.bands,
        "band_format": str(image.format),
        "interpretation": str(image.interpretation),
        "has_alpha": bool(image.hasalpha()),
        "orientation": _orientation(image, fields),
        "icc": "icc-profile-data" in fields,
        "exif": _exif_summary(bytes(image.get("exif-data"))) if "exif-data" in fields else None,
    }


def describe_bytes(data: bytes) -> dict[str, Any]:
    """``describe_image`` of an encoded image, reading only its header.

    Raises ValueError for a format outside the allow-list, pyvips.Error for an
    unreadable header.
    """
    fmt = sniff_format(data[:SNIFF_BYTES])
    if not isinstance(fmt, ImageFormat):
        raise ValueError("not an allowed image format")
    # Loading only sets up the header; no pixel is decoded unless asked for.
    image = pyvips.Image.new_from_buffer(data, "", access="sequential")
    pages = int(image.get("n-pages")) if "n-pages" in image.get_fields() else 1
    return describe_image(image, fmt, pages=max(pages, 1))


def _frame_height(image: Any, fields: list[str], pages: int) -> int:
    if pages > 1 and "page-height" in fields:
        page_height = int(image.get("page-height"))
        if 0 < page_height <= image.height and image.height % page_height == 0:
            return page_height
    return int(image.height)


def _orientation(image: Any, fields: list[str]) -> int:
    if "orientation" not in fields:
        return 1
    value = int(image.get("orientation"))
    return value if 1 <= value <= 8 else 1


def _exif_summary(blob: bytes) -> dict[str, Any]:
    exif = Image.Exif()
    try:
        exif.load(blob)
        details = exif.get_ifd(_EXIF_IFD)
        has_gps = bool(exif.get_ifd(_GPS_IFD))
    except Exception:
        # Untrusted bytes: however Pillow fails, the answer is "no readable EXIF".
        return dict.fromkeys(_SUMMARY_KEYS) | {"has_gps": False, "readable": False}
    summary: dict[str, Any] = {name: _text(exif.get(tag)) for name, tag in _IFD0.items()}
    summary["datetime_original"] = _datetime(details.get(_DATETIME_ORIGINAL))
    summary.update({name: _number(details.get(tag)) for name, tag in _NUMBERS.items()})
    iso = _number(details.get(_ISO))
    summary["iso"] = int(iso) if iso is not None else None
    summary["has_gps"] = has_gps or _GPS_IFD in exif
    summary["readable"] = True
    return summary


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", "").strip()
    return text[:_MAX_TEXT] or None


def _datetime(value: object) -> str | None:
    """EXIF's ``YYYY:MM:DD HH:MM:SS`` as ISO 8601 (local time: EXIF has no zone)."""
    match = _EXIF_DATETIME.fullmatch(_text(value) or "")
    return f"{match[1]}-{match[2]}-{match[3]}T{match[4]}" if match else None


def _number(value: object) -> float | None:
    if isinstance(value, tuple | list):
        value = value[0] if value else None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return round(number, 6) if math.isfinite(number) else None
