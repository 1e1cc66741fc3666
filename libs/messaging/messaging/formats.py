"""The content type an image is stored and served with, derived from its format through
one allow-list, never copied from a message: a service that could name the content type
(a compromised imageproc answering `text/html`) would choose how browsers read the result.

The formats are pipeline's `ImageFormat` allow-list (tests/messaging/test_formats.py keeps
them equal); they are restated here because the runner does not carry pipeline's libvips.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = ["CONTENT_TYPES", "content_type_of"]

CONTENT_TYPES: Final = MappingProxyType(
    {
        "jpeg": "image/jpeg",
        "png": "image/png",
        "webp": "image/webp",
        "gif": "image/gif",
        "tiff": "image/tiff",
        "avif": "image/avif",
    }
)
"""Image format (its short name on the wire) -> the content type it is served with."""


def content_type_of(image_format: object) -> str | None:
    """The content type for an allowed format; None for anything else."""
    return CONTENT_TYPES.get(image_format) if isinstance(image_format, str) else None
