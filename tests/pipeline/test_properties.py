"""Properties of the catalogue: parse_pipeline against untrusted JSON and its own JSON Schemas.

- Robustness: any JSON value (or JSON text) gives operations or a PipelineError, never
  another exception, and the error names the operation it is about.
- Schema => parse: params generated from an operation's published JSON Schema are accepted.
- Parse => schema: params that parse accepts validate against the published JSON Schema.
- Round trip: pipeline_to_json reads back, as a list and as JSON text.
- Length: a pipeline longer than max_ops is refused, naming the limit.

The fixed examples (@example, parametrize) are the disagreements these properties found
when they were written: multi-line and unbounded error messages, RecursionError on deep
nesting, and two cross-field rules missing from the published schemas.
"""

from __future__ import annotations

import functools
import json
import math
import re
import types
import typing
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from pipeline import (
    DEFAULT_MAX_OPS,
    OPERATION_MODELS,
    PipelineError,
    describe_operations,
    parse_pipeline,
    pipeline_to_json,
)
from tests.quick import examples

PARAMS: dict[str, dict[str, Any]] = {
    entry["name"]: entry["params"] for entry in describe_operations()
}
NAMES = sorted(PARAMS)


def _validator(schema: dict[str, Any]) -> Any:
    """The draft the schema declares; none declared means the current one (2020-12)."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


VALIDATORS = {name: _validator(schema) for name, schema in PARAMS.items()}

# No example database: it would be written to .hypothesis/ in the working tree.
FAST = settings(max_examples=examples(100), database=None, deadline=None)


# --- Strategies --------------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
# NaN and the infinities are in: json.loads accepts NaN and Infinity, so pipelines may hold them.
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _mostly(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``common`` four times in five, ``rare`` otherwise.

    (one_of would not do: it merges repeated branches and picks among them evenly.)
    """
    return st.sampled_from(range(5)).flatmap(lambda n: rare if n == 4 else common)


def _bounds(metadata: list[Any]) -> tuple[float | None, float | None]:
    """A field's numeric bounds, from pydantic's metadata (ge/gt, le/lt)."""
    low = high = None
    for item in metadata:
        low = getattr(item, "ge", getattr(item, "gt", low))
        high = getattr(item, "le", getattr(item, "lt", high))
    return low, high


