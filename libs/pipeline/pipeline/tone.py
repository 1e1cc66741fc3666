"""Operations on the pixels' values: colour, tone, filters, dithering, watermarks."""

from __future__ import annotations

import unicodedata
from typing import Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from ._model import OpModel

__all__ = [
    "TONE_OPS",
    "Blur",
    "Brightness",
    "Contrast",
    "Dither",
    "Gamma",
    "Grayscale",
    "Sharpen",
    "Watermark",
]


_PRINTABLE_TEXT = (
    r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x09\x0b-\x1f\x7f-\x9f]*$"
)


class Grayscale(OpModel):
    """Convert the image to shades of grey (one band, alpha kept)."""

    op: Literal["grayscale"] = "grayscale"


class Blur(OpModel):
    """Gaussian blur; larger sigma blurs more. Transparency is blurred with the colours.

    Below a sigma of about 0.5 the blur is too small to change any pixel.
    """

    op: Literal["blur"] = "blur"
    sigma: float = Field(
        ge=0.1, le=100, description="Standard deviation of the Gaussian, in pixels."
    )


class Sharpen(OpModel):
    """Sharpen edges (libvips' unsharp mask on lightness, so colours do not fringe).

    Flat areas are left alone by default (m1 0) so that noise is not amplified.
    """

    op: Literal["sharpen"] = "sharpen"
    sigma: float = Field(
        default=1.0, ge=0.1, le=10, description="Size of the edges to sharpen, in pixels."
    )
    m1: float = Field(default=0.0, ge=0, le=10, description="Amount of sharpening in flat areas.")
    m2: float = Field(
        default=3.0, ge=0, le=20, description="Amount of sharpening in detailed (jaggy) areas."
    )


class Brightness(OpModel):
    """Multiply every colour value by factor (1 leaves the image unchanged), clipped to 255."""

    op: Literal["brightness"] = "brightness"
    factor: float = Field(ge=0, le=10, description="1 unchanged, below 1 darker, above brighter.")


class Contrast(OpModel):
    """Stretch (factor above 1) or flatten (below 1) values around mid-grey 128.

    Each value becomes (value - 128) * factor + 128, clipped to 0..255; 0 gives flat grey.
    """

    op: Literal["contrast"] = "contrast"
    factor: float = Field(ge=0, le=10, description="1 unchanged, 0 flat grey, 2 double contrast.")


class Gamma(OpModel):
    """Gamma correction: value = 255 * (value / 255) ** (1 / exponent).

    Black and white stay put; an exponent above 1 brightens the mid-tones, below 1 darkens them.
    """

    op: Literal["gamma"] = "gamma"
    exponent: float = Field(ge=0.1, le=10, description="1 unchanged, 2.2 brightens mid-tones.")


class Dither(OpModel):
    """Reduce the image to few colours by dithering; the result is saved as PNG.

    floyd-steinberg (error diffusion) and bayer (ordered, a regular pattern) give pure black
    and white (0 or 255, transparency treated as white), saved at one bit per pixel.
    palette quantises to a palette of `colours` colours with error diffusion, keeping
    transparency, and is saved as a palette PNG.
    A later convert can change the format.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "dependentSchemas": {
                "matrix_size": {
                    "properties": {"method": {"const": "bayer"}},
                    "required": ["method"],
                },
                "colours": {"properties": {"method": {"const": "palette"}}, "required": ["method"]},
            }
        }
    )

    op: Literal["dither"] = "dither"
    method: Literal["floyd-steinberg", "bayer", "palette"] = Field(
        default="floyd-steinberg", description="Dithering method."
    )
    matrix_size: Literal[2, 4, 8] | None = Field(
        default=None, description="Side of the Bayer threshold matrix (bayer only; default 4)."
    )
    colours: Literal[2, 4, 16, 256] | None = Field(
        default=None,
        description="Palette size, PNG's 1, 2, 4 or 8 bits per pixel (palette only; default 16).",
    )

    @model_validator(mode="after")
    def _params_match_method(self) -> Self:
        if self.matrix_size is not None and self.method != "bayer":
            raise ValueError(f'matrix_size applies only to method "bayer", not "{self.method}"')
        if self.colours is not None and self.method != "palette":
            raise ValueError(f'colours applies only to method "palette", not "{self.method}"')
        return self


class Watermark(OpModel):
    """Write a line of text over the image, in a corner, on an edge or in the centre.

    Text too large for the image (inside the margins) is scaled down to fit.
    """

    op: Literal["watermark"] = "watermark"
    text: str = Field(
        min_length=1,
        max_length=200,
        description="The text, drawn as it is.",
        # What the validator below enforces: something besides spaces, no control characters
        # (newlines allowed). In the schema only, so the model keeps its plain message.
        json_schema_extra={"pattern": _PRINTABLE_TEXT},
    )
    font_size: int = Field(default=24, ge=6, le=400, description="Font size in pixels.")
    opacity: float = Field(default=0.5, ge=0, le=1, description="0 invisible, 1 opaque text.")
    gravity: Literal[
        "north",
        "south",
        "east",
        "west",
        "centre",
        "north-east",
        "north-west",
        "south-east",
        "south-west",
    ] = Field(default="south-east", description="Where the text goes.")
    colour: str = Field(
        default="#ffffff", pattern=r"^#[0-9a-fA-F]{6}$", description='Text colour, "#rrggbb".'
    )
    margin: int = Field(
        default=16, ge=0, le=1000, description="Distance from the image's edges, in pixels."
    )

    @field_validator("text")
    @classmethod
    def _printable(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("text must contain something besides spaces")
        if any(unicodedata.category(char) in ("Cc", "Cs") for char in text if char != "\n"):
            raise ValueError("text must not contain control characters (except newlines)")
        return text


TONE_OPS = (Grayscale, Blur, Sharpen, Brightness, Contrast, Gamma, Dither, Watermark)
