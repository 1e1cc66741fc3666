"""Output quality: SSIM of an engine's output against a full-resolution Lanczos reference.

The reference decodes the original at full size (no shrink-on-load), turns it upright and
into sRGB, and resizes it with Lanczos-3 straight to the output's dimensions. SSIM (Wang
et al. 2004: 11-tap Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03) is computed on the
luma of both, in libvips, so a 24 MP reference costs a fraction of a second.
"""

from __future__ import annotations

from typing import Any

import pyvips

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2
SIGMA = 1.5


def reference(original: bytes, width: int, height: int) -> Any:
    """The original, upright, sRGB, resized with Lanczos-3 to exactly width x height."""
    image = pyvips.Image.new_from_buffer(original, "").autorot()
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    if image.interpretation not in ("srgb", "b-w"):
        image = image.colourspace("srgb")
    return image.resize(width / image.width, vscale=height / image.height, kernel="lanczos3")


def luma(image: Any) -> Any:
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    if image.bands > 1 or image.interpretation != "b-w":
        image = image.colourspace("b-w")
    return image[0].cast("float")


def ssim(a: Any, b: Any) -> float:
    """Mean SSIM of two images of the same size, on their luma."""
    x, y = luma(a), luma(b)

    def blur(image: Any) -> Any:
        return image.gaussblur(SIGMA, precision="float", min_ampl=0.01)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    numerator = (mu_x * mu_y * 2 + C1) * (cov * 2 + C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + C1) * (var_x + var_y + C2)
    return float((numerator / denominator).avg())


def score(original: bytes, output: bytes) -> float:
    """SSIM of an encoded output against the reference made for its dimensions."""
    made = pyvips.Image.new_from_buffer(output, "")
    return ssim(reference(original, made.width, made.height), made)
