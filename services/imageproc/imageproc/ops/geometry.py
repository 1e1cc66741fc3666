"""Geometry: size, crop, orientation.

An operation that cannot apply to the image it is given (a region outside it) raises
ValueError with a plain message; the engine names the step.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pyvips
from PIL import Image, UnidentifiedImageError

from pipeline import Operation
from pipeline.geometry import (
    Autorotate,
    Crop,
    Extract,
    Flip,
    Resize,
    Rotate,
    Thumbnail,
)

from .._canvas import Canvas

# "Unbounded" for the side a thumbnail request leaves out.
UNBOUNDED = 10_000_000

# EXIF orientations 5 to 8 store the image on its side.
_SIDEWAYS = frozenset({5, 6, 7, 8})

_LOSSLESS_TURNS = {90: "rot90", 180: "rot180", 270: "rot270"}


# --- thumbnail -----------------------------------------------------------------------


def thumbnail(canvas: Canvas, op: Thumbnail) -> Canvas:
    image = canvas.image
    width, height = _box(op, lambda: (image.width, image.height))
    image = image.thumbnail_image(width, height=height, **_thumbnail_options(op))
    return replace(canvas, image=image, bilevel=False)


def thumbnail_from_buffer(
    data: bytes, op: Thumbnail, load_options: str, *, autorotate: bool = True
) -> Any:
    """Thumbnail straight from the encoded bytes, so libvips can shrink on load. The
    engine uses this when thumbnail is a pipeline's first operation; ``autorotate`` false
    keeps the stored orientation (see ``autorotate_at_load``). With ``n=-1`` in
    ``load_options`` an animation's frames stay stacked, each one thumbnailed."""
    header = pyvips.Image.new_from_buffer(data, load_options)
    if op.fit == "cover" and header.height > header.get_page_height():
        # libvips's thumbnail keeps only the first frame when it crops.
        return _cover_each_frame(pyvips.Image.new_from_buffer(data, load_options), op)
    width, height = _box(op, lambda: _upright_size(header, autorotate))
    if op.fit == "inside" and _is_jpeg(header) and header.get_n_pages() == 1:
        scaled = decode_jpeg_scaled(data, header, (width, height), autorotate)
        if scaled is not None:
            return scaled.thumbnail_image(
                width, height=height, no_rotate=not autorotate, **_thumbnail_options(op)
            )
    return pyvips.Image.thumbnail_buffer(
        data,
        width,
        height=height,
        no_rotate=not autorotate,
        option_string=load_options,
        **_thumbnail_options(op),
    )


DRAFT_MARGIN = 2.0
"""A JPEG is decoded at no less than this multiple of the thumbnail's size (libvips'
own thumbnail keeps the same 2x for the final Lanczos resize)."""
_DRAFT_MODES = {"RGB": ("srgb", 3), "L": ("b-w", 1)}


def _is_jpeg(header: Any) -> bool:
    fields = header.get_fields()
    return "vips-loader" in fields and str(header.get("vips-loader")).startswith("jpegload")


