"""Pipelines from the command line, checked against the server's catalogue before upload.

`--op thumbnail:width=256,height=256` is one operation: its name, then `key=value` pairs.
A value is JSON when it parses as JSON (`256`, `true`, `1.5`, `"a, b"`, `["icc","exif"]`),
else the text as typed; commas inside quotes or brackets do not separate pairs.

The catalogue (`GET /api/v1/operations`) gives each operation's parameters as a JSON
Schema (the server's own models'; unknown parameters are refused). `validate_pipeline`
checks a pipeline against it with `jsonschema`, every keyword, so a mistake is reported
before anything is uploaded, naming the operation and the parameter (its path: `keep[0]`);
the server checks again."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # no stubs installed
from jsonschema.exceptions import (  # type: ignore[import-untyped]
    SchemaError,
    ValidationError,
)
from jsonschema.validators import validator_for  # type: ignore[import-untyped]

__all__ = [
    "OpSpec",
    "PipelineError",
    "build_pipeline",
    "load_pipeline",
    "parse_op",
    "parse_value",
    "schema_problems",
    "validate_pipeline",
]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_CLOSING = {"[": "]", "{": "}"}


class PipelineError(Exception):
    """A pipeline that cannot be sent; `problems` has one line per mistake."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One `--op`: the operation's name and parameters, and each value as typed."""

    name: str
    params: dict[str, Any]
    raw: dict[str, str]


def parse_op(spec: str) -> OpSpec:
    """`NAME[:key=value[,key=value]...]` as an operation."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if not _NAME.match(name):
        raise PipelineError([f"--op {spec!r}: expected NAME[:key=value,...]"])
    params: dict[str, Any] = {}
    raw: dict[str, str] = {}
    for item in _split(rest, spec):
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key:
            raise PipelineError([f"--op {spec!r}: expected key=value, got {item!r}"])
        if key in params:
            raise PipelineError([f"--op {spec!r}: parameter {key!r} given twice"])
        params[key], raw[key] = parse_value(value), value
    return OpSpec(name, params, raw)


def parse_value(text: str) -> Any:
    """JSON when `text` is JSON (not NaN or Infinity), else `text` itself."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError:
        return text


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _split(text: str, spec: str) -> list[str]:
    """`text` split at the commas outside JSON strings, lists and objects."""
    items: list[str] = []
    closers: list[str] = []
    quoted = escaped = False
    start = 0
    for index, char in enumerate(text):
        if quoted:
            escaped, quoted = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            quoted = True
        elif char in _CLOSING:
            closers.append(_CLOSING[char])
        elif closers and char == closers[-1]:
            closers.pop()
        elif char == "," and not closers:
            items.append(text[start:index])
            start = index + 1
    if quoted or closers:
        raise PipelineError([f"--op {spec!r}: unbalanced quotes or brackets"])
    items.append(text[start:])
    if items == [""]:
        return []
    if any(not item.strip() for item in items):
        raise PipelineError([f"--op {spec!r}: empty parameter (two commas in a row?)"])
    return items


def load_pipeline(text: str, *, source: str = "--pipeline") -> list[dict[str, Any]]:
    """A pipeline given as JSON: a list of objects, each with its `op`."""
    try:
        pipeline = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise PipelineError([f"{source}: not valid JSON ({exc})"]) from exc
    if not isinstance(pipeline, list):
        raise PipelineError([f'{source}: expected a JSON list like [{{"op": "grayscale"}}]'])
    problems = [
        f'{source}: operation {position} is not an object with a string "op"'
        for position, op in enumerate(pipeline, 1)
        if not isinstance(op, dict) or not isinstance(op.get("op"), str)
    ]
    if problems:
        raise PipelineError(problems)
    return pipeline


