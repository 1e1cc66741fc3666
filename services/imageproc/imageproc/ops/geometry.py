"""Geometry: size, crop, orientation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pyvips

from pipeline import Thumbnail

from .._canvas import Canvas

# "Unbounded" for the side a thumbnail request leaves out.
UNBOUNDED = 10_000_000


def thumbnail(canvas: Canvas, op: Thumbnail) -> Canvas:
    width, height = thumbnail_box(op)
    image = canvas.image.thumbnail_image(width, height=height, size=thumbnail_size(op))
    return replace(canvas, image=image, bilevel=False)


def thumbnail_from_buffer(data: bytes, op: Thumbnail, load_options: str) -> Any:
    """Thumbnail straight from the encoded bytes, so libvips can shrink on load. The
    engine uses this when thumbnail is a pipeline's first operation."""
    width, height = thumbnail_box(op)
    return pyvips.Image.thumbnail_buffer(
        data, width, height=height, size=thumbnail_size(op), option_string=load_options
    )


def thumbnail_box(op: Thumbnail) -> tuple[int, int]:
    return op.width or UNBOUNDED, op.height or UNBOUNDED


def thumbnail_size(op: Thumbnail) -> str:
    return "both" if op.upscale else "down"


OPERATIONS: dict[str, Callable[[Canvas, Any], Canvas]] = {"thumbnail": thumbnail}
