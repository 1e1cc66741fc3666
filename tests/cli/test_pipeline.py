"""`--op` parsing and checking pipelines against the catalogue (pure: no server).

The catalogue is the real one (`pipeline.describe_operations()`, what `GET
/api/v1/operations` serves). The CLI checks with `jsonschema` and words its findings; on
generated parameters its verdict must be jsonschema's (no finding lost in the wording),
and keywords the catalogue does not use yet are enforced too."""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from imagemesh_cli.pipeline import (
    OpSpec,
    PipelineError,
    build_pipeline,
    load_pipeline,
    parse_op,
    parse_value,
    schema_problems,
    validate_pipeline,
)
from pipeline import describe_operations
from tests.quick import examples

CATALOGUE = describe_operations()
PARAMS = {entry["name"]: entry["params"] for entry in CATALOGUE}
NAMES = sorted(PARAMS)
FAST = settings(max_examples=examples(40), database=None, deadline=None)


def problems_of(pipeline: list[dict[str, Any]]) -> list[str]:
    with pytest.raises(PipelineError) as caught:
        validate_pipeline(pipeline, CATALOGUE)
    return caught.value.problems


# --- --op parsing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("256", 256),
        ("true", True),
        ("false", False),
        ("1.5", 1.5),
        ("-3", -3),
        ("cover", "cover"),
        ("#ff0000", "#ff0000"),
        ('"quoted"', "quoted"),
        ('["icc","exif"]', ["icc", "exif"]),
        ("", ""),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("null", None),
    ],
)
def test_values_are_json_when_they_parse(text: str, value: Any) -> None:
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_op_with_params() -> None:
    spec = parse_op("thumbnail:width=256,height=256,fit=cover,upscale=true")
    assert spec == OpSpec(
        "thumbnail",
        {"width": 256, "height": 256, "fit": "cover", "upscale": True},
        {"width": "256", "height": "256", "fit": "cover", "upscale": "true"},
    )


@pytest.mark.parametrize("text", ["grayscale", "grayscale:"])
def test_op_without_params(text: str) -> None:
    assert parse_op(text) == OpSpec("grayscale", {}, {})


def test_commas_inside_quotes_and_brackets_do_not_split() -> None:
    spec = parse_op('watermark:text="a, \\"b\\", c",margin=4')
    assert spec.params == {"text": 'a, "b", c', "margin": 4}
    assert parse_op('strip:keep=["icc", "exif"]').params == {"keep": ["icc", "exif"]}
    assert parse_op('x:a={"k": [1, 2]},b=2').params == {"a": {"k": [1, 2]}, "b": 2}


