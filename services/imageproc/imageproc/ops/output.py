"""Output: format, encoder options, metadata. These change how the canvas is saved, never
its pixels (``_encode`` applies them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pipeline import ImageFormat
from pipeline.output import Convert, Info, Strip

from .._canvas import Canvas


def convert(canvas: Canvas, op: Convert) -> Canvas:
    return replace(
        canvas,
        format=ImageFormat(op.format),
        quality=op.quality,
        progressive=op.progressive,
        lossless=op.lossless,
    )


def strip(canvas: Canvas, op: Strip) -> Canvas:
    return replace(canvas, keep=frozenset(op.keep))


def info(canvas: Canvas, op: Info) -> Canvas:
    # The engine records describe_image(canvas.image, ...) for this step.
    return canvas


OPERATIONS: dict[str, Callable[[Canvas, Any], Canvas]] = {
    "convert": convert,
    "strip": strip,
    "info": info,
}
