from typing import Any

import pytest

from pipeline import PipelineError, describe_operations, parse_pipeline
from pipeline.geometry import GEOMETRY_OPS, Crop, Extract, Rotate, Thumbnail

GEOMETRY_NAMES = {model.model_fields["op"].default for model in GEOMETRY_OPS}


def _params(name: str) -> dict[str, Any]:
    (entry,) = (entry for entry in describe_operations() if entry["name"] == name)
    params: dict[str, Any] = entry["params"]
    return params


def test_every_geometry_operation_is_in_the_catalogue():
    names = {entry["name"] for entry in describe_operations()}

    assert names >= GEOMETRY_NAMES
    assert {
        "thumbnail",
        "resize",
        "extract",
        "crop",
        "rotate",
        "autorotate",
        "flip",
    } == GEOMETRY_NAMES


def test_crop_is_extract_under_another_name():
    region = {"x": 1, "y": 2, "width": 3, "height": 4}

    assert parse_pipeline([{"op": "crop", **region}, {"op": "extract", **region}]) == (
        Crop.model_validate({"op": "crop", **region}),
        Extract.model_validate({"op": "extract", **region}),
    )
    assert _params("crop") == _params("extract")


def test_rotate_background_is_normalised_and_decoded():
    (rotate,) = parse_pipeline([{"op": "rotate", "angle": 45, "background": "#FF8000"}])

    assert rotate == Rotate(angle=45.0, background="#ff8000")
    assert rotate.background_rgba == (255, 128, 0, 255)
    assert Rotate(angle=1, background="#01020304").background_rgba == (1, 2, 3, 4)


def test_thumbnail_defaults():
    (thumbnail,) = parse_pipeline([{"op": "thumbnail", "width": 10}])

    assert thumbnail == Thumbnail(width=10, fit="inside", crop=None, upscale=False)


def test_schemas_carry_ranges_enums_and_defaults():
    thumbnail, resize, rotate = _params("thumbnail"), _params("resize"), _params("rotate")
    flip, autorotate = _params("flip"), _params("autorotate")

    assert thumbnail["properties"]["fit"]["enum"] == ["inside", "cover", "fill"]
    assert thumbnail["properties"]["fit"]["default"] == "inside"
    assert thumbnail["properties"]["crop"]["enum"] == ["centre", "attention", "entropy"]
    assert resize["properties"]["scale"]["exclusiveMinimum"] == 0
    assert resize["properties"]["scale"]["maximum"] == 10
    assert resize["properties"]["kernel"]["default"] == "lanczos3"
    assert resize["required"] == ["scale"]
    assert rotate["properties"]["angle"]["minimum"] == -360
    assert rotate["properties"]["background"]["default"] == "#000000"
    assert rotate["properties"]["background"]["pattern"]
    assert flip["properties"]["direction"]["enum"] == ["horizontal", "vertical"]
    assert autorotate["properties"]["enabled"]["default"] is True
    assert _params("extract")["required"] == ["x", "y", "width", "height"]


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (
            {"op": "thumbnail", "width": 10, "fit": "cover"},
            'fit "cover" needs both width and height',
        ),
        (
            {"op": "thumbnail", "height": 10, "fit": "fill"},
            'fit "fill" needs both width and height',
        ),
        (
            {"op": "thumbnail", "width": 10, "crop": "attention"},
            'crop only applies with fit "cover", not fit "inside"',
        ),
        (
            {"op": "thumbnail", "width": 10, "height": 10, "fit": "fill", "crop": "centre"},
            'crop only applies with fit "cover", not fit "fill"',
        ),
        (
            {"op": "thumbnail", "width": 10, "fit": "contain"},
            "fit must be one of 'inside', 'cover' or 'fill'",
        ),
        (
            {"op": "thumbnail", "width": 10, "height": 10, "fit": "cover", "crop": "smart"},
            "crop must be one of 'centre', 'attention' or 'entropy'",
        ),
        ({"op": "resize"}, "scale is required"),
        ({"op": "resize", "scale": 0}, "scale must be greater than 0"),
        ({"op": "resize", "scale": 10.5}, "scale must be at most 10"),
        ({"op": "resize", "scale": 2, "vscale": -1}, "vscale must be greater than 0"),
        (
            {"op": "resize", "scale": 2, "kernel": "bilinear"},
            "kernel must be one of 'nearest', 'linear', 'cubic', 'mitchell', 'lanczos2'"
            " or 'lanczos3'",
        ),
        ({"op": "extract", "x": 0, "y": 0, "width": 10}, "height is required"),
        ({"op": "crop", "x": -1, "y": 0, "width": 10, "height": 10}, "x must be at least 0"),
        ({"op": "crop", "x": 0, "y": 0, "width": 0, "height": 10}, "width must be at least 1"),
        ({"op": "extract", "x": 0, "y": 0, "width": 1.5, "height": 1}, "width must be a whole"),
        ({"op": "rotate"}, "angle is required"),
        ({"op": "rotate", "angle": 361}, "angle must be at most 360"),
        ({"op": "rotate", "angle": -400}, "angle must be at least -360"),
        (
            {"op": "rotate", "angle": 10, "background": "red"},
            'background must match "#rrggbb" or "#rrggbbaa" (hex digits), not "red"',
        ),
        (
            {"op": "rotate", "angle": 10, "background": "#12345"},
            'background must match "#rrggbb" or "#rrggbbaa" (hex digits), not "#12345"',
        ),
        ({"op": "rotate", "angle": 10, "background": 0}, "background must be a string"),
        ({"op": "autorotate", "enabled": "no"}, "enabled must be true or false"),
        ({"op": "flip", "direction": "diagonal"}, "direction must be one of 'horizontal'"),
        ({"op": "flip", "axis": "x"}, 'unknown parameter "axis" (parameters: direction)'),
    ],
)
def test_bad_params_name_the_operation_and_parameter(op, message):
    with pytest.raises(PipelineError) as caught:
        parse_pipeline([{"op": "grayscale"}, op])

    assert str(caught.value).startswith(f"operation 2 ({op['op']}): {message}")
