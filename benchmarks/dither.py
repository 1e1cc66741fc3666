"""imageproc's Floyd-Steinberg against the proof of concept's pure-Python loop."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path


def python_floyd_steinberg(pixels: list[list[int]]) -> list[list[int]]:
    """Floyd-Steinberg to black and white in pure Python, as the proof of concept did it
    (its loop, on rows of ints: no faster than that)."""
    height, width = len(pixels), len(pixels[0])
    work = [[float(value) for value in row] for row in pixels]
    for y in range(height):
        row = work[y]
        below = work[y + 1] if y + 1 < height else None
        for x in range(width):
            old = row[x]
            new = 255.0 if old >= 128 else 0.0
            row[x] = new
            error = old - new
            if x + 1 < width:
                row[x + 1] += error * 7 / 16
            if below is not None:
                if x > 0:
                    below[x - 1] += error * 3 / 16
                below[x] += error * 5 / 16
                if x + 1 < width:
                    below[x + 1] += error * 1 / 16
    return [[int(value) for value in row] for row in work]


def dither_speedup(paths: Iterable[Path], side: int = 384) -> dict[str, float]:
    """Seconds per megapixel of the pure-Python loop and of imageproc's Floyd-Steinberg,
    on the same grey crops (the loop is too slow for whole photos)."""
    import pyvips

    from imageproc._dither import floyd_steinberg

    python_s = imageproc_s = megapixels = 0.0
    for path in paths:
        grey = pyvips.Image.new_from_file(str(path)).colourspace("b-w")[0]
        crop = grey.crop(0, 0, min(side, grey.width), min(side, grey.height)).copy_memory()
        data = crop.write_to_memory()
        rows = [list(data[y * crop.width : (y + 1) * crop.width]) for y in range(crop.height)]
        started = time.process_time()
        python_floyd_steinberg(rows)
        python_s += time.process_time() - started
        started = time.process_time()
        for _ in range(20):  # fast: repeat it for a measurable time
            floyd_steinberg(crop).write_to_memory()
        imageproc_s += (time.process_time() - started) / 20
        megapixels += crop.width * crop.height / 1e6
    return {
        "python_s_per_mp": python_s / megapixels,
        "imageproc_s_per_mp": imageproc_s / megapixels,
        "speedup": python_s / imageproc_s,
    }
