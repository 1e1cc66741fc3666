"""The content type a stored image is sent with: from its format through the allow-lists
(pipeline's, and its input-only formats for inputs), never a type a message named."""

from __future__ import annotations

from typing import Any

from messaging.formats import content_type_of
from pipeline import ExtendedFormat


def input_content_type(image: dict[str, Any]) -> str:
    """An input may also be in an input-only format (BMP, ...): its type from pipeline's
    allow-list as well, never from a message."""
    fmt = image.get("format")
    if fmt in _EXTENDED_FORMATS:
        return ExtendedFormat(fmt).content_type
    return content_type(image)


_EXTENDED_FORMATS = frozenset(fmt.value for fmt in ExtendedFormat)


def content_type(image: dict[str, Any]) -> str:
    # From its format through the allow-list, never a content type a message named.
    return content_type_of(image.get("format")) or "application/octet-stream"
