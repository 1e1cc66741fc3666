"""Header-only inspection of untrusted images (pyvips, Pillow), with the size limits
(`_limits`) applied before decoding."""

from __future__ import annotations

import io
import mmap
import os
import traceback
from collections.abc import Callable
from typing import Any

import pyvips

from ._errors import ImageRejected
from ._formats import (
    SNIFF_BYTES,
    ExtendedFormat,
    ImageFormat,
    sniff_format,
)
from ._jpeg import count_jpeg_scans
from ._limits import ImageInfo, ImageLimits, check_limits, unsupported_message
from ._pillow import header_of, icon_sizes, open_extended

__all__ = ["harden_vips", "probe_file", "probe_image"]

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
    head = data[:SNIFF_BYTES]
    extended = sniff_format(head)
    if isinstance(extended, ExtendedFormat):
        return _probe_extended(io.BytesIO(data), extended, limits)
    return _probe(
        head,
        lambda: pyvips.Image.new_from_buffer(data, "", access="sequential"),
        limits,
        lambda limit: count_jpeg_scans(data, stop_after=limit),
    )


def probe_file(descriptor: int, *, limits: ImageLimits) -> ImageInfo:
    """``probe_image`` of the file open on ``descriptor``, read from its start without
    holding it in memory (libvips reads through its own duplicate of the descriptor, closed
    when the header is read; the caller's stays open)."""
    head = os.pread(descriptor, SNIFF_BYTES, 0)
    extended = sniff_format(head)
    if isinstance(extended, ExtendedFormat):
        # Pillow reads with positioned reads: the descriptor's own offset stays put.
        with io.BufferedReader(_PositionedReader(descriptor)) as stream:
            return _probe_extended(stream, extended, limits)
    try:
        return _probe(
            head,
            lambda: pyvips.Image.new_from_source(
                pyvips.Source.new_from_descriptor(descriptor), "", access="sequential"
            ),
            limits,
            lambda limit: _count_file_scans(descriptor, limit),
        )
    except ImageRejected as exc:
        # Its traceback holds the loader's frames, and through them libvips' duplicate of
        # the descriptor: let them go now, not whenever the error is collected.
        _release_frames(exc)
        raise


def _probe_extended(stream: Any, fmt: ExtendedFormat, limits: ImageLimits) -> ImageInfo:
    """The header of an input-only format, parsed by Pillow without decoding pixels.

    Icons are measured without Pillow, whose ICO plugin decodes the largest image as it
    opens the file: every image's own header is checked (the one decoded is the largest).
    """
    if fmt is ExtendedFormat.ICO:
        sizes = icon_sizes(stream)
        for width, height in sizes:
            check_limits(ImageInfo(fmt, width, height, 1, 4, True), limits)
        width, height = max(sizes, key=lambda size: size[0] * size[1])
        return ImageInfo(fmt, width, height, 1, 4, True)
    image = open_extended(stream, fmt)
    try:
        width, height, pages, bands, alpha = header_of(image)
    finally:
        image.close()
    info = ImageInfo(fmt, width, height, pages, bands, alpha)
    check_limits(info, limits)
    return info


class _PositionedReader(io.RawIOBase):
    """A read-only, seekable view of an open file that never moves its offset nor
    closes it."""

    def __init__(self, descriptor: int) -> None:
        self._descriptor = descriptor
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = os.pread(self._descriptor, len(buffer), self._position)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position}.get(whence)
        if base is None:
            base = os.fstat(self._descriptor).st_size
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position


def _release_frames(exc: BaseException | None) -> None:
    while exc is not None:
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


def _probe(
    head: bytes,
    load: Callable[[], Any],
    limits: ImageLimits,
    count_scans: Callable[[int], int],
) -> ImageInfo:
    fmt = sniff_format(head)
    if not isinstance(fmt, ImageFormat):
        raise ImageRejected("unsupported_type", unsupported_message())
    image = _load_header(load, fmt)
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
        _check_scans(count_scans(limits.max_jpeg_scans), limits.max_jpeg_scans)
    return info


def _count_file_scans(descriptor: int, limit: int) -> int:
    # Mapped, not read: the file's pages stay in the page cache, not in this process.
    with mmap.mmap(descriptor, 0, access=mmap.ACCESS_READ) as mapped:
        return count_jpeg_scans(mapped, stop_after=limit)


def _check_scans(scans: int, limit: int) -> None:
    if scans > limit:
        raise ImageRejected(
            "too_many_scans",
            f"the JPEG has more than {limit} scans; at most {limit} are allowed",
        )


def _load_header(load: Callable[[], Any], fmt: ImageFormat) -> Any:
    # Loading reads the header only; pixels are decoded on demand later.
    try:
        image = load()
    except pyvips.Error as exc:
        raise ImageRejected("undecodable", f"the {fmt.value} image header cannot be read") from exc
    loader = str(image.get("vips-loader"))
    if not loader.startswith(_LOADERS[fmt]):
        raise ImageRejected(
            "unsupported_type",
            f"content looks like {fmt.value} but is not; " + unsupported_message(),
        )
    return image


def _pages(image: Any) -> int:
    if "n-pages" in image.get_fields():
        return max(1, int(image.get("n-pages")))
    return 1
