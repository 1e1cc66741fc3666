"""The allow-list of image formats, recognised by content (magic bytes), never by name."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["SNIFF_BYTES", "ImageFormat", "sniff_format"]

# Every signature below fits in the first 32 bytes (AVIF brands included).
SNIFF_BYTES = 32

_AVIF_BRANDS = (b"avif", b"avis")


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


def sniff_format(head: bytes) -> ImageFormat | None:
    """Recognise an allowed format from the first bytes of a file, or return None."""
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
    HEIC files (``heic``/``mif1`` without an AVIF brand) stay out.
    """
    if head[4:8] != b"ftyp":
        return False
    box_end = min(int.from_bytes(head[:4], "big"), len(head))
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, box_end - 3, 4)]
    return any(brand in _AVIF_BRANDS for brand in brands)
