"""The tone family's models: validation messages, JSON Schema, JSON round trip."""

from typing import Any

import pytest

from pipeline import PipelineError, describe_operations, parse_pipeline, pipeline_to_json
from pipeline.tone import TONE_OPS


def _params(name: str) -> dict[str, Any]:
    (entry,) = (entry for entry in describe_operations() if entry["name"] == name)
    params: dict[str, Any] = entry["params"]
    return params


def _message(op: dict[str, Any]) -> str:
    with pytest.raises(PipelineError) as caught:
        parse_pipeline([op])
    return str(caught.value)


def test_every_tone_operation_is_in_the_catalogue():
    names = {entry["name"] for entry in describe_operations()}

    assert {model.model_fields["op"].default for model in TONE_OPS} <= names


def test_every_parameter_has_a_description():
    for model in TONE_OPS:
        name = model.model_fields["op"].default
        for param, schema in _params(name)["properties"].items():
            assert schema.get("description"), f"{name}.{param}"


@pytest.mark.parametrize(
    ("name", "param", "expected"),
    [
        ("blur", "sigma", {"type": "number", "minimum": 0.1, "maximum": 100}),
        ("sharpen", "sigma", {"default": 1.0, "minimum": 0.1, "maximum": 10}),
        ("sharpen", "m1", {"default": 0.0, "minimum": 0, "maximum": 10}),
        ("sharpen", "m2", {"default": 3.0, "minimum": 0, "maximum": 20}),
        ("brightness", "factor", {"minimum": 0, "maximum": 10}),
        ("contrast", "factor", {"minimum": 0, "maximum": 10}),
        ("gamma", "exponent", {"minimum": 0.1, "maximum": 10}),
        ("dither", "method", {"enum": ["floyd-steinberg", "bayer", "palette"]}),
        ("dither", "matrix_size", {"enum": [2, 4, 8]}),
        ("dither", "colours", {"enum": [2, 4, 16, 256]}),
        ("watermark", "text", {"type": "string", "minLength": 1, "maxLength": 200}),
        ("watermark", "font_size", {"default": 24, "minimum": 6, "maximum": 400}),
        ("watermark", "opacity", {"default": 0.5, "minimum": 0, "maximum": 1}),
        ("watermark", "gravity", {"default": "south-east"}),
        ("watermark", "colour", {"default": "#ffffff", "pattern": "^#[0-9a-fA-F]{6}$"}),
        ("watermark", "margin", {"default": 16, "minimum": 0, "maximum": 1000}),
    ],
)
def test_schema_carries_ranges_enums_and_defaults(name, param, expected):
    schema = _params(name)["properties"][param]

    assert {key: schema.get(key) for key in expected} == expected


def test_required_parameters():
    assert _params("blur")["required"] == ["sigma"]
    assert _params("brightness")["required"] == ["factor"]
    assert _params("watermark")["required"] == ["text"]
    assert "required" not in _params("dither")
    assert "required" not in _params("sharpen")


def test_watermark_gravities():
    assert set(_params("watermark")["properties"]["gravity"]["enum"]) == {
        "north",
        "south",
        "east",
        "west",
        "centre",
        "north-east",
        "north-west",
        "south-east",
        "south-west",
    }


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (
            {"op": "dither", "matrix_size": 4},
            'operation 1 (dither): matrix_size applies only to method "bayer", '
            'not "floyd-steinberg"',
        ),
        (
            {"op": "dither", "method": "bayer", "colours": 16},
            'operation 1 (dither): colours applies only to method "palette", not "bayer"',
        ),
        (
            {"op": "dither", "method": "bayer", "matrix_size": 3},
            "operation 1 (dither): matrix_size must be one of 2, 4 or 8",
        ),
        (
            {"op": "dither", "method": "palette", "colours": 8},
            "operation 1 (dither): colours must be one of 2, 4, 16 or 256",
        ),
        ({"op": "blur"}, "operation 1 (blur): sigma is required"),
        ({"op": "blur", "sigma": 0}, "operation 1 (blur): sigma must be at least 0.1"),
        (
            {"op": "gamma", "exponent": "2"},
            "operation 1 (gamma): exponent: input should be a valid number",
        ),
        (
            {"op": "watermark", "text": "   "},
            "operation 1 (watermark): text must contain something besides spaces",
        ),
        (
            {"op": "watermark", "text": "a\x00b"},
            "operation 1 (watermark): text must not contain control characters (except newlines)",
        ),
        (
            {"op": "watermark", "text": "x", "colour": "red"},
            "operation 1 (watermark): colour: string should match pattern '^#[0-9a-fA-F]{6}$'",
        ),
    ],
)
def test_rejects_with_a_plain_message(op, message):
    assert _message(op) == message


def test_whole_numbers_are_accepted_for_real_parameters():
    (blur,) = parse_pipeline([{"op": "blur", "sigma": 2}])

    assert blur.model_dump()["sigma"] == 2.0


@pytest.mark.parametrize(
    "op",
    [
        {"op": "dither", "method": "bayer"},
        {"op": "dither", "method": "bayer", "matrix_size": 8},
        {"op": "dither", "method": "palette", "colours": 256},
        {"op": "sharpen"},
        {"op": "watermark", "text": "© imagemesh\n2025", "gravity": "centre"},
    ],
)
def test_round_trips_through_json(op):
    ops = parse_pipeline([op])

    assert parse_pipeline(pipeline_to_json(ops)) == ops
