"""The operations, by family. Each module exports `OPERATIONS`: op name -> function.

A function takes the Canvas and the op's validated model and returns a new Canvas. For
animated inputs the engine calls it once per frame, with `canvas.image` one frame."""

from collections.abc import Callable
from typing import Any

from .._canvas import Canvas
from . import geometry, output, tone

OpFunction = Callable[[Canvas, Any], Canvas]

OPERATIONS: dict[str, OpFunction] = {**geometry.OPERATIONS, **tone.OPERATIONS, **output.OPERATIONS}

__all__ = ["OPERATIONS", "OpFunction"]
