"""Tone: colour, filters, dithering, watermarks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pipeline import Dither, Grayscale, ImageFormat

from .._canvas import Canvas, to_grey
from .._dither import floyd_steinberg


def grayscale(canvas: Canvas, op: Grayscale) -> Canvas:
    return replace(canvas, image=to_grey(canvas.image))


def dither(canvas: Canvas, op: Dither) -> Canvas:
    image = canvas.image
    if image.hasalpha():
        # Transparent areas read as white paper, not as whatever colour they hide.
        image = image.flatten(background=[255] * (image.bands - 1))
    image = floyd_steinberg(to_grey(image))
    return replace(canvas, image=image, format=ImageFormat.PNG, bilevel=True)


OPERATIONS: dict[str, Callable[[Canvas, Any], Canvas]] = {"grayscale": grayscale, "dither": dither}
