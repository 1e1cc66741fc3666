"""Inputs in a format this libvips cannot read (``pipeline.ExtendedFormat``), made into
bytes it can: decoded by Pillow, then stored as an uncompressed PNG that the pipeline
reads like any upload. Runs in the worker process, inside the pipeline's deadline (the
save stops at it; the worker is killed if Pillow's decode overruns) and memory limits.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pipeline import ExtendedFormat, ImageFormat, ImageInfo, ImageLimits, check_limits
from pipeline._pillow import decode_extended

from ._deadline import check, guard
from ._info import describe_image

__all__ = ["as_png"]


def as_png(data: bytes, info: ImageInfo, limits: ImageLimits) -> tuple[bytes, ImageInfo, Any]:
    """The image as PNG bytes, its ImageInfo as a PNG, and its description as input.

    Raises ImageRejected (``undecodable``, or a limit the image about to be decoded
    breaks: an icon's embedded PNG may be larger than its directory said) and
    pyvips.Error.
    """
    assert isinstance(info.format, ExtendedFormat)

    def within_limits(width: int, height: int) -> None:
        check_limits(replace(info, width=width, height=height, pages=1), limits)

    image = decode_extended(data, info.format, within_limits)
    decoded = replace(info, width=image.width, height=image.height, pages=1, bands=image.bands)
    check()
    described = describe_image(image, info.format)
    png = guard(image).pngsave_buffer(compression=0, filter="none")
    return png, replace(decoded, format=ImageFormat.PNG), described