def test_value_may_contain_equals_signs() -> None:
    assert parse_op("watermark:text=a=b").params == {"text": "a=b"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected NAME[:key=value,...]"),
        (":width=1", "expected NAME[:key=value,...]"),
        ("thumb nail", "expected NAME[:key=value,...]"),
        ("thumbnail:width", "expected key=value, got 'width'"),
        ("thumbnail:=5", "expected key=value, got '=5'"),
        ("thumbnail:width=1,,height=2", "empty parameter"),
        ("thumbnail:width=1,", "empty parameter"),
        ("thumbnail:width=1,width=2", "parameter 'width' given twice"),
        ('watermark:text="open', "unbalanced"),
        ("strip:keep=[icc", "unbalanced"),
    ],
)
def test_op_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(PipelineError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_op(text)


# --- building: what the catalogue says a parameter is ------------------------------------


def test_build_keeps_order_and_types() -> None:
    specs = [parse_op("thumbnail:width=256,height=256"), parse_op("grayscale")]
    assert build_pipeline(specs, CATALOGUE) == [
        {"op": "thumbnail", "width": 256, "height": 256},
        {"op": "grayscale"},
    ]


def test_text_parameters_keep_the_text_as_typed() -> None:
    """`text=2024` is the text 2024, not a number: the schema says text."""
    specs = [parse_op("watermark:text=2024,font_size=30"), parse_op("watermark:text=true")]
    pipeline = build_pipeline(specs, CATALOGUE)
    assert pipeline == [
        {"op": "watermark", "text": "2024", "font_size": 30},
        {"op": "watermark", "text": "true"},
    ]
    validate_pipeline(pipeline, CATALOGUE)


def test_single_value_for_a_list_becomes_a_list() -> None:
    pipeline = build_pipeline([parse_op("strip:keep=icc")], CATALOGUE)
    assert pipeline == [{"op": "strip", "keep": ["icc"]}]
    validate_pipeline(pipeline, CATALOGUE)


def test_unknown_operations_and_parameters_are_left_for_validation() -> None:
    specs = [parse_op("nope:a=1"), parse_op("thumbnail:widht=5")]
    assert build_pipeline(specs, CATALOGUE) == [
        {"op": "nope", "a": 1},
        {"op": "thumbnail", "widht": 5},
    ]


# --- validation against the catalogue -----------------------------------------------------


def test_valid_pipelines_pass() -> None:
    validate_pipeline(
        [
            {"op": "thumbnail", "width": 256, "height": 256, "fit": "cover", "crop": "attention"},
            {"op": "grayscale"},
            {"op": "convert", "format": "webp", "lossless": True},
            {"op": "dither", "method": "bayer", "matrix_size": 8},
            {"op": "rotate", "angle": 90, "background": "#ff000080"},
            {"op": "strip", "keep": ["icc", "exif"]},
        ],
        CATALOGUE,
    )
    validate_pipeline([], CATALOGUE)


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        (
            {"op": "thumbnial", "width": 5},
            "unknown operation 'thumbnial'; did you mean 'thumbnail'?",
        ),
        (
            {"op": "thumbnail", "widht": 5},
            "thumbnail: unknown parameter 'widht'; did you mean 'width'? "
            "(parameters: width, height, fit, crop, upscale)",
        ),
        ({"op": "thumbnail", "width": 0}, "thumbnail: width: must be at least 1, got 0"),
        ({"op": "thumbnail", "width": "big"}, 'thumbnail: width: expected an integer, got "big"'),
        ({"op": "thumbnail", "width": True}, "thumbnail: width: expected an integer, got true"),
        ({"op": "thumbnail", "width": 1.5}, "thumbnail: width: expected an integer, got 1.5"),
        ({"op": "thumbnail"}, "thumbnail: needs width or height"),
        (
            {"op": "thumbnail", "width": 5, "fit": "stretch"},
            'thumbnail: fit: must be one of "inside", "cover", "fill"; got "stretch"',
        ),
        (
            {"op": "thumbnail", "width": 5, "fit": "cover"},
            "thumbnail: missing required parameter 'height' (when fit is cover or fill)",
        ),
        (
            {"op": "thumbnail", "width": 5, "height": 5, "crop": "entropy"},
            "thumbnail: missing required parameter 'fit' (because crop is given)",
        ),
        (
            {"op": "thumbnail", "width": 5, "height": 5, "fit": "fill", "crop": "entropy"},
            'thumbnail: fit: must be "cover", got "fill" (because crop is given)',
        ),
        ({"op": "blur"}, "blur: missing required parameter 'sigma'"),
        ({"op": "resize", "scale": 0}, "resize: scale: must be more than 0, got 0"),
        (
            {"op": "convert", "format": "jpeg", "quality": 101},
            "convert: quality: must be at most 100",
        ),
        (
            {"op": "convert", "format": "jpeg", "lossless": True},
            'convert: format: must be one of "png", "webp", "avif", "tiff"; got "jpeg" '
            "(when lossless is true)",
        ),
        ({"op": "rotate", "angle": 5, "background": "red"}, 'rotate: background: "red" does not'),
        ({"op": "watermark", "text": ""}, "watermark: text: must be at least 1 characters long"),
        ({"op": "strip", "keep": ["gps"]}, 'strip: keep[0]: must be one of "icc", "exif"'),
        ({"op": "strip", "keep": ["icc", "icc"]}, "strip: keep: lists an item twice"),
        (
            {"op": "grayscale", "amount": 1},
            "grayscale: unknown parameter 'amount' (parameters: none)",
        ),
    ],
)
def test_problems_name_the_operation_and_parameter(op: dict[str, Any], expected: str) -> None:
    problems = problems_of([op])
    assert any(problem.startswith(expected) for problem in problems), problems


