import json

import pytest

from pipeline import (
    Convert,
    Dither,
    Grayscale,
    PipelineError,
    Thumbnail,
    parse_pipeline,
    pipeline_to_json,
)

KNOWN = (
    "autorotate, blur, brightness, contrast, convert, crop, dither, extract, flip, gamma, "
    "grayscale, info, resize, rotate, sharpen, strip, thumbnail, watermark"
)


def test_parses_every_operation_from_a_list():
    ops = parse_pipeline(
        [
            {"op": "thumbnail", "width": 300},
            {"op": "grayscale"},
            {"op": "dither"},
            {"op": "convert", "format": "webp", "quality": 70},
        ]
    )

    assert ops == (
        Thumbnail(width=300),
        Grayscale(),
        Dither(),
        Convert(format="webp", quality=70),
    )


def test_parses_json_text():
    assert parse_pipeline('[{"op": "thumbnail", "height": 10, "upscale": true}]') == (
        Thumbnail(height=10, upscale=True),
    )


def test_empty_pipeline_is_allowed():
    assert parse_pipeline([]) == ()
    assert parse_pipeline("[]") == ()


def test_defaults_are_filled_in():
    (convert,) = parse_pipeline([{"op": "convert", "format": "jpeg"}])

    assert convert == Convert(format="jpeg", quality=80)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            [{"op": "grayscale"}, {"op": "thumbnail", "width": 10001}],
            "operation 2 (thumbnail): width must be at most 10000",
        ),
        (
            [{"op": "thumbnail", "height": 0}],
            "operation 1 (thumbnail): height must be at least 1",
        ),
        (
            [{"op": "thumbnail"}],
            "operation 1 (thumbnail): give width, height or both",
        ),
        (
            [{"op": "thumbnail", "width": None, "height": None}],
            "operation 1 (thumbnail): give width, height or both",
        ),
        (
            [{"op": "thumbnail", "width": "100"}],
            "operation 1 (thumbnail): width must be a whole number",
        ),
        (
            [{"op": "thumbnail", "width": 10.5}],
            "operation 1 (thumbnail): width must be a whole number",
        ),
        (
            [{"op": "thumbnail", "width": True}],
            "operation 1 (thumbnail): width must be a whole number",
        ),
        (
            [{"op": "thumbnail", "width": 10, "upscale": "yes"}],
            "operation 1 (thumbnail): upscale must be true or false",
        ),
        (
            [{"op": "foo"}],
            f'operation 1: unknown operation "foo"; known: {KNOWN}',
        ),
        (
            [{"op": 3}],
            f"operation 1: unknown operation 3; known: {KNOWN}",
        ),
        (
            [{"op": "convert"}],
            "operation 1 (convert): format is required",
        ),
        (
            [{"op": "convert", "format": "bmp"}],
            "operation 1 (convert): format must be one of "
            "'jpeg', 'png', 'webp', 'avif', 'tiff' or 'gif'",
        ),
        (
            [{"op": "convert", "format": "png", "quality": 101}],
            "operation 1 (convert): quality must be at most 100",
        ),
        (
            [{"op": "grayscale", "amount": 2}],
            'operation 1 (grayscale): unknown parameter "amount" (parameters: none)',
        ),
        (
            [{"op": "thumbnail", "width": 0, "colour": "red"}],
            "operation 1 (thumbnail): width must be at least 1; "
            'unknown parameter "colour" (parameters: width, height, fit, crop, upscale)',
        ),
        (
            [{"op": "dither", "method": "atkinson"}],
            "operation 1 (dither): method must be one of 'floyd-steinberg', 'bayer' or 'palette'",
        ),
        ([{"width": 3}], 'operation 1 has no "op" naming the operation'),
        (["grayscale"], 'operation 1 must be an object like {"op": "grayscale"}'),
        ({"op": "grayscale"}, "pipeline must be a list of operations"),
        (None, "pipeline must be a list of operations"),
        ("[{", "pipeline is not valid JSON: "),
    ],
)
def test_rejects_with_a_plain_message(raw, message):
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(raw)

    assert str(caught.value).startswith(message)
    if not message.endswith(": "):
        assert str(caught.value) == message


def test_rejects_too_many_operations():
    with pytest.raises(PipelineError, match=r"^pipeline has 4 operations; at most 3 are allowed$"):
        parse_pipeline([{"op": "grayscale"}] * 4, max_ops=3)


def test_default_limit_is_ten_operations():
    assert len(parse_pipeline([{"op": "grayscale"}] * 10)) == 10
    with pytest.raises(PipelineError, match="at most 10"):
        parse_pipeline([{"op": "grayscale"}] * 11)


def test_pipeline_error_is_a_value_error():
    with pytest.raises(ValueError, match="unknown operation"):
        parse_pipeline([{"op": "nope"}])


def test_operations_are_frozen():
    thumbnail = Thumbnail(width=5)

    with pytest.raises(ValueError, match="frozen"):
        thumbnail.width = 6  # type: ignore[misc]


def test_round_trips_through_json():
    ops = parse_pipeline(
        [
            {"op": "thumbnail", "width": 64},
            {"op": "dither"},
            {"op": "convert", "format": "png"},
        ]
    )

    as_json = pipeline_to_json(ops)

    assert as_json == [
        {"op": "thumbnail", "width": 64, "fit": "inside", "upscale": False},
        {"op": "dither", "method": "floyd-steinberg"},
        {"op": "convert", "format": "png", "quality": 80, "progressive": False, "lossless": False},
    ]
    assert parse_pipeline(json.dumps(as_json)) == ops
