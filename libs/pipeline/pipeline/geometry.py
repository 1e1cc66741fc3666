"""Operations that change the image's geometry: size, crop, orientation."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import ConfigDict, Field, model_validator

from ._model import OpModel


class Thumbnail(OpModel):
    """Fit the image inside width x height, keeping its aspect ratio.

    Give width, height or both. The image is never enlarged unless upscale is true.
    """

    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["width"]}, {"required": ["height"]}]},
    )

    op: Literal["thumbnail"] = "thumbnail"
    width: int | None = Field(default=None, ge=1, le=10_000, description="Largest width in pixels.")
    height: int | None = Field(
        default=None, ge=1, le=10_000, description="Largest height in pixels."
    )
    upscale: bool = Field(default=False, description="Enlarge images smaller than the box.")

    @model_validator(mode="after")
    def _one_side_given(self) -> Self:
        if self.width is None and self.height is None:
            raise ValueError("give width, height or both")
        return self


GEOMETRY_OPS = (Thumbnail,)
