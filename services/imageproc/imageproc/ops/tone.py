"""Tone: colour, filters, dithering, watermarks.

Each function gets one frame. Values come out as 8-bit sRGB or grey, clipped to 0..255;
alpha is kept as it was unless an operation says otherwise (blur, watermark).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pyvips

from pipeline import Grayscale, ImageFormat
from pipeline.tone import Blur, Brightness, Contrast, Dither, Gamma, Sharpen, Watermark

from .._canvas import Canvas, to_grey
from .._dither import bayer, floyd_steinberg, quantise

DEFAULT_MATRIX_SIZE = 4
DEFAULT_COLOURS = 16
# libvips cuts the Gaussian where it falls below 0.2, which makes sigma 0.5 a no-op.
_BLUR = {"min_ampl": 0.1}


def grayscale(canvas: Canvas, op: Grayscale) -> Canvas:
    return replace(canvas, image=to_grey(canvas.image))


def blur(canvas: Canvas, op: Blur) -> Canvas:
    image = _eight_bit(canvas.image)
    if image.hasalpha():
        # Premultiplied, so colours hidden under transparent pixels do not bleed out.
        blurred = image.premultiply().gaussblur(op.sigma, **_BLUR).unpremultiply()
    else:
        blurred = image.gaussblur(op.sigma, **_BLUR)
    return _changed(canvas, _uchar(blurred).copy(interpretation=image.interpretation))


def sharpen(canvas: Canvas, op: Sharpen) -> Canvas:
    # libvips sharpens L* of LAB and converts back to the input's colour space and format.
    colour, alpha = _split_alpha(_eight_bit(canvas.image))
    sharpened = colour.sharpen(sigma=op.sigma, m1=op.m1, m2=op.m2)
    return _changed(canvas, _join_alpha(_uchar(sharpened), alpha))


def brightness(canvas: Canvas, op: Brightness) -> Canvas:
    return _changed(canvas, _on_colour(canvas.image, lambda colour: colour * op.factor))


def contrast(canvas: Canvas, op: Contrast) -> Canvas:
    return _changed(
        canvas, _on_colour(canvas.image, lambda colour: (colour - 128) * op.factor + 128)
    )


def gamma(canvas: Canvas, op: Gamma) -> Canvas:
    # Through a table of the 256 values: libvips' own gamma() takes white to 254.
    table = pyvips.Image.identity()
    table = ((table / 255) ** (1 / op.exponent) * 255).rint().cast("uchar")
    return _changed(canvas, _on_colour(canvas.image, lambda colour: colour.maplut(table)))


def dither(canvas: Canvas, op: Dither) -> Canvas:
    if op.method == "palette":
        colours = op.colours or DEFAULT_COLOURS
        image = quantise(_eight_bit(canvas.image), colours)
        return replace(
            canvas, image=image, format=ImageFormat.PNG, bilevel=False, palette_colours=colours
        )
    grey = to_grey(_on_white(canvas.image))
    if op.method == "bayer":
        image = bayer(grey, op.matrix_size or DEFAULT_MATRIX_SIZE)
    else:
        image = floyd_steinberg(grey)
    return replace(canvas, image=image, format=ImageFormat.PNG, bilevel=True, palette_colours=None)


def dither_source(canvas: Canvas, op: Dither) -> Any | None:
    """What Floyd-Steinberg reads whole (the grey image on white), or None for the
    methods that stream. The engine holds it in memory before the operation runs, so that
    the decoder behind it is gone while the dither holds its own copies; `dither` then
    finds it already grey."""
    if op.method != "floyd-steinberg":
        return None
    return to_grey(_on_white(canvas.image))


def watermark(canvas: Canvas, op: Watermark) -> Canvas:
    if op.opacity == 0:
        return canvas
    image = _eight_bit(canvas.image)
    if image.interpretation == "b-w":
        image = image.colourspace("srgb")
    mask = _fit(op.text, op.font_size, image, op.margin)
    red, green, blue = (int(op.colour[i : i + 2], 16) for i in (1, 3, 5))
    overlay = (
        mask.new_from_image([red, green, blue])
        .bandjoin((mask * op.opacity).rint().cast("uchar"))
        .copy(interpretation="srgb")
    )
    x, y = _place(op.gravity, image, mask, op.margin)
    marked = image.composite2(overlay, "over", x=x, y=y).cast("uchar")
    if not image.hasalpha():
        marked = marked.extract_band(0, n=3)
    return _changed(canvas, marked.copy(interpretation="srgb"))


# --- helpers ------------------------------------------------------------------------


def _changed(canvas: Canvas, image: Any) -> Canvas:
    """New pixel values: no longer only black and white."""
    return replace(canvas, image=image, bilevel=False)


def _eight_bit(image: Any) -> Any:
    """The image as 8-bit sRGB or grey (alpha kept), as the encoder would save it."""
    if image.format == "uchar" and image.interpretation in ("srgb", "b-w"):
        return image
    if image.interpretation in ("b-w", "grey16"):
        return image.colourspace("b-w").cast("uchar")
    if "icc-profile-data" in image.get_fields():
        # Honour the embedded profile (e.g. CMYK or Adobe RGB) instead of guessing; the
        # result carries an sRGB profile, so the encoder's own transform is a no-op.
        return image.icc_transform("srgb", embedded=True, intent="perceptual").cast("uchar")
    return image.colourspace("srgb").cast("uchar")


def _uchar(image: Any) -> Any:
    """Round and clip to 0..255 (cast alone truncates)."""
    return image if image.format == "uchar" else image.rint().cast("uchar")


def _split_alpha(image: Any) -> tuple[Any, Any | None]:
    if not image.hasalpha():
        return image, None
    return image.extract_band(0, n=image.bands - 1), image.extract_band(image.bands - 1)


def _join_alpha(colour: Any, alpha: Any | None) -> Any:
    return colour if alpha is None else colour.bandjoin(alpha)


def _on_colour(image: Any, transform: Callable[[Any], Any]) -> Any:
    """Apply ``transform`` to the colour bands; round, clip to 0..255 and keep alpha."""
    image = _eight_bit(image)
    colour, alpha = _split_alpha(image)
    return _join_alpha(_uchar(transform(colour)), alpha).copy(interpretation=image.interpretation)


def _on_white(image: Any) -> Any:
    # Transparent areas read as white paper, not as whatever colour they hide.
    if not image.hasalpha():
        return image
    return image.flatten(background=[255] * (image.bands - 1))


def _text_mask(text: str, font_size: int) -> Any:
    """The text's coverage, 0..255, one band. The text is escaped: never Pango markup."""
    return pyvips.Image.text(html.escape(text, quote=False), font=f"sans {font_size}px", dpi=72)


