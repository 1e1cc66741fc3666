"""Pipelines from the command line, checked against the server's catalogue before upload.

`--op thumbnail:width=256,height=256` is one operation: its name, then `key=value` pairs.
A value is JSON when it parses as JSON (`256`, `true`, `1.5`, `"a, b"`, `["icc","exif"]`),
else the text as typed; commas inside quotes or brackets do not separate pairs.

The catalogue (`GET /api/v1/operations`) gives each operation's parameters as a JSON
Schema. `validate_pipeline` checks a pipeline against it with the subset of JSON Schema
the catalogue uses, so a mistake is reported before anything is uploaded, naming the
operation and the parameter. The server checks again; keywords this module does not know
are left to it."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


# --- JSON Schema, the subset the catalogue uses ------------------------------------------


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
    """What is wrong with `value` by `schema`, one line each (empty when nothing is)."""
    unique = dict.fromkeys(str(problem) for problem in _check(value, schema, ()))
    return list(unique)


def _check(value: Any, schema: Mapping[str, Any], path: tuple[str | int, ...]) -> list[_Problem]:
    if "type" in schema and not _is_type(value, schema["type"]):
        return [_Problem(path, f"expected {_type_name(schema['type'])}, got {_show(value)}")]
    problems = _check_value(value, schema, path)
    if isinstance(value, dict):
        problems += _check_object(value, schema, path)
    elif isinstance(value, list):
        problems += _check_array(value, schema, path)
    return problems + _check_combined(value, schema, path)


def _check_value(
    value: Any, schema: Mapping[str, Any], path: tuple[str | int, ...]
) -> list[_Problem]:
    if "const" in schema and not _equal(value, schema["const"]):
        return [_Problem(path, f"must be {_show(schema['const'])}, got {_show(value)}")]
    if "enum" in schema and not any(_equal(value, choice) for choice in schema["enum"]):
        choices = ", ".join(_show(choice) for choice in schema["enum"])
        return [_Problem(path, f"must be one of {choices}; got {_show(value)}")]
    if _is_type(value, "number"):
        return [_Problem(path, message) for message in _number_problems(value, schema)]
    if isinstance(value, str):
        return [_Problem(path, message) for message in _string_problems(value, schema)]
    return []


def _number_problems(value: float, schema: Mapping[str, Any]) -> list[str]:
    shown = _show(value)
    problems = []
    if "minimum" in schema and value < schema["minimum"]:
        problems.append(f"must be at least {_show(schema['minimum'])}, got {shown}")
    if "maximum" in schema and value > schema["maximum"]:
        problems.append(f"must be at most {_show(schema['maximum'])}, got {shown}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        problems.append(f"must be more than {_show(schema['exclusiveMinimum'])}, got {shown}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        problems.append(f"must be less than {_show(schema['exclusiveMaximum'])}, got {shown}")
    return problems


def _string_problems(value: str, schema: Mapping[str, Any]) -> list[str]:
    problems = []
    if "minLength" in schema and len(value) < schema["minLength"]:
        problems.append(f"must be at least {schema['minLength']} characters long")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append(f"must be at most {schema['maxLength']} characters long")
    if "pattern" in schema:
        try:
            matches = re.search(schema["pattern"], value) is not None
        except re.error:
            matches = True  # a pattern Python cannot read: the server decides
        if not matches:
            problems.append(f"{_show(value)} does not have the expected form")
    return problems


def _check_object(
    value: dict[str, Any], schema: Mapping[str, Any], path: tuple[str | int, ...]
) -> list[_Problem]:
    properties: Mapping[str, Any] = schema.get("properties", {})
    problems = [
        _Problem(path, f"missing required parameter {name!r}")
        for name in schema.get("required", [])
        if name not in value
    ]
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            problems += _check(item, properties[name], (*path, name))
        elif extra is False:
            problems.append(_Problem(path, _unknown_parameter(name, properties)))
        elif isinstance(extra, Mapping):
            problems += _check(item, extra, (*path, name))
    for name, required in schema.get("dependentRequired", {}).items():
        if name in value:
            problems += [
                _Problem(path, f"missing required parameter {other!r} (because {name} is given)")
                for other in required
                if other not in value
            ]
    for name, subschema in schema.get("dependentSchemas", {}).items():
        if name in value:
            problems += [
                problem.because(f"because {name} is given")
                for problem in _check(value, subschema, path)
            ]
    return problems


def _unknown_parameter(name: str, properties: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(properties), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown parameter {name!r}{hint} (parameters: {', '.join(properties) or 'none'})"


def _check_array(
    value: list[Any], schema: Mapping[str, Any], path: tuple[str | int, ...]
) -> list[_Problem]:
    problems = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        problems.append(_Problem(path, f"needs at least {schema['minItems']} items"))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        problems.append(_Problem(path, f"takes at most {schema['maxItems']} items"))
    if schema.get("uniqueItems"):
        keys = [json.dumps(item, sort_keys=True) for item in value]
        if len(set(keys)) < len(keys):
            problems.append(_Problem(path, "lists an item twice"))
    items = schema.get("items")
    if isinstance(items, Mapping):
        for index, item in enumerate(value):
            problems += _check(item, items, (*path, index))
    return problems


def _check_combined(
    value: Any, schema: Mapping[str, Any], path: tuple[str | int, ...]
) -> list[_Problem]:
    problems = []
    for subschema in schema.get("allOf", []):
        problems += _check(value, subschema, path)
    if "anyOf" in schema:
        problems += _any_of(value, schema["anyOf"], path)
    if "oneOf" in schema:
        matching = sum(not _check(value, subschema, path) for subschema in schema["oneOf"])
        if matching != 1:
            problems.append(_Problem(path, "matches none or several of the allowed forms"))
    if "not" in schema and not _check(value, schema["not"], path):
        problems.append(_Problem(path, "is a combination that is not allowed"))
    if "if" in schema:
        holds = not _check(value, schema["if"], path)
        branch = schema.get("then" if holds else "else")
        if branch is not None:
            reason = _describe_condition(schema["if"]) if holds else ""
            problems += [problem.because(reason) for problem in _check(value, branch, path)]
    return problems


def _any_of(
    value: Any, branches: Sequence[Mapping[str, Any]], path: tuple[str | int, ...]
) -> list[_Problem]:
    results = [_check(value, branch, path) for branch in branches]
    if not results or any(not problems for problems in results):
        return []
    if all(set(branch) == {"required"} for branch in branches):
        options = " or ".join(", ".join(branch["required"]) for branch in branches)
        return [_Problem(path, f"needs {options}")]
    return min(results, key=len)


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


def _is_type(value: Any, kind: str | list[str]) -> bool:
    if isinstance(kind, list):
        return any(_is_type(value, name) for name in kind)
    if isinstance(value, bool):
        return kind == "boolean"
    checks: dict[str, bool] = {
        "integer": isinstance(value, int) or (isinstance(value, float) and value.is_integer()),
        "number": isinstance(value, int | float),
        "string": isinstance(value, str),
        "boolean": False,
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
        "null": value is None,
    }
    return checks.get(kind, True)


def _equal(left: Any, right: Any) -> bool:
    """JSON equality: true is not 1."""
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    return bool(left == right)


def _show(value: Any) -> str:
    return json.dumps(value)


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
