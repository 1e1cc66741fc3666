"""The operation catalogue: one frozen model per operation, discriminated by ``op``.

The models live by family (``geometry``, ``tone``, ``output``). Adding an operation
means one model class there, listed in its family's tuple, and one function in imageproc's
registry for the same family.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeAlias

from pydantic import BaseModel

from ._model import OpModel
from .geometry import GEOMETRY_OPS, Thumbnail
from .output import OUTPUT_OPS, Convert
from .tone import TONE_OPS, Dither, Grayscale

__all__ = [
    "OPERATION_MODELS",
    "Convert",
    "Dither",
    "Grayscale",
    "Operation",
    "Thumbnail",
    "describe_operations",
]


Operation: TypeAlias = OpModel
"""Any operation; `op` names which (see OPERATION_MODELS)."""

OPERATION_MODELS: dict[str, type[OpModel]] = {
    model.model_fields["op"].default: model for model in (*GEOMETRY_OPS, *TONE_OPS, *OUTPUT_OPS)
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
