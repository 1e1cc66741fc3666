"""Turning untrusted pipeline JSON into operations, with errors people can act on."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ._catalogue import OPERATION_MODELS, Operation
from ._errors import PipelineError

__all__ = ["DEFAULT_MAX_OPS", "canonical_pipeline", "parse_pipeline", "pipeline_to_json"]

DEFAULT_MAX_OPS = 10


def parse_pipeline(raw: object, *, max_ops: int = DEFAULT_MAX_OPS) -> tuple[Operation, ...]:
    """Validate a pipeline given as a list of ``{"op": name, ...params}`` or its JSON text.

    Operations are numbered from 1 in error messages. An empty pipeline is valid:
    it means "re-encode the image as it is".
    """
    try:
        items = _as_list(raw)
        if len(items) > max_ops:
            raise PipelineError(
                f"pipeline has {len(items)} operations; at most {max_ops} are allowed"
            )
        return tuple(_parse_one(number, item) for number, item in enumerate(items, start=1))
    except RecursionError:
        raise PipelineError("pipeline is nested too deeply") from None


def pipeline_to_json(ops: Sequence[Operation]) -> list[dict[str, Any]]:
    """The JSON form of ``ops``, defaults included; ``parse_pipeline`` reads it back."""
    return [op.model_dump(mode="json", exclude_none=True) for op in ops]


def canonical_pipeline(pipeline: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The pipeline as the catalogue reads it, every default filled in, in order (what the
    runner's reuse key is made of); None when it does not parse."""
    try:
        return pipeline_to_json(parse_pipeline(pipeline, max_ops=max(len(pipeline), 1)))
    except PipelineError:
        return None


def _as_list(raw: object) -> list[object]:
    if isinstance(raw, str | bytes | bytearray):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise PipelineError(f"pipeline is not valid JSON: {exc}") from None
    if not isinstance(raw, list | tuple):
        raise PipelineError("pipeline must be a list of operations")
    return list(raw)


def _parse_one(number: int, item: object) -> Operation:
    if not isinstance(item, dict):
        raise PipelineError(f'operation {number} must be an object like {{"op": "grayscale"}}')
    name = item.get("op")
    if name is None:
        raise PipelineError(f'operation {number} has no "op" naming the operation')
    model = OPERATION_MODELS.get(name) if isinstance(name, str) else None
    if model is None:
        known = ", ".join(sorted(OPERATION_MODELS))
        raise PipelineError(f"operation {number}: unknown operation {_quote(name)}; known: {known}")
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        problems = _unique(_plain(error, model) for error in exc.errors())
        message = f"operation {number} ({name}): {'; '.join(problems)}"
        raise PipelineError(_bounded(message)) from None


def _plain(error: ErrorDetails, model: type[BaseModel]) -> str:
    """One pydantic error in plain words, naming the parameter."""
    param = _quote(".".join(str(part) for part in error["loc"]), quoted=False)
    ctx = error.get("ctx", {})
    kind = error["type"]
    if kind == "extra_forbidden":
        known = ", ".join(name for name in model.model_fields if name != "op") or "none"
        return f"unknown parameter {_quote(error['loc'][-1])} (parameters: {known})"
    if kind == "value_error":
        return _single_line(str(ctx.get("error", error["msg"])))
    message = _MESSAGES.get(kind)
    if message is None:
        return f"{param}: {error['msg'][:1].lower()}{error['msg'][1:]}"
    return f"{param} {message.format(**ctx)}"


MAX_MESSAGE = 500
"""Error messages echo what the client sent: escaped and cut, never the whole input."""


def _quote(value: object, *, quoted: bool = True, limit: int = 60) -> str:
    """A client-supplied value as JSON text on one line, cut to `limit` characters."""
    if isinstance(value, str | int | float | bool) or value is None:
        text = json.dumps(value) if quoted else _single_line(str(value))
    else:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _single_line(text: str) -> str:
    return json.dumps(text)[1:-1] if any(ch < " " for ch in text) else text


def _unique(messages: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(messages))


def _bounded(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else f"{message[: MAX_MESSAGE - 1]}…"


_MESSAGES = {
    "missing": "is required",
    "less_than_equal": "must be at most {le}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "greater_than": "must be greater than {gt}",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "literal_error": "must be one of {expected}",
}