def _from_model(annotation: Any, metadata: list[Any], *, wild: bool) -> st.SearchStrategy[Any]:
    """Values for a field of this type, close to what it accepts: in and just out of bounds.

    Built from the model, not the schema, so that parse => schema meets values the schema
    did not suggest (a narrower range, enum, pattern or required list in it shows up).
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # X | None: leaving the field out is None
        (real,) = (arg for arg in args if arg is not type(None))
        return _from_model(real, metadata, wild=wild)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is list:
        items = _from_model(args[0], [], wild=wild)
        return st.lists(items, max_size=5, unique=True) | st.lists(items, max_size=5)
    low, high = _bounds(metadata)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(
            None if low is None else math.floor(low) - 2,
            None if high is None else math.ceil(high) + 2,
        )
    if annotation is float:
        low_int = None if low is None else math.floor(low) - 1
        high_int = None if high is None else math.ceil(high) + 1
        return st.floats(low_int, high_int) | st.integers(low_int, high_int)
    if annotation is str:
        longest = max((getattr(item, "max_length", 0) for item in metadata), default=0) or 20
        # Wild text has any character; tame text none of the control characters but newline.
        characters = (
            st.characters()
            if wild
            else st.characters(exclude_categories=["Cc", "Cs"], include_characters="\n")
        )
        return st.one_of(
            st.text(characters, max_size=longest + 2),
            # The catalogue's only shaped strings are colours: all shapes of them.
            st.from_regex(r"#[0-9a-fA-F]{5,9}", fullmatch=True),
            *(st.from_regex(p, fullmatch=True) for p in _patterns(metadata)),
        )
    raise AssertionError(f"no strategy for {annotation!r}: teach _from_model the new type")


def _patterns(metadata: list[Any]) -> list[str]:
    return [item.pattern for item in metadata if getattr(item, "pattern", None)]


def _near_miss_op(name: str, *, wild: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """``{"op": name, ...}`` with plausible params; if wild, some of any JSON, now and then a
    required one missing or an unknown one added."""
    fields = {key: f for key, f in OPERATION_MODELS[name].model_fields.items() if key != "op"}
    values = {key: _from_model(f.annotation, f.metadata, wild=wild) for key, f in fields.items()}
    if wild:
        values = {key: _mostly(value, JSON_VALUES) for key, value in values.items()}
    required = [key for key, f in fields.items() if f.is_required()]
    params = st.fixed_dictionaries(
        {key: values[key] for key in required},
        optional={key: value for key, value in values.items() if key not in required},
    )
    if not wild:
        return st.builds(lambda p: {"op": name, **p}, params)
    if required:
        params = _mostly(params, st.builds(_without, params, st.sampled_from(required)))
    extra = _mostly(st.just({}), st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=2))
    return st.builds(lambda p, e: {"op": name, **e, **p}, params, extra)


def _without(params: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != key}


NEAR_MISS_OP = st.one_of([_near_miss_op(name) for name in NAMES])
NEAR_MISS_PIPELINES = st.lists(_mostly(NEAR_MISS_OP, JSON_VALUES), max_size=DEFAULT_MAX_OPS + 2)
ANY_PIPELINE = st.one_of(
    JSON_VALUES,
    NEAR_MISS_PIPELINES,
    # The same as JSON text; allow_nan keeps NaN as the NaN that json.loads reads back.
    (JSON_VALUES | NEAR_MISS_PIPELINES).map(json.dumps),
    st.text(max_size=30),
    st.binary(max_size=30),
)


def _accepted(item: dict[str, Any]) -> bool:
    try:
        parse_pipeline([item])
    except PipelineError:
        return False
    return True


@functools.cache
def _schema_valid(name: str) -> st.SearchStrategy[Any]:
    """Params generated from the schema (built once: hypothesis-jsonschema is slow to set up)."""
    return from_schema(PARAMS[name]).filter(VALIDATORS[name].is_valid)


@functools.cache
def _accepted_op(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Tame near misses for ``name`` that parse_pipeline accepts (from a tenth to most)."""
    return _near_miss_op(name, wild=False).filter(_accepted)


ACCEPTED_PIPELINES = st.lists(st.one_of([_accepted_op(name) for name in NAMES]), max_size=4)


def _first_bad_number(raw: object) -> int | None:
    """The number of the first operation parse_pipeline refuses on its own, if it reads a list."""
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if not isinstance(raw, list) or len(raw) > DEFAULT_MAX_OPS:
        return None
    for number, item in enumerate(raw, start=1):
        try:
            parse_pipeline([item])
        except PipelineError:
            return number
    return None


def _error(raw: object) -> str | None:
    try:
        parse_pipeline(raw)
    except PipelineError as exc:
        return str(exc)
    return None


# --- 1. Robustness -----------------------------------------------------------------------


@settings(FAST, max_examples=examples(250))
@given(ANY_PIPELINE)
def test_parse_gives_operations_or_a_pipeline_error_naming_the_operation(raw: object) -> None:
    try:
        ops = parse_pipeline(raw)
    except PipelineError as exc:
        message = str(exc)
        assert message.strip()
        number = _first_bad_number(raw)
        if number is not None:
            assert re.match(rf"operation {number}\b", message), message
    else:
        assert isinstance(ops, tuple)
        assert all(isinstance(op, tuple(OPERATION_MODELS.values())) for op in ops)
        assert _first_bad_number(raw) is None


@FAST
@example([{"op": "grayscale", "a\nb": 1}])
@example([{"op": "rotate", "angle": 0, "background": "#00\n"}])
@given(ANY_PIPELINE)
def test_error_message_is_one_line(raw: object) -> None:
    message = _error(raw)
    assert message is None or "\n" not in message, message


@FAST
@example([{"op": "x" * 2000}])
@example([{"op": list(range(1000))}])
@example([{"op": "rotate", "angle": 0, "background": "#" + "0" * 2000}])
@example([{"op": "thumbnail", "width": 1, **{f"p{i}": 0 for i in range(40)}}])
@given(ANY_PIPELINE)
def test_error_message_is_short(raw: object) -> None:
    message = _error(raw)
    assert message is None or len(message) < 2000, len(message)


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("[" * 100_000, id="nested-json-text"),
        pytest.param([{"op": _nested(5_000)}], id="nested-op-name"),
    ],
)
def test_deep_nesting_is_a_pipeline_error(raw: object) -> None:
    with pytest.raises(PipelineError):
        parse_pipeline(raw)


