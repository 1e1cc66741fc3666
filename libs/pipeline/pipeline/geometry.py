"""Operations that change the image's geometry: size, crop, orientation."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from ._model import OpModel

# Larger than any image the input rules let in (ImageLimits.max_side is 20 000).
_MAX_COORDINATE = 100_000

_HEX_COLOUR = r"^#([0-9a-fA-F]{6}|[0-9a-fA-F]{8})$"


class Thumbnail(OpModel):
    """Shrink the image to a box of width x height.

    fit says how: "inside" keeps the aspect ratio and fits within the box (give width,
    height or both); "cover" keeps the aspect ratio, fills the box and crops what overflows
    (crop picks which part stays); "fill" stretches to exactly the box. cover and fill need
    both width and height. The image is never enlarged unless upscale is true.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [{"required": ["width"]}, {"required": ["height"]}],
            "allOf": [
                {
                    "if": {"properties": {"fit": {"enum": ["cover", "fill"]}}, "required": ["fit"]},
                    "then": {"required": ["width", "height"]},
                },
            ],
            "dependentSchemas": {
                "crop": {"properties": {"fit": {"const": "cover"}}, "required": ["fit"]},
            },
        },
    )

    op: Literal["thumbnail"] = "thumbnail"
    width: int | None = Field(
        default=None, ge=1, le=10_000, description="Width of the box in pixels."
    )
    height: int | None = Field(
        default=None, ge=1, le=10_000, description="Height of the box in pixels."
    )
    fit: Literal["inside", "cover", "fill"] = Field(
        default="inside",
        description=(
            "inside: fit within the box, keeping the aspect ratio; cover: fill the box, keeping"
            " the aspect ratio, and crop the overflow; fill: stretch to exactly the box."
        ),
    )
    crop: Literal["centre", "attention", "entropy"] | None = Field(
        default=None,
        description=(
            'Which part fit "cover" keeps: the centre (the default), the most interesting part'
            " (attention: edges, skin tones, saturated colour) or the busiest (entropy)."
            ' Only with fit "cover".'
        ),
    )
    upscale: bool = Field(default=False, description="Enlarge images smaller than the box.")

    @model_validator(mode="after")
    def _box_given(self) -> Self:
        if self.width is None and self.height is None:
            raise ValueError("give width, height or both")
        if self.fit != "inside" and (self.width is None or self.height is None):
            raise ValueError(f'fit "{self.fit}" needs both width and height')
        if self.crop is not None and self.fit != "cover":
            raise ValueError(f'crop only applies with fit "cover", not fit "{self.fit}"')
        return self


class Resize(OpModel):
    """Scale the image by a factor: 0.5 halves it, 2 doubles it.

    vscale scales the height by a different factor (the aspect ratio changes). Sizes are
    rounded to whole pixels, and are at least one pixel.
    """

    op: Literal["resize"] = "resize"
    scale: float = Field(gt=0, le=10, description="Scale factor for the width (and height).")
    vscale: float | None = Field(
        default=None, gt=0, le=10, description="Scale factor for the height; default scale."
    )
    kernel: Literal["nearest", "linear", "cubic", "mitchell", "lanczos2", "lanczos3"] = Field(
        default="lanczos3",
        description="Resampling kernel; nearest copies pixels (for pixel art).",
    )


class _Region(OpModel):
    x: int = Field(ge=0, le=_MAX_COORDINATE, description="Left edge of the region in pixels.")
    y: int = Field(ge=0, le=_MAX_COORDINATE, description="Top edge of the region in pixels.")
    width: int = Field(ge=1, le=_MAX_COORDINATE, description="Width of the region in pixels.")
    height: int = Field(ge=1, le=_MAX_COORDINATE, description="Height of the region in pixels.")


class Extract(_Region):
    """Cut out the region of width x height whose top-left corner is at x, y.

    The region must lie inside the image as it is at this step (after earlier operations).
    """

    op: Literal["extract"] = "extract"


class Crop(_Region):
    """Cut out the region of width x height whose top-left corner is at x, y.

    The same as extract. The region must lie inside the image as it is at this step.
    """

    op: Literal["crop"] = "crop"


class Rotate(OpModel):
    """Rotate the image clockwise by angle degrees (negative: anticlockwise).

    Multiples of 90 are exact and lossless. Other angles enlarge the image to hold the
    rotated one and fill the corners with background; a background with alpha below ff
    gives the image an alpha channel.
    """

    op: Literal["rotate"] = "rotate"
    angle: float = Field(ge=-360, le=360, description="Degrees clockwise.")
    background: str = Field(
        default="#000000",
        json_schema_extra={"pattern": _HEX_COLOUR},
        description='Colour of the uncovered corners: "#rrggbb" or "#rrggbbaa" (hex).',
    )

    @field_validator("background")
    @classmethod
    def _hex_colour(cls, value: str) -> str:
        if not re.fullmatch(_HEX_COLOUR, value):
            raise ValueError(
                f'background must match "#rrggbb" or "#rrggbbaa" (hex digits), not "{value}"'
            )
        return value.lower()

    @property
    def background_rgba(self) -> tuple[int, int, int, int]:
        """The background as 0-255 red, green, blue and alpha (opaque unless given)."""
        digits = self.background[1:]
        if len(digits) == 6:
            digits += "ff"
        red, green, blue, alpha = (int(digits[i : i + 2], 16) for i in range(0, 8, 2))
        return red, green, blue, alpha


class Autorotate(OpModel):
    """Turn the image upright as its EXIF orientation tag says.

    This happens by default when the image is loaded, so the operation is only needed to
    say so explicitly, or, with enabled false, to keep the pixels in their stored
    orientation. The orientation tag is never kept in the result.
    """

    op: Literal["autorotate"] = "autorotate"
    enabled: bool = Field(
        default=True, description="false keeps the pixels as stored, ignoring the EXIF tag."
    )


class Flip(OpModel):
    """Mirror the image: horizontal swaps left and right, vertical swaps top and bottom."""

    op: Literal["flip"] = "flip"
    direction: Literal["horizontal", "vertical"] = Field(
        default="horizontal", description="horizontal: left-right; vertical: top-bottom."
    )


GEOMETRY_OPS = (Thumbnail, Resize, Extract, Crop, Rotate, Autorotate, Flip)
