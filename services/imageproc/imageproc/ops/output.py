"""Output: format, encoder options, metadata. These change how the canvas is saved."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pipeline import Convert, ImageFormat

from .._canvas import Canvas


def convert(canvas: Canvas, op: Convert) -> Canvas:
    return replace(canvas, format=ImageFormat(op.format), quality=op.quality)


OPERATIONS: dict[str, Callable[[Canvas, Any], Canvas]] = {"convert": convert}
