"""Operations on the pixels' values: colour, tone, filters, dithering, watermarks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._model import OpModel


class Grayscale(OpModel):
    """Convert the image to shades of grey (one band, alpha kept)."""

    op: Literal["grayscale"] = "grayscale"


class Dither(OpModel):
    """Convert to pure black and white by error diffusion; the result is saved as PNG.

    Pixels become exactly 0 or 255 (threshold 128); a later convert can change the format.
    """

    op: Literal["dither"] = "dither"
    method: Literal["floyd-steinberg"] = Field(
        default="floyd-steinberg", description="Error-diffusion kernel."
    )


TONE_OPS = (Grayscale, Dither)
