"""The `input-headers` target: the input-only formats' header checks and decoding
(`pipeline._pillow`, `imageproc._extended`) on mutated BMP, ICO/CUR, PNM, QOI, JPEG 2000
and HEIF/HEIC files and forged headers.

What must hold: a refusal is one of the documented codes; what the probe accepts is
within the limits, reads the same from a file as from memory, and either decodes into an
image within the limits (the PNG the pipeline goes on with) or is refused as
`undecodable` or over a limit, never with another exception.
"""

from __future__ import annotations

import functools
import os
import struct
from typing import Any

from hypothesis import strategies as st

from imageproc._extended import as_png
from pipeline import (
    ExtendedFormat,
    ImageInfo,
    ImageLimits,
    ImageRejected,
    check_limits,
    harden_vips,
    probe_file,
    probe_image,
)
from tests.extended_images import (
    EXTENDED_SAMPLES,
    bmp_header,
    extended_image,
    heif_header,
    icon_hiding_a_large_png,
    pnm_header,
    qoi_header,
)

from . import images
from .engine import Target, Violation

LIMITS = ImageLimits(max_pixels=2_000_000, max_side=3_000, max_frames=10)
"""Small, so that whatever is accepted decodes in a moment and a few MB."""
REFUSALS = frozenset(
    {"unsupported_type", "undecodable", "too_many_pixels", "too_large_side", "too_many_frames"}
)
DECODE_REFUSALS = frozenset({"undecodable", "too_many_pixels", "too_large_side"})
MAGICS = (
    b"BM",
    b"\x00\x00\x01\x00\x01\x00",
    b"\x00\x00\x02\x00\x01\x00",
    b"P6\n",
    b"P5\n",
    b"P4\n",
    b"Pf\n",
    b"qoif",
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",
    b"\xff\x4f\xff\x51",
    b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
)


@functools.cache
def seeds() -> dict[str, bytes]:
    made = {name: extended_image(name) for name in EXTENDED_SAMPLES}
    return made | {
        "bmp-header-huge": bmp_header(100_000, 100_000),
        "bmp-header-wide": bmp_header(30_000, 2),
        "pnm-header-huge": pnm_header(70_000, 70_000),
        "qoi-header-huge": qoi_header(9_000, 9_000),
        "icon-hiding-png": icon_hiding_a_large_png(1_000, 700),
        "heif-header-huge": heif_header(9_000, 9_000),
    }


def _forge_size(data: bytes, width: int, height: int) -> bytes:
    """Write a declared size where each of these formats keeps one."""
    if data[:2] == b"BM" and len(data) >= 26:
        sides = struct.pack("<ii", width & 0x7FFFFFFF, height & 0x7FFFFFFF)
        return data[:18] + sides + data[26:]
    if data[:4] == b"qoif" and len(data) >= 12:
        return data[:4] + struct.pack(">II", width & 0xFFFFFFFF, height & 0xFFFFFFFF) + data[12:]
    if data[:1] == b"P" and data.count(b"\n") >= 3:
        magic, _, rest = data.split(b"\n", 2)
        return magic + f"\n{width} {height}\n".encode() + rest
    if data[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and len(data) >= 8:
        return data[:6] + bytes([width & 0xFF, height & 0xFF]) + data[8:]
    at = data.find(b"ispe")  # HEIF: the item's spatial extent
    if data[4:8] == b"ftyp" and at > 0 and len(data) >= at + 16:
        sides = (width & 0xFFFFFFFF).to_bytes(4, "big") + (height & 0xFFFFFFFF).to_bytes(4, "big")
        return data[: at + 8] + sides + data[at + 16 :]
    return data


_SIDE = st.sampled_from([0, 1, 2, 255, 256, 3_001, 65_535, 100_000, 1 << 31, (1 << 32) - 1])


@functools.cache
def _mutations() -> st.SearchStrategy[tuple[Any, ...]]:
    offset = st.integers(0, 1 << 12)
    return st.one_of(
        st.tuples(st.just("flip"), offset, st.integers(0, 7)),
        st.tuples(st.just("set"), offset, st.integers(0, 255)),
        st.tuples(st.just("truncate"), offset),
        st.tuples(st.just("insert"), offset, st.binary(min_size=1, max_size=32)),
        st.tuples(st.just("delete"), offset, st.integers(1, 64)),
        st.tuples(st.just("after-magic"), st.sampled_from(MAGICS), st.binary(max_size=128)),
        st.tuples(st.just("forge-size"), _SIDE, _SIDE),
    )


def _mutated(seed: str, mutations: tuple[tuple[Any, ...], ...]) -> tuple[str, bytes]:
    data = seeds()[seed]
    for name, *args in mutations:
        data = (
            _forge_size(data, *args) if name == "forge-size" else images._APPLY[name](data, *args)
        )
    return seed, data


class InputHeaders(Target):
    name = "input-headers"
    summary = "BMP/ICO/PNM/QOI/JPEG 2000/HEIF header checks and Pillow decoding, mutated"
    suite_examples = 300

    def strategy(self) -> st.SearchStrategy[tuple[str, bytes]]:
        return st.builds(
            _mutated,
            st.sampled_from(sorted(seeds())),
            st.lists(_mutations(), max_size=3).map(tuple),
        )

    async def start(self) -> None:
        harden_vips()

    async def check(self, example: tuple[str, bytes]) -> str:
        _, data = example
        try:
            info = probe_image(data, limits=LIMITS)
        except ImageRejected as exc:
            if exc.code not in REFUSALS:
                raise Violation("undocumented_refusal", repr(exc)) from exc
            _same_from_a_file(data, exc.code)
            return f"refused {exc.code}"
        _same_from_a_file(data, info)
        _within(info, "accepted_over_limits")
        if not isinstance(info.format, ExtendedFormat):
            return f"accepted {info.format.value}"  # a libvips format, fuzzed elsewhere
        return _decoded(data, info)


def _decoded(data: bytes, info: ImageInfo) -> str:
    try:
        png, decoded, _ = as_png(data, info, LIMITS)
    except ImageRejected as exc:
        if exc.code not in DECODE_REFUSALS:
            raise Violation("undocumented_decode_refusal", repr(exc)) from exc
        return f"decode refused {exc.code}"
    _within(decoded, "decoded_over_limits")
    if not png.startswith(b"\x89PNG"):
        raise Violation("decoded_not_png", repr(png[:16]))
    return f"decoded {info.format.value}"


def _within(info: ImageInfo, kind: str) -> None:
    try:
        check_limits(info, LIMITS)
    except ImageRejected as exc:
        raise Violation(kind, exc.message) from exc


def _same_from_a_file(data: bytes, expected: ImageInfo | str) -> None:
    """`probe_file` (upload's path for spooled files) agrees with `probe_image`."""
    descriptor = os.memfd_create("fuzz-input")
    try:
        os.write(descriptor, data)
        try:
            got: ImageInfo | str = probe_file(descriptor, limits=LIMITS)
        except ImageRejected as exc:
            got = exc.code
        if got != expected:
            raise Violation("probe_file_differs", f"{got!r} != {expected!r}")
    finally:
        os.close(descriptor)
