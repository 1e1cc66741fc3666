from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
import pytest

from pipeline import OPERATION_MODELS, PipelineError, describe_operations, parse_pipeline


def _by_name() -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in describe_operations()}


def test_lists_every_operation_sorted_by_name():
    names = [entry["name"] for entry in describe_operations()]

    assert names == sorted(names)
    assert {
        "thumbnail",
        "resize",
        "crop",
        "rotate",
        "dither",
        "watermark",
        "convert",
        "strip",
        "info",
    } <= set(names)
    assert set(names) == set(OPERATION_MODELS)


def test_descriptions_come_from_the_docstrings():
    for entry in describe_operations():
        assert entry["description"]
        assert not entry["description"].startswith(" ")


def test_params_schemas_are_valid_json_schema_without_op():
    for entry in describe_operations():
        schema = entry["params"]
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False
        assert "op" not in schema["properties"]
        assert "op" not in schema.get("required", [])


def test_thumbnail_schema_carries_ranges_and_defaults():
    params = _by_name()["thumbnail"]["params"]

    assert params["properties"]["width"]["type"] == "integer"
    assert params["properties"]["width"]["minimum"] == 1
    assert params["properties"]["width"]["maximum"] == 10000
    assert params["properties"]["height"]["maximum"] == 10000
    assert params["properties"]["upscale"]["default"] is False
    assert "required" not in params


def test_convert_schema_carries_enum_and_default():
    params = _by_name()["convert"]["params"]

    assert params["properties"]["format"]["enum"] == ["jpeg", "png", "webp", "avif", "tiff", "gif"]
    assert params["properties"]["quality"]["default"] == 80
    assert params["properties"]["quality"]["minimum"] == 1
    assert params["properties"]["quality"]["maximum"] == 100
    assert params["required"] == ["format"]


def test_grayscale_has_no_params():
    assert _by_name()["grayscale"]["params"]["properties"] == {}


# The catalogue's JSON Schema (what clients and the web app validate against) and the
# parser (what the services accept) say the same of each case, for every operation family.
SCHEMA_CASES = [
    # catalogue basics
    ("thumbnail", {"width": 10}, True),
    ("thumbnail", {"height": 10, "upscale": True}, True),
    ("thumbnail", {}, False),
    ("thumbnail", {"width": 0}, False),
    ("convert", {"format": "png"}, True),
    ("convert", {"format": "bmp"}, False),
    ("convert", {"format": "gif", "lossless": True}, False),
    ("grayscale", {"x": 1}, False),
    ("dither", {}, True),
    # geometry
    ("thumbnail", {"width": 10, "height": 10, "fit": "cover", "crop": "attention"}, True),
    ("thumbnail", {"width": 10, "height": 10, "fit": "fill"}, True),
    ("thumbnail", {"width": 10, "fit": "inside"}, True),
    ("thumbnail", {"width": 10, "fit": "cover"}, False),
    ("thumbnail", {"height": 10, "fit": "fill"}, False),
    ("thumbnail", {"width": 10, "crop": "centre"}, False),
    ("thumbnail", {"width": 10, "height": 10, "fit": "fill", "crop": "centre"}, False),
    ("resize", {"scale": 0.5, "vscale": 2, "kernel": "nearest"}, True),
    ("resize", {"scale": 0}, False),
    ("resize", {"scale": 11}, False),
    ("extract", {"x": 0, "y": 0, "width": 1, "height": 1}, True),
    ("crop", {"x": 0, "y": 0, "width": 1}, False),
    ("rotate", {"angle": -45.5, "background": "#aabbccdd"}, True),
    ("rotate", {"angle": 90, "background": "#abc"}, False),
    ("rotate", {"angle": 400}, False),
    ("autorotate", {}, True),
    ("autorotate", {"enabled": False}, True),
    ("flip", {}, True),
    ("flip", {"direction": "both"}, False),
    # tone
    ("dither", {"method": "bayer", "matrix_size": 8}, True),
    ("dither", {"matrix_size": 5}, False),
    ("dither", {"method": "palette", "colours": 300}, False),
    ("watermark", {"text": "x", "opacity": 1.5}, False),
    ("watermark", {"text": "x", "gravity": "middle"}, False),
    ("watermark", {"text": "x", "colour": "#abcdef"}, True),
    ("blur", {"sigma": 3}, True),
    ("sharpen", {"m2": 21}, False),
]


@pytest.mark.parametrize(("name", "params", "valid"), SCHEMA_CASES)
def test_schema_agrees_with_parse_pipeline(name, params, valid):
    schema = _by_name()[name]["params"]
    jsonschema.Draft202012Validator.check_schema(schema)

    schema_ok = jsonschema.Draft202012Validator(schema).is_valid(params)
    try:
        parse_pipeline([{"op": name, **params}])
        parsed_ok = True
    except PipelineError:
        parsed_ok = False

    assert schema_ok is valid
    assert parsed_ok is valid
