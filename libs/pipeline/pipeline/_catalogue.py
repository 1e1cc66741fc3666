"""The operation catalogue: one frozen model per operation, discriminated by ``op``.

Adding an operation means one model class here (plus its name in ``Operation``)
and one function in imageproc's registry.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "OPERATION_MODELS",
    "Convert",
    "Dither",
    "Grayscale",
    "Operation",
    "Thumbnail",
    "describe_operations",
]


class Thumbnail(BaseModel):
    """Fit the image inside width x height, keeping its aspect ratio.

    Give width, height or both. The image is never enlarged unless upscale is true.
    """

    # Strict everywhere: pipelines arrive as JSON, where "100" or true is never a width.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
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


class Grayscale(BaseModel):
    """Convert the image to shades of grey (one band, alpha kept)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    op: Literal["grayscale"] = "grayscale"


class Dither(BaseModel):
    """Convert to pure black and white by error diffusion; the result is saved as PNG.

    Pixels become exactly 0 or 255 (threshold 128); a later convert can change the format.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    op: Literal["dither"] = "dither"
    method: Literal["floyd-steinberg"] = Field(
        default="floyd-steinberg", description="Error-diffusion kernel."
    )


class Convert(BaseModel):
    """Save the result in another format."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    op: Literal["convert"] = "convert"
    format: Literal["jpeg", "png", "webp"] = Field(description="Output format.")
    quality: int = Field(
        default=80, ge=1, le=100, description="Encoder quality (JPEG and WebP only)."
    )


Operation = Annotated[Thumbnail | Grayscale | Dither | Convert, Field(discriminator="op")]

OPERATION_MODELS: dict[str, type[BaseModel]] = {
    model.model_fields["op"].default: model for model in get_args(get_args(Operation)[0])
}


def describe_operations() -> list[dict[str, Any]]:
    """The catalogue for clients: name, description and a JSON Schema of the params."""
    return [
        {
            "name": name,
            "description": inspect.cleandoc(model.__doc__ or ""),
            "params": _params_schema(model),
        }
        for name, model in sorted(OPERATION_MODELS.items())
    ]


def _params_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    # The discriminator is the operation's name, not one of its parameters.
    schema["properties"].pop("op")
    required = [name for name in schema.get("required", []) if name != "op"]
    schema.pop("required", None)
    if required:
        schema["required"] = required
    schema.pop("title", None)
    schema.pop("description", None)
    schema["additionalProperties"] = False
    for prop in schema["properties"].values():
        _hide_null(prop)
    return schema


def _hide_null(prop: dict[str, Any]) -> None:
    """Show an optional parameter as its real type: clients leave it out, never send null."""
    branches = prop.get("anyOf", [])
    if prop.get("default", ...) is None and {"type": "null"} in branches:
        (real,) = (branch for branch in branches if branch != {"type": "null"})
        del prop["anyOf"], prop["default"]
        prop.update(real)
