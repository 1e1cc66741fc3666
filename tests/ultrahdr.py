"""UltraHDR JPEGs for tests, made by libvips' own encoder (`uhdrsave`) rather than committed:
an ordinary JPEG, an MPF segment naming a second image, and that second image (the gain
map) after the first one's end, as in libvips' test image `ultra-hdr.jpg` (1.2 MB)."""

from __future__ import annotations

import pyvips

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
MPF = b"\xff\xe2"  # APP2, followed by its length and "MPF\0"


def ultra_hdr_jpeg(width: int = 96, height: int = 64) -> bytes:
    """A valid UltraHDR JPEG of a scene brighter than SDR white (so the gain map is real)."""
    xyz = pyvips.Image.xyz(width, height)
    # Linear light from 0 to 4x SDR white across, a vertical ramp in the other bands.
    red = (xyz[0] * (4.0 / width)).cast("float")
    green = (xyz[1] * (2.0 / height)).cast("float")
    scene = red.bandjoin([green, (red + green) * 0.25]).copy(interpretation="scrgb")
    return bytes(scene.uhdrsave_buffer())


def looks_ultra_hdr(data: bytes) -> bool:
    """What makes it UltraHDR on the wire: an MPF segment, and a second JPEG after the
    primary image (the gain map)."""
    return data.startswith(SOI) and b"MPF\x00" in data and data.count(SOI + b"\xff") >= 2