def build_pipeline(
    specs: Iterable[OpSpec], catalogue: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The pipeline of `--op`s. Where the catalogue wants text and the value parsed as
    something else (`text=2024`), the text as typed is used; a single value where it wants
    a list becomes a list of one (`keep=icc`)."""
    schemas = _schemas(catalogue)
    pipeline: list[dict[str, Any]] = []
    for spec in specs:
        properties = schemas.get(spec.name, {}).get("properties", {})
        params = {
            key: _coerce(value, spec.raw[key], properties.get(key))
            for key, value in spec.params.items()
        }
        pipeline.append({"op": spec.name, **params})
    return pipeline


def _coerce(value: Any, raw: str, schema: Mapping[str, Any] | None) -> Any:
    if not schema:
        return value
    if _wants_text(schema) and not isinstance(value, str):
        return raw
    if schema.get("type") == "array" and not isinstance(value, list):
        items = schema.get("items", {})
        return [raw if _wants_text(items) and not isinstance(value, str) else value]
    return value


def _wants_text(schema: Mapping[str, Any]) -> bool:
    enum = schema.get("enum")
    if enum is not None:
        return all(isinstance(choice, str) for choice in enum)
    return schema.get("type") == "string"


def validate_pipeline(
    pipeline: Sequence[Mapping[str, Any]], catalogue: Sequence[Mapping[str, Any]]
) -> None:
    """Raises PipelineError listing every operation or parameter the catalogue refuses."""
    schemas = _schemas(catalogue)
    problems: list[str] = []
    for position, op in enumerate(pipeline, 1):
        name = str(op.get("op"))
        label = name if len(pipeline) == 1 else f"{name} (operation {position})"
        schema = schemas.get(name)
        if schema is None:
            problems.append(f"unknown operation {name!r}{_suggest(name, schemas)}")
            continue
        params = {key: value for key, value in op.items() if key != "op"}
        for problem in schema_problems(params, schema):
            problems.append(f"{label}: {problem}")
    if problems:
        raise PipelineError(problems)


def _schemas(catalogue: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(op["name"]): op.get("params") or {} for op in catalogue}


def _suggest(word: str, choices: Iterable[str]) -> str:
    names = sorted(choices)
    close = difflib.get_close_matches(word, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (known: {', '.join(names)})" if names else hint


# --- JSON Schema: jsonschema checks, this module words the problems ------------------------


@dataclass(frozen=True, slots=True)
class _Problem:
    path: tuple[str | int, ...]
    message: str

    def __str__(self) -> str:
        if not self.path:
            return self.message
        name = str(self.path[0]) + "".join(f"[{part}]" for part in self.path[1:])
        return f"{name}: {self.message}"

    def because(self, reason: str) -> _Problem:
        return _Problem(self.path, f"{self.message} ({reason})") if reason else self


def schema_problems(value: Any, schema: Mapping[str, Any]) -> list[str]:
    """What is wrong with `value` by `schema`, one line each (empty when nothing is).

    `jsonschema` decides, with every keyword of the schema's dialect (2020-12 unless it
    says otherwise); this module only words its findings for people, naming the parameter.
    A schema jsonschema cannot use (a catalogue from a newer server, say) is left to the
    server: it checks every pipeline again."""
    validator_class = validator_for(schema, default=Draft202012Validator)
    try:
        validator_class.check_schema(schema)
        errors = validator_class(schema).iter_errors(value)
        problems = [problem for error in errors for problem in _problems(error, schema)]
    except (SchemaError, re.error):
        return []
    return list(dict.fromkeys(str(problem) for problem in problems))


def _problems(error: ValidationError, root: Mapping[str, Any]) -> list[_Problem]:
    path = tuple(error.absolute_path)
    reason = _reason(error, root)
    if error.validator == "anyOf":
        return [problem.because(reason) for problem in _any_of(error, root)]
    return [_Problem(path, message).because(reason) for message in _messages(error)]


def _messages(error: ValidationError) -> list[str]:
    """One line per problem jsonschema found; its own words for keywords not worded here."""
    keyword, expected, value = error.validator, error.validator_value, error.instance
    shown = _show(value)
    match keyword:
        case "type":
            return [f"expected {_type_name(expected)}, got {shown}"]
        case "const":
            return [f"must be {_show(expected)}, got {shown}"]
        case "enum":
            return [f"must be one of {', '.join(_show(c) for c in expected)}; got {shown}"]
        case "required":
            missing = [name for name in expected if name not in value]
            return [f"missing required parameter {name!r}" for name in missing]
        case "additionalProperties" if expected is False:
            return [_unknown_parameter(name, error.schema) for name in _extra(value, error.schema)]
        case "dependentRequired":
            return [
                f"missing required parameter {other!r} (because {name} is given)"
                for name, others in expected.items()
                if name in value
                for other in others
                if other not in value
            ]
    return [_BOUNDS[keyword](expected, shown)] if keyword in _BOUNDS else [error.message]


_BOUNDS: dict[str, Callable[[Any, str], str]] = {
    "minimum": lambda bound, shown: f"must be at least {_show(bound)}, got {shown}",
    "maximum": lambda bound, shown: f"must be at most {_show(bound)}, got {shown}",
    "exclusiveMinimum": lambda bound, shown: f"must be more than {_show(bound)}, got {shown}",
    "exclusiveMaximum": lambda bound, shown: f"must be less than {_show(bound)}, got {shown}",
    "minLength": lambda bound, _: f"must be at least {bound} characters long",
    "maxLength": lambda bound, _: f"must be at most {bound} characters long",
    "pattern": lambda _, shown: f"{shown} does not have the expected form",
    "minItems": lambda bound, _: f"needs at least {bound} items",
    "maxItems": lambda bound, _: f"takes at most {bound} items",
    "uniqueItems": lambda _, __: "lists an item twice",
    "oneOf": lambda _, __: "matches none or several of the allowed forms",
    "not": lambda _, __: "is a combination that is not allowed",
}
"""Keywords whose problem is one line made of the keyword's value and the value shown."""


