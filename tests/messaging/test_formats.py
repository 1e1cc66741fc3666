"""The content-type allow-list the runner stores results with is pipeline's format list."""

from __future__ import annotations

from messaging.formats import CONTENT_TYPES, content_type_of
from pipeline import ImageFormat


def test_the_allow_list_is_pipelines_image_formats() -> None:
    assert dict(CONTENT_TYPES) == {fmt.value: fmt.content_type for fmt in ImageFormat}


def test_anything_else_has_no_content_type() -> None:
    for value in ("html", "svg", "text/html", "", None, 1, ["png"]):
        assert content_type_of(value) is None
    assert content_type_of("png") == "image/png"
