"""The allow-list of image formats, recognised by content (magic bytes), never by name.

``ImageFormat`` holds the formats libvips reads and writes here (inputs and outputs);
``ExtendedFormat`` the input-only ones this machine's libvips cannot read, decoded by
Pillow in imageproc's workers (``_pillow``): HEIF/HEIC (HEVC, as phones save photos)
through pillow-heif's libheif and libde265, since libvips' libheif here decodes AV1 only.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeAlias

__all__ = [
    "SNIFF_BYTES",
    "ExtendedFormat",
    "ImageFormat",
    "InputFormat",
    "accepted_format_names",
    "accepted_formats",
    "sniff_format",
]

# Every signature below fits in the first 32 bytes (AVIF brands included).
SNIFF_BYTES = 32

_AVIF_BRANDS = (b"avif", b"avis")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
"""HEIF brands (ISO/IEC 23008-12): HEVC stills and sequences, and the generic image and
sequence brands, which an AVIF brand, checked first, would have claimed."""


class ImageFormat(StrEnum):
    """An accepted image format; the value is the short name used on the wire."""

    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"
    GIF = "gif"
    TIFF = "tiff"
    AVIF = "avif"

    @property
    def content_type(self) -> str:
        return f"image/{self.value}"

    @property
    def extension(self) -> str:
        """The usual file suffix, with its dot (e.g. ``.jpg``)."""
        return ".jpg" if self is ImageFormat.JPEG else f".{self.value}"


class ExtendedFormat(StrEnum):
    """An accepted input-only format, decoded by Pillow (never an output format)."""

    BMP = "bmp"
    ICO = "ico"
    """Windows icons and cursors (ICO, CUR)."""
    PNM = "pnm"
    """Netpbm: PBM, PGM, PPM (P1-P6) and greyscale PFM (Pf)."""
    QOI = "qoi"
    JP2 = "jp2"
    """JPEG 2000: the JP2 container or a bare J2K codestream."""
    HEIF = "heif"
    """HEIF/HEIC: HEVC-coded images in an ISO-BMFF container (phones' photos)."""

    @property
    def content_type(self) -> str:
        return _EXTENDED_TYPES[self]

    @property
    def extension(self) -> str:
        """The usual file suffix, with its dot (``.heic``, as phones name HEVC photos)."""
        return ".heic" if self is ExtendedFormat.HEIF else f".{self.value}"


_EXTENDED_TYPES = {
    ExtendedFormat.BMP: "image/bmp",
    ExtendedFormat.ICO: "image/vnd.microsoft.icon",
    ExtendedFormat.PNM: "image/x-portable-anymap",
    ExtendedFormat.QOI: "image/qoi",
    ExtendedFormat.JP2: "image/jp2",
    ExtendedFormat.HEIF: "image/heif",
}

InputFormat: TypeAlias = ImageFormat | ExtendedFormat
"""Any accepted input format."""

_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_J2K_CODESTREAM = b"\xff\x4f\xff\x51"
# Netpbm magics Pillow reads: plain and raw PBM/PGM/PPM, and greyscale PFM.
_PNM_MAGICS = (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"Pf")


def accepted_formats() -> list[str]:
    """Every accepted input format's short name, the main ones first."""
    return [f.value for f in ImageFormat] + [f.value for f in ExtendedFormat]


_DISPLAY_NAMES = {
    "jpeg": "JPEG",
    "webp": "WebP",
    "ico": "ICO/CUR",
    "jp2": "JPEG 2000",
    "heif": "HEIF/HEIC",
}


def accepted_format_names() -> str:
    """The accepted formats for people: ``JPEG, PNG, WebP, ..., JPEG 2000``."""
    return ", ".join(_DISPLAY_NAMES.get(name, name.upper()) for name in accepted_formats())


def sniff_format(head: bytes) -> InputFormat | None:
    """Recognise an accepted format from the first bytes of a file, or return None."""
    return _sniff_main(head) or _sniff_extended(head)


def _sniff_extended(head: bytes) -> ExtendedFormat | None:
    if head[:2] == b"BM" and len(head) >= 18:
        return ExtendedFormat.BMP
    # ICONDIR: reserved 0, type 1 (icon) or 2 (cursor), at least one image.
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and head[4:6] != b"\x00\x00":
        return ExtendedFormat.ICO
    if head[:2] in _PNM_MAGICS and head[2:3].isspace():
        return ExtendedFormat.PNM
    if head[:4] == b"qoif":
        return ExtendedFormat.QOI
    if head.startswith(_JP2_SIGNATURE) or head.startswith(_J2K_CODESTREAM):
        return ExtendedFormat.JP2
    if any(brand in _HEIF_BRANDS for brand in _ftyp_brands(head)):
        return ExtendedFormat.HEIF  # AVIF, an ImageFormat, was recognised first
    return None


def _sniff_main(head: bytes) -> ImageFormat | None:
    if head.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageFormat.PNG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ImageFormat.WEBP
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ImageFormat.GIF
    # Classic and BigTIFF, both byte orders.
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return ImageFormat.TIFF
    if _is_avif(head):
        return ImageFormat.AVIF
    return None


def _is_avif(head: bytes) -> bool:
    """An ISO-BMFF ``ftyp`` box whose major or a compatible brand is AVIF.

    Checking compatible brands too admits files whose major brand is ``mif1``;
    HEIC files (``heic``/``mif1`` without an AVIF brand) are HEIF (``ExtendedFormat``).
    """
    return any(brand in _AVIF_BRANDS for brand in _ftyp_brands(head))


def _ftyp_brands(head: bytes) -> list[bytes]:
    """The major and compatible brands of an ISO-BMFF ``ftyp`` box (none without one)."""
    if head[4:8] != b"ftyp":
        return []
    box_end = min(int.from_bytes(head[:4], "big"), len(head))
    return [head[8:12]] + [head[i : i + 4] for i in range(16, box_end - 3, 4)]