def _extra(value: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [
        name
        for name in value
        if name not in properties and not any(re.search(p, name) for p in patterns)
    ]


def _unknown_parameter(name: str, schema: Mapping[str, Any]) -> str:
    properties = list(schema.get("properties", {}))
    close = difflib.get_close_matches(name, properties, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown parameter {name!r}{hint} (parameters: {', '.join(properties) or 'none'})"


def _any_of(error: ValidationError, root: Mapping[str, Any]) -> list[_Problem]:
    """`needs width or height` when the branches only require parameters, else the
    problems of the branch that came closest."""
    branches: Sequence[Mapping[str, Any]] = error.validator_value
    if branches and all(set(branch) == {"required"} for branch in branches):
        options = " or ".join(", ".join(branch["required"]) for branch in branches)
        return [_Problem(tuple(error.absolute_path), f"needs {options}")]
    by_branch: dict[Any, list[ValidationError]] = {}
    for suberror in error.context or []:
        by_branch.setdefault(suberror.relative_schema_path[0], []).append(suberror)
    if not by_branch:
        return [_Problem(tuple(error.absolute_path), error.message)]
    closest = min(by_branch.values(), key=len)
    return [problem for suberror in closest for problem in _problems(suberror, root)]


_NAMED = frozenset({"properties", "patternProperties", "$defs", "dependentSchemas"})
"""Keywords whose next step in a schema path is a name, not a keyword."""


def _reason(error: ValidationError, root: Mapping[str, Any]) -> str:
    """Why a rule applied, when a condition made it: `when fit is cover or fill` (`if` and
    `then`), `because crop is given` (`dependentSchemas`)."""
    reasons = []
    node: Any = root
    parts = list(error.absolute_schema_path)
    for index, part in enumerate(parts):
        keyword = index == 0 or parts[index - 1] not in _NAMED
        if keyword and part == "dependentSchemas" and index + 1 < len(parts):
            reasons.append(f"because {parts[index + 1]} is given")
        elif keyword and part == "then" and isinstance(node, Mapping) and "if" in node:
            reasons.append(_describe_condition(node["if"]))
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break  # past a $ref: the path goes on in the referenced schema
    return "; ".join(reason for reason in reasons if reason)


def _describe_condition(schema: Mapping[str, Any]) -> str:
    """`when fit is cover or fill` for an `if` that tests parameters' values, else ''."""
    parts = []
    for name, test in schema.get("properties", {}).items():
        if "const" in test:
            parts.append(f"{name} is {_plain(test['const'])}")
        elif "enum" in test:
            parts.append(f"{name} is {' or '.join(_plain(choice) for choice in test['enum'])}")
    return f"when {' and '.join(parts)}" if parts else ""


_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "text",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def _type_name(kind: str | list[str]) -> str:
    kinds = [kind] if isinstance(kind, str) else kind
    return " or ".join(_TYPE_NAMES.get(name, name) for name in kinds)


def _show(value: Any) -> str:
    return json.dumps(value)


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