def test_position_is_named_in_a_longer_pipeline() -> None:
    problems = problems_of([{"op": "grayscale"}, {"op": "thumbnail", "width": -1}])
    assert problems == ["thumbnail (operation 2): width: must be at least 1, got -1"]


def test_every_problem_is_reported() -> None:
    problems = problems_of(
        [{"op": "nope"}, {"op": "blur", "sigma": 0}, {"op": "gamma", "exponent": "x"}]
    )
    assert len(problems) == 3, problems


@pytest.mark.parametrize("name", NAMES)
def test_every_operation_refuses_unknown_parameters(name: str) -> None:
    problems = problems_of([{"op": name, "bogus": 1}])
    assert any("unknown parameter 'bogus'" in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("value", "schema", "expected"),
    [
        ({"n": 3}, {"properties": {"n": {"multipleOf": 2}}}, ["n: 3 is not a multiple of 2"]),
        (
            {"tags": {"a": 1, "B": 2}},
            {"properties": {"tags": {"propertyNames": {"pattern": "^[a-z]+$"}}}},
            ['tags: "B" does not have the expected form'],
        ),
        (
            {"box": {"w": 0}},
            {
                "$defs": {"Box": {"properties": {"w": {"minimum": 1}}, "required": ["w", "h"]}},
                "properties": {"box": {"$ref": "#/$defs/Box"}},
            },
            ["box: missing required parameter 'h'", "box[w]: must be at least 1, got 0"],
        ),
        (
            {"a": 1},
            {"dependentRequired": {"a": ["b"]}},
            ["missing required parameter 'b' (because a is given)"],
        ),
        (
            {"n": 1},
            {"properties": {"n": {"oneOf": [{"type": "integer"}, {"minimum": 0}]}}},
            ["n: matches none or several of the allowed forms"],
        ),
    ],
)
def test_every_keyword_counts_not_only_those_the_catalogue_uses(
    value: Any, schema: dict[str, Any], expected: list[str]
) -> None:
    assert sorted(schema_problems(value, schema)) == sorted(expected)


def test_a_schema_jsonschema_cannot_use_is_left_to_the_server() -> None:
    assert schema_problems({"n": 1}, {"properties": {"n": {"type": "whole"}}}) == []
    assert schema_problems({"n": "x"}, {"properties": {"n": {"pattern": "("}}}) == []


# --- JSON given whole ---------------------------------------------------------------------


def test_load_pipeline() -> None:
    assert load_pipeline('[{"op": "grayscale"}]') == [{"op": "grayscale"}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[", "not valid JSON"),
        ('{"op": "grayscale"}', "expected a JSON list"),
        ('[{"op": "grayscale"}, 3, {"width": 1}]', "operation 2 is not an object"),
        ('[{"op": NaN}]', "not valid JSON"),
    ],
)
def test_load_pipeline_errors(text: str, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        load_pipeline(text, source="p.json")


# --- the wording loses no finding of jsonschema ---------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.floats(-5, 300) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3),
    max_leaves=4,
)


def params_for(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Mostly the operation's own parameters, with values that are often wrong."""
    schema = PARAMS[name]
    keys = [*schema["properties"], "bogus"]
    values = {
        key: st.sampled_from(schema["properties"][key].get("enum", [None])) | JSON_VALUES
        if key in schema["properties"]
        else JSON_VALUES
        for key in keys
    }
    return st.fixed_dictionaries({}, optional=values)


@functools.cache
def valid_params(name: str) -> st.SearchStrategy[dict[str, Any]]:
    # hypothesis-jsonschema does not know dependentSchemas (2019-09): jsonschema filters.
    valid = jsonschema.Draft202012Validator(PARAMS[name]).is_valid
    return from_schema(PARAMS[name]).filter(valid)


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(data=st.data())
def test_valid_params_from_the_schema_pass(name: str, data: st.DataObject) -> None:
    params = data.draw(valid_params(name))
    assert schema_problems(params, PARAMS[name]) == []


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(data=st.data())
def test_verdict_agrees_with_jsonschema(name: str, data: st.DataObject) -> None:
    params = data.draw(params_for(name))
    expected = jsonschema.Draft202012Validator(PARAMS[name]).is_valid(params)
    problems = schema_problems(params, PARAMS[name])
    assert (not problems) == expected, (json.dumps(params), problems)