# --- 2. Schema => parse ------------------------------------------------------------------

# Disagreements reported upstream: the schema allows these, the model refuses them with
# these messages. Each refusal of a schema-valid value must be one of them.
KNOWN_DRIFT: dict[str, tuple[str, ...]] = {}
"""Refusals the schema cannot express yet, by operation (none today)."""


@pytest.mark.parametrize("name", NAMES)
@settings(FAST, max_examples=examples(40))
@given(data=st.data())
def test_params_valid_by_the_schema_are_accepted(name: str, data: st.DataObject) -> None:
    # hypothesis-jsonschema supports drafts 4 to 7; later keywords (thumbnail's
    # dependentSchemas) may be ignored by the generator, so the draft's own validator decides
    # what is schema-valid. The filter rarely rejects: the generator does check most values.
    params = data.draw(_schema_valid(name))
    message = _error([{"op": name, **params}])
    if message is None:
        return
    problems = message.split(": ", 1)[1].split("; ")
    assert all(p.startswith(KNOWN_DRIFT.get(name, ())) for p in problems), (params, message)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        pytest.param("dither", {"matrix_size": 2}, id="dither-matrix_size-without-bayer"),
        pytest.param("dither", {"method": "bayer", "colours": 16}, id="dither-colours-on-bayer"),
        pytest.param("watermark", {"text": " "}, id="watermark-blank-text"),
        pytest.param("watermark", {"text": "a\x00"}, id="watermark-control-character"),
    ],
)
def test_schema_refuses_what_the_model_refuses(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(PipelineError):
        parse_pipeline([{"op": name, **params}])
    assert not VALIDATORS[name].is_valid(params)


# --- 3. Parse => schema, 4. Round trip ---------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@settings(FAST, max_examples=examples(40))
@given(data=st.data())
def test_accepted_params_are_valid_by_the_schema(name: str, data: st.DataObject) -> None:
    # One operation at a time, so that each gets its share of examples. Both what the client
    # sent and what pipeline_to_json makes of it (defaults filled in, colours lowercased).
    sent = data.draw(_accepted_op(name))
    (normalised,) = pipeline_to_json(parse_pipeline([sent]))
    for item in (sent, normalised):
        params = {key: value for key, value in item.items() if key != "op"}
        errors = [error.message for error in VALIDATORS[name].iter_errors(params)]
        assert not errors, params


@FAST
@given(ACCEPTED_PIPELINES)
def test_pipeline_to_json_reads_back(raw: list[dict[str, Any]]) -> None:
    ops = parse_pipeline(raw)
    as_json = pipeline_to_json(ops)

    assert parse_pipeline(as_json) == ops
    assert parse_pipeline(json.dumps(as_json)) == ops
    assert pipeline_to_json(parse_pipeline(as_json)) == as_json


# --- 5. Length limit ---------------------------------------------------------------------


@FAST
@given(
    max_ops=st.integers(0, 2 * DEFAULT_MAX_OPS),
    extra=st.integers(1, 5),
    item=_mostly(st.just({"op": "grayscale"}), JSON_VALUES),
    as_text=st.booleans(),
)
def test_too_long_pipelines_are_refused_naming_the_limit(
    max_ops: int, extra: int, item: object, as_text: bool
) -> None:
    items = [item] * (max_ops + extra)
    raw = json.dumps(items) if as_text else items

    with pytest.raises(PipelineError) as refused:
        parse_pipeline(raw, max_ops=max_ops)

    message = str(refused.value)
    assert f"has {max_ops + extra} operations" in message
    assert f"at most {max_ops} are allowed" in message


@FAST
@given(max_ops=st.integers(0, 2 * DEFAULT_MAX_OPS))
def test_pipelines_up_to_the_limit_are_accepted(max_ops: int) -> None:
    assert len(parse_pipeline([{"op": "grayscale"}] * max_ops, max_ops=max_ops)) == max_ops
