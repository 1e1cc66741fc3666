"""Geometry: size, crop, orientation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pipeline import Thumbnail

from .._canvas import Canvas

# "Unbounded" for the side a thumbnail request leaves out.
UNBOUNDED = 10_000_000


def thumbnail(canvas: Canvas, op: Thumbnail) -> Canvas:
    width, height = thumbnail_box(op)
    image = canvas.image.thumbnail_image(width, height=height, size=thumbnail_size(op))
    return replace(canvas, image=image, bilevel=False)


def thumbnail_box(op: Thumbnail) -> tuple[int, int]:
    return op.width or UNBOUNDED, op.height or UNBOUNDED


def thumbnail_size(op: Thumbnail) -> str:
    return "both" if op.upscale else "down"


OPERATIONS: dict[str, Callable[[Canvas, Any], Canvas]] = {"thumbnail": thumbnail}
