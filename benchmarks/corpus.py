"""The benchmark corpus: real photographs from Debian packages plus three generated ones.

Photos only: the two wallpaper packages mix camera photos with renders and abstract art,
so the photos are listed by name (each picked by looking at it). From plasma's wallpapers
the largest file of each. Three generated photo-like JPEGs (12 MP progressive, 24 MP
baseline and 24 MP progressive) add the sizes cameras make today; the 24 MP progressive
one is the memory target's worst case (libjpeg keeps its whole coefficient array). Every
file is copied into one folder under a short name (thumbor's file loader serves that
folder) and described in `corpus.json`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import pyvips

PACKAGES = ("lomiri-wallpapers-16.04", "plasma-workspace-wallpapers")

_PLASMA = Path("/usr/share/wallpapers")
_LOMIRI = Path("/usr/share/backgrounds")
#: plasma-workspace-wallpapers: wallpaper folder -> file (its largest JPEG)
PLASMA_PHOTOS = {
    "BytheWater": "1920x1080.jpg",
    "ColdRipple": "1920x1080.jpg",
    "ColorfulCups": "2560x1600.jpg",
    "DarkestHour": "1920x1080.jpg",
    "EveningGlow": "1920x1080.jpg",
    "FallenLeaf": "1920x1080.jpg",
    "Grey": "1920x1080.jpg",
    "Kite": "1920x1080.jpg",
    "OneStandsOut": "1920x1080.jpg",
    "Path": "1920x1080.jpg",
    "summer_1am": "1920x1080.jpg",
}
#: lomiri-wallpapers-16.04 (not analogpattern or umang: a texture and a gradient)
LOMIRI_PHOTOS = (
    "Bridge_by_Sander_Klootwijk.jpg",
    "Dragonfly_by_Bolly.jpg",
    "Picture_0B_by_freespace.jpg",
    "Picture_1A_by_freespace.jpg",
    "Wine_by_Jakkub_Mede.jpg",
    "aitzgorri_by_Aitzol_Berasategi.jpg",
    "free_by_Peter_Nerlich.jpg",
    "friends_by_Aitzol_Berasategi.jpg",
    "greentock_by_Peter_Nerlich.jpg",
    "life_by_Aitzol_Berasategi.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg",
    "seeding_by_Clements_Engelhardt.jpg",
    "sunset_by_Aitzol_Berasategi.jpg",
)
#: Bumped when `photo_like` changes, so that files generated before are made again
#: (1: gaussnoise's mean defaulted to 128 and every pixel came out white).
GENERATOR_VERSION = "2"
#: name -> (width, height, progressive)
GENERATED = {
    "generated-12mp.jpg": (4240, 2832, True),
    "generated-24mp.jpg": (6000, 4000, False),
    "generated-24mp-progressive.jpg": (6000, 4000, True),
}


@dataclass(frozen=True)
class Picture:
    name: str
    source: str
    bytes: int
    width: int
    height: int
    progressive: bool

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def photo_sources() -> dict[str, Path]:
    """Corpus name -> installed photo."""
    sources = {
        f"plasma-{folder}.jpg": _PLASMA / folder / "contents" / "images" / file
        for folder, file in PLASMA_PHOTOS.items()
    }
    sources |= {f"lomiri-{file}": _LOMIRI / file for file in LOMIRI_PHOTOS}
    return sources


def missing_photos() -> list[Path]:
    return [path for path in photo_sources().values() if not path.is_file()]


def build(folder: Path) -> list[Picture]:
    """Fill `folder` with the corpus (kept between runs) and describe every file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in photo_sources().items():
        target = folder / name
        if not target.exists():
            shutil.copyfile(source, target)
    marker = folder / ".generated-version"
    current = marker.exists() and marker.read_text() == GENERATOR_VERSION
    for name, (width, height, progressive) in GENERATED.items():
        target = folder / name
        if not target.exists() or not current:
            partial = target.with_suffix(".part")
            photo_like(width, height, seed=len(name)).jpegsave(
                str(partial), Q=90, interlace=progressive, subsample_mode="on"
            )
            os.replace(partial, target)
    marker.write_text(GENERATOR_VERSION)
    pictures = [describe(folder / name, source) for name, source in _sources_by_name()]
    (folder / "corpus.json").write_text(
        json.dumps([asdict(picture) for picture in pictures], indent=1) + "\n"
    )
    return pictures


def _sources_by_name() -> list[tuple[str, str]]:
    named = [(name, str(path)) for name, path in photo_sources().items()]
    return named + [(name, "generated (photo-like, Q90)") for name in GENERATED]


def describe(path: Path, source: str) -> Picture:
    image = pyvips.Image.new_from_file(str(path))
    fields = image.get_fields()
    return Picture(
        name=path.name,
        source=source,
        bytes=path.stat().st_size,
        width=image.width,
        height=image.height,
        progressive=bool("interlaced" in fields and image.get("interlaced")),
    )


def photo_like(width: int, height: int, *, seed: int) -> pyvips.Image:
    """Colour gradients, soft blotches, mid-scale texture and fine grain: at Q90 a 24 MP
    one is ~9 MB, as a camera photo is."""
    xy = pyvips.Image.xyz(width, height)
    x, y = xy[0], xy[1]
    red = x * (180 / width) + 40
    green = y * (160 / height) + 50
    blue = (x * (360 / width) + y * (720 / height) + seed * 37).sin() * 60 + 120
    base = red.bandjoin([green, blue])
    small = pyvips.Image.gaussnoise(
        width // 100 + 2, height // 100 + 2, sigma=45, mean=0, seed=seed
    )
    blotches = small.resize(100, kernel="linear").crop(0, 0, width, height)
    texture = pyvips.Image.gaussnoise(
        width // 4 + 1, height // 4 + 1, sigma=20, mean=0, seed=seed + 1
    )
    texture = texture.resize(4, kernel="linear").crop(0, 0, width, height)
    grain = pyvips.Image.gaussnoise(width, height, sigma=8, mean=0, seed=seed + 2)
    blotches = blotches.bandjoin([blotches, blotches]) * [0.8, 0.6, 1.0]
    return (base + blotches + texture + grain).cast("uchar")
