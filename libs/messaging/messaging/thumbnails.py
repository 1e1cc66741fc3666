"""History thumbnails: a small square WebP of each stored output, made once by the runner
(through imageproc, which alone decodes images) beside the output, and served by upload as
a plain S3 read (`GET /api/v1/jobs/{id}/thumbnail`).

A thumbnail is named by its output's SHA-256, under its own prefix in the output bucket: a
job that reuses an earlier output shares its thumbnail, the name never changes meaning (so
it may be cached for good), and the provenance audit, which holds every other object of
the bucket to an `image.processed`, knows to skip the prefix: a thumbnail is a cache, not a
result."""

from __future__ import annotations

from typing import Any

THUMBNAIL_PREFIX = "thumbnails/"
THUMBNAIL_SIZE = 96
"""Pixels on each side: twice the history's 48 CSS px box, sharp on a 2x screen."""
THUMBNAIL_CONTENT_TYPE = "image/webp"
THUMBNAIL_PIPELINE: list[dict[str, Any]] = [
    {
        "op": "thumbnail",
        "width": THUMBNAIL_SIZE,
        "height": THUMBNAIL_SIZE,
        "fit": "cover",
        "upscale": True,
    },
    {"op": "convert", "format": "webp", "quality": 70},
]
"""What imageproc applies to an output to make its thumbnail: cover the square and crop
the overflow; a smaller output is enlarged, so every thumbnail is the same square."""


def thumbnail_key(output_sha256: str) -> str:
    """The thumbnail's key in the output bucket."""
    return f"{THUMBNAIL_PREFIX}{output_sha256}.webp"