def decode_jpeg_scaled(
    data: bytes, header: Any, box: tuple[int, int], autorotate: bool
) -> Any | None:
    """A JPEG decoded by DCT scaling to about DRAFT_MARGIN times the size a thumbnail
    "inside" `box` needs (Pillow's draft: its libjpeg-turbo decodes ~25 % faster than the
    mozjpeg in pyvips-binary, `make bench`), as a libvips image carrying the JPEG's colour
    profile, EXIF and orientation, ready for `thumbnail_image`. None when libvips should
    decode it instead: not an RGB or greyscale JPEG (CMYK, ...), or anything Pillow
    refuses (libvips then reports the error as it would)."""
    stored_width, stored_height = header.width, header.height
    sideways = autorotate and _orientation(header) in _SIDEWAYS
    box_width, box_height = (box[1], box[0]) if sideways else box
    ratio = min(box_width / stored_width, box_height / stored_height, 1.0)
    wanted = (
        max(1, round(stored_width * ratio * DRAFT_MARGIN)),
        max(1, round(stored_height * ratio * DRAFT_MARGIN)),
    )
    if min(stored_width // wanted[0], stored_height // wanted[1]) < 2:
        # Pillow's draft would not scale (it halves only while both sides stay above the
        # wanted size): it would decode the whole image into memory, twice with the copy
        # below (a 24 MP photo: ~140 MB), where libvips streams it.
        return None
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as picture:
            if picture.mode not in _DRAFT_MODES:
                return None
            picture.draft(picture.mode, wanted)
            picture.load()
            pixels = picture.tobytes()
            size = picture.size
    except (OSError, SyntaxError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    interpretation, bands = _DRAFT_MODES[picture.mode]
    image = pyvips.Image.new_from_memory(pixels, size[0], size[1], bands, "uchar").copy(
        interpretation=interpretation
    )
    for name in ("icc-profile-data", "exif-data", "xmp-data"):
        if name in header.get_fields():
            image.set_type(pyvips.GValue.blob_type, name, header.get(name))
    if "orientation" in header.get_fields():
        image.set_type(pyvips.GValue.gint_type, "orientation", _orientation(header))
    return image


def _cover_each_frame(roll: Any, op: Thumbnail) -> Any:
    page_height = roll.get_page_height()
    frames = [
        roll.crop(0, top, roll.width, page_height).thumbnail_image(
            op.width, height=op.height, **_thumbnail_options(op)
        )
        for top in range(0, roll.height, page_height)
    ]
    joined = pyvips.Image.arrayjoin(frames, across=1).copy()
    joined.set_type(pyvips.GValue.gint_type, "page-height", frames[0].height)
    return joined


def _box(op: Thumbnail, image_size: Callable[[], tuple[int, int]]) -> tuple[int, int]:
    """The box libvips is asked for; ``image_size`` is only called when it matters."""
    if op.fit == "fill" and not op.upscale and op.width and op.height:
        # libvips cannot combine size "force" with "down": instead, never ask for a side
        # longer than the image's own.
        image_width, image_height = image_size()
        return min(op.width, image_width), min(op.height, image_height)
    return op.width or UNBOUNDED, op.height or UNBOUNDED


def _thumbnail_options(op: Thumbnail) -> dict[str, str]:
    if op.fit == "fill":
        return {"size": "force"}
    options = {"size": "both" if op.upscale else "down"}
    if op.fit == "cover":
        options["crop"] = op.crop or "centre"
    return options


def _upright_size(header: Any, autorotate: bool) -> tuple[int, int]:
    # One frame's size: with n=-1 an animation's frames are stacked.
    width, height = header.width, header.get_page_height()
    if autorotate and _orientation(header) in _SIDEWAYS:
        return height, width
    return width, height


def _orientation(image: Any) -> int:
    return int(image.get("orientation")) if "orientation" in image.get_fields() else 1


# --- resize, extract -----------------------------------------------------------------


def resize(canvas: Canvas, op: Resize) -> Canvas:
    vscale = op.scale if op.vscale is None else op.vscale
    image = canvas.image.resize(op.scale, vscale=vscale, kernel=op.kernel)
    return replace(canvas, image=image, bilevel=canvas.bilevel and op.kernel == "nearest")


def extract(canvas: Canvas, op: Extract | Crop) -> Canvas:
    image = canvas.image
    if op.x + op.width > image.width or op.y + op.height > image.height:
        raise ValueError(
            f"region {op.x},{op.y} {op.width}x{op.height} exceeds the"
            f" {image.width}x{image.height} image"
        )
    return replace(canvas, image=image.crop(op.x, op.y, op.width, op.height))


# --- orientation ---------------------------------------------------------------------


def rotate(canvas: Canvas, op: Rotate) -> Canvas:
    turn = op.angle % 360
    if turn == 0:
        return canvas
    if turn in _LOSSLESS_TURNS:
        image = getattr(canvas.image, _LOSSLESS_TURNS[int(turn)])()
        return replace(canvas, image=image)
    image, background = _with_background(canvas.image, op.background_rgba)
    image = image.rotate(op.angle, background=background)
    return replace(canvas, image=image, bilevel=False)


def _with_background(image: Any, rgba: tuple[int, int, int, int]) -> tuple[Any, list[float]]:
    """The image in a colour space the background can be given in, and the background
    as one value per band."""
    red, green, blue, alpha = rgba
    colour_bands = image.bands - (1 if image.hasalpha() else 0)
    grey = red == green == blue
    if image.interpretation not in ("srgb", "b-w", "rgb16", "grey16") or (
        colour_bands == 1 and not grey
    ):
        image = image.colourspace("srgb")
        colour_bands = 3
    if alpha < 255 and not image.hasalpha():
        image = image.addalpha()
    values: list[float] = [red] if colour_bands == 1 else [red, green, blue]
    if image.hasalpha():
        values.append(alpha)
    if image.format == "ushort":
        values = [value * 257 for value in values]
    return image, values


def autorotate(canvas: Canvas, op: Autorotate) -> Canvas:
    image = canvas.image
    if op.enabled:
        # Idempotent: autorot drops the orientation tag it applied.
        return replace(canvas, image=image.autorot())
    if _orientation(image) == 1:
        return canvas
    # The pixels stay as stored; were the tag kept (with EXIF), viewers would turn them.
    image = image.copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", 1)
    return replace(canvas, image=image)


def autorotate_at_load(ops: Sequence[Operation]) -> bool:
    """Whether the engine should turn the image upright when loading it: yes unless the
    pipeline has an autorotate with enabled false."""
    return not any(isinstance(op, Autorotate) and not op.enabled for op in ops)


def flip(canvas: Canvas, op: Flip) -> Canvas:
    return replace(canvas, image=canvas.image.flip(op.direction))


OPERATIONS: dict[str, Callable[[Canvas, Any], Canvas]] = {
    "thumbnail": thumbnail,
    "resize": resize,
    "extract": extract,
    "crop": extract,
    "rotate": rotate,
    "autorotate": autorotate,
    "flip": flip,
}