def _fit(text: str, font_size: int, image: Any, margin: int) -> Any:
    """The text's mask, rendered smaller when needed to fit inside the image's margins."""
    mask = _text_mask(text, font_size)
    room_x = max(image.width - 2 * margin, 1)
    room_y = max(image.height - 2 * margin, 1)
    scale = min(room_x / mask.width, room_y / mask.height)
    if scale >= 1:
        return mask
    # Rendering again at a smaller size keeps the strokes crisp; glyph sizes do not scale
    # exactly with the font size, so whatever still sticks out is shrunk.
    mask = _text_mask(text, max(int(font_size * scale), 1))
    scale = min(room_x / mask.width, room_y / mask.height, 1)
    width, height = max(int(mask.width * scale), 1), max(int(mask.height * scale), 1)
    return mask.resize(width / mask.width, vscale=height / mask.height)


def _place(gravity: str, image: Any, mask: Any, margin: int) -> tuple[int, int]:
    """Top-left corner of the mask for the gravity, clamped so it stays on the image."""
    free_x, free_y = image.width - mask.width, image.height - mask.height
    x = margin if "west" in gravity else free_x - margin if "east" in gravity else free_x // 2
    y = margin if "north" in gravity else free_y - margin if "south" in gravity else free_y // 2
    return min(max(x, 0), max(free_x, 0)), min(max(y, 0), max(free_y, 0))


WHOLE_IMAGE_SOURCES: dict[str, Callable[[Canvas, Any], Any | None]] = {"dither": dither_source}
"""Operations that read their input whole: what they read, for the engine to hold in
memory first (`operations._materialise`)."""

OPERATIONS: dict[str, Callable[[Canvas, Any], Canvas]] = {
    "grayscale": grayscale,
    "blur": blur,
    "sharpen": sharpen,
    "brightness": brightness,
    "contrast": contrast,
    "gamma": gamma,
    "dither": dither,
    "watermark": watermark,
}
