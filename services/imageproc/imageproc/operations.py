"""Pure synchronous pyvips pipelines: bytes and operations in, bytes and metadata out.

No asyncio and no I/O here: callers run ``run_pipeline`` in a thread pool. The
input is untrusted, so it is probed against the limits before anything is decoded.
Animated GIF and WebP inputs are processed frame by frame and stay animated when saved
as GIF or WebP; other formats get the first frame. Every pipeline runs under a wall-clock
deadline that stops libvips mid-computation (see ``_deadline``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Literal

import pyvips
import structlog

from pipeline import (
    ExtendedFormat,
    ImageFormat,
    ImageInfo,
    ImageLimits,
    ImageRejected,
    Operation,
    Thumbnail,
    check_limits,
    probe_image,
)
from pipeline.output import Info

from . import _deadline
from ._canvas import Canvas
from ._deadline import deadline, guard
from ._encode import encode, start_format
from ._extended import as_png
from ._info import describe_bytes, describe_image
from .ops import OPERATIONS, OpFunction
from .ops.geometry import autorotate_at_load, thumbnail_from_buffer
from .ops.output import OPERATIONS as SAVE_TIME_OPS
from .ops.tone import WHOLE_IMAGE_SOURCES
from .results import PipelineResult, ProcessingError, StepResult

__all__ = [
    "OPERATIONS",
    "PipelineResult",
    "ProcessingError",
    "StepResult",
    "run_pipeline",
]

# Reject corrupt data (truncation, bad checksums) instead of padding it with grey; real
# photographs load cleanly at this level (checked on the Debian wallpaper photos).
_LOAD_OPTIONS = "fail_on=error"
ANIMATED_FORMATS = frozenset({ImageFormat.GIF, ImageFormat.WEBP})
Access = Literal["sequential", "random"]
log = structlog.get_logger("imageproc")


class _OutOfOrderRead(ProcessingError):
    """libvips' sequential read was asked for lines it had already passed."""


def run_pipeline(
    data: bytes,
    ops: Sequence[Operation],
    *,
    limits: ImageLimits,
    timeout: float | None = None,
) -> PipelineResult:
    """Apply ``ops`` to the image in ``data`` and encode the result.

    Raises ProcessingError (codes ``unsupported_type``, ``undecodable``, ``too_many_pixels``,
    ``too_large_side``, ``too_many_frames``, ``invalid_parameter``, ``operation_failed``,
    ``timeout``, ``memory_budget_exceeded``).
    """
    try:
        info = probe_image(data, limits=limits)
    except ImageRejected as exc:
        raise ProcessingError(exc.code, exc.message) from None
    with deadline(timeout):
        input_info = None
        if isinstance(info.format, ExtendedFormat):
            data, info, input_info = _decoded_extended(data, info, limits)
        try:
            canvas, steps, encoded, started = _run(data, ops, info, limits, "sequential")
        except _OutOfOrderRead:
            # A sequential read keeps a window of lines behind the decoder; under threading
            # an operation that reaches far (a large blur) sometimes asks behind it (about
            # 1 in 5 for a sigma-90 blur of a 16 MP photo). Decoding the image whole serves
            # any order, at the cost of holding it in memory (within the memory budget).
            log.info("sequential_read_out_of_order_retrying_random_access")
            canvas, steps, encoded, started = _run(data, ops, info, limits, "random")
    return PipelineResult(
        data=encoded,
        info=_output_info(canvas),
        content_type=canvas.format.content_type,
        steps=steps,
        encode_ms=_elapsed_ms(started),
        input_info=input_info or describe_bytes(data),
        output_info=describe_bytes(encoded),
    )


def _decoded_extended(
    data: bytes, info: ImageInfo, limits: ImageLimits
) -> tuple[bytes, ImageInfo, dict[str, Any]]:
    """An input-only format (BMP, ICO, PNM, QOI, JPEG 2000) decoded by Pillow, as PNG."""
    with _step_errors("load", data):
        try:
            return as_png(data, info, limits)
        except ImageRejected as exc:  # a ValueError, which would read as a bad parameter
            raise ProcessingError(exc.code, exc.message) from None


def _run(
    data: bytes, ops: Sequence[Operation], info: ImageInfo, limits: ImageLimits, access: Access
) -> tuple[Canvas, tuple[StepResult, ...], bytes, float]:
    canvas, steps = _apply_all(data, ops, info, limits, access)
    started = time.perf_counter()
    with _step_errors(f"encode as {canvas.format.value}", data):
        canvas = _for_output(canvas)
        encoded = encode(canvas)
    return canvas, steps, encoded, started


def _apply_all(
    data: bytes, ops: Sequence[Operation], info: ImageInfo, limits: ImageLimits, access: Access
) -> tuple[Canvas, tuple[StepResult, ...]]:
    steps: list[StepResult] = []
    canvas: Canvas | None = None
    plan = _shrink_first(ops)
    upright = autorotate_at_load(ops)
    for number, op in plan:
        label = f"operation {number} ({op.op})"
        started = time.perf_counter()
        with _step_errors(label, data):
            _deadline.check()
            if canvas is None and isinstance(op, Thumbnail) and access == "sequential":
                # Thumbnail straight from the bytes lets libvips shrink on load.
                image = thumbnail_from_buffer(data, op, _load_options(info), autorotate=upright)
                canvas = Canvas(guard(image), start_format(info.format), pages=_pages(info))
            else:
                canvas = canvas or _load(data, info, upright, access)
                if (in_memory := _materialise(canvas, op)) is not None:
                    canvas = in_memory  # the last hold on the images it was computed from
                    canvas = replace(canvas, image=_deadline.rebase(canvas.image))
                canvas = _apply(OPERATIONS[op.op], canvas, op)
        _check_result(label, canvas, limits)
        params = op.model_dump(mode="json", exclude={"op"}, exclude_none=True)
        snapshot = _snapshot(canvas) if isinstance(op, Info) else None
        steps.append(StepResult(op.op, params, _elapsed_ms(started), snapshot))
    if canvas is None:
        with _step_errors("load", data):
            canvas = _load(data, info, upright, access)
    return canvas, tuple(steps)


def _materialise(canvas: Canvas, op: Operation) -> Canvas | None:
    """The canvas with what `op` reads whole computed into memory (None when it reads
    nothing whole). Nothing else holds the images it was computed from: once the caller
    drops `canvas`, `_deadline.rebase` can let the loaded image go, its decoder with it."""
    source = WHOLE_IMAGE_SOURCES.get(op.op)
    image = source(canvas, op) if source is not None else None
    return None if image is None else replace(canvas, image=image.copy_memory())


def _snapshot(canvas: Canvas) -> dict[str, Any]:
    return describe_image(canvas.image, canvas.format, pages=canvas.pages)


def _shrink_first(ops: Sequence[Operation]) -> list[tuple[int, Operation]]:
    """Numbered operations, with a leading thumbnail moved to the front when only save-time
    operations precede it: they do not touch pixels, so the result is identical, and the
    thumbnail can then shrink on load."""
    numbered = list(enumerate(ops, start=1))
    for index, (_, op) in enumerate(numbered):
        if isinstance(op, Thumbnail):
            return [numbered[index], *numbered[:index], *numbered[index + 1 :]]
        if op.op not in SAVE_TIME_OPS:
            break
    return numbered


def _apply(fn: OpFunction, canvas: Canvas, op: Operation) -> Canvas:
    """Apply one operation; an animation frame by frame."""
    if canvas.pages == 1:
        return fn(canvas, op)
    image = canvas.image
    height = image.height // canvas.pages
    frames = [
        fn(replace(canvas, image=image.crop(0, top, image.width, height), pages=1), op)
        for top in range(0, height * canvas.pages, height)
    ]
    joined = pyvips.Image.arrayjoin([frame.image for frame in frames], across=1)
    return replace(
        frames[0], image=_with_animation(joined, image, frames[0].image.height), pages=canvas.pages
    )


def _with_animation(joined: Any, source: Any, frame_height: int) -> Any:
    joined = joined.copy()
    joined.set_type(pyvips.GValue.gint_type, "page-height", frame_height)
    for name, gtype in (("delay", pyvips.GValue.array_int_type), ("loop", pyvips.GValue.gint_type)):
        if name in source.get_fields():
            joined.set_type(gtype, name, source.get(name))
    return joined


def _for_output(canvas: Canvas) -> Canvas:
    """GIF and WebP keep every frame; other formats get the first one."""
    if canvas.pages == 1:
        return canvas
    image = canvas.image
    height = image.height // canvas.pages
    if canvas.format in ANIMATED_FORMATS:
        return replace(canvas, image=_with_animation(image, image, height))
    return replace(canvas, image=image.crop(0, 0, image.width, height), pages=1)


def _pages(info: ImageInfo) -> int:
    return info.pages if info.format in ANIMATED_FORMATS else 1


def _load_options(info: ImageInfo) -> str:
    # n=-1: every frame of an animation, stacked vertically ("toilet roll").
    return f"{_LOAD_OPTIONS},n=-1" if _pages(info) > 1 else _LOAD_OPTIONS


def _load(data: bytes, info: ImageInfo, upright: bool, access: Access) -> Canvas:
    image = pyvips.Image.new_from_buffer(data, _load_options(info), access=access)
    if upright and _pages(info) == 1:
        image = image.autorot()
    return Canvas(guard(image), start_format(info.format), pages=_pages(info))


# --- encoding -----------------------------------------------------------------------


def _output_info(canvas: Canvas) -> ImageInfo:
    image = canvas.image
    return ImageInfo(
        format=canvas.format,
        width=image.width,
        height=image.height // canvas.pages,
        pages=canvas.pages,
        bands=image.bands,
        has_alpha=bool(image.hasalpha()),
    )


# --- errors -------------------------------------------------------------------------


@contextmanager
def _step_errors(label: str, data: bytes) -> Iterator[None]:
    """Turn whatever a step raises into a ProcessingError naming the step."""
    try:
        yield
    except pyvips.Error as exc:
        timed_out = _deadline.exceeded()
        if timed_out is not None:
            raise ProcessingError("timeout", f"{label}: {timed_out}") from exc
        raise _from_vips(label, data, exc) from exc
    except _deadline.DeadlineExceeded as exc:
        raise ProcessingError("timeout", f"{label}: {exc}") from exc
    except MemoryError as exc:
        raise ProcessingError("memory_budget_exceeded", f"{label}: out of memory") from exc
    except ValueError as exc:
        # Operations raise ValueError for parameters that do not fit this image.
        raise ProcessingError("invalid_parameter", f"{label}: {exc}") from exc


UNDECODABLE_INPUT = "the input image cannot be decoded: its data is corrupt or truncated"


def _from_vips(label: str, data: bytes, exc: Any) -> ProcessingError:
    text = f"{exc.message} {exc.detail}".lower()
    if "out of memory" in text:
        return ProcessingError("memory_budget_exceeded", f"{label}: out of memory")
    if "out of order read" in text:
        return _OutOfOrderRead("operation_failed", f"{label} failed: out of order read")
    # libvips decodes lazily, so a corrupt body surfaces inside whichever step first
    # reads pixels (often the encoder), and its error text varies; decoding the input
    # again tells for sure. What failed is then decoding the input, whichever step
    # noticed: the message says so, not "encode as webp: ...".
    if not _decodes(data):
        log.info("input_undecodable", noticed_in=label)
        return ProcessingError("undecodable", UNDECODABLE_INPUT)
    detail = str(exc.detail).strip().splitlines()
    reason = detail[0] if detail else str(exc.message)
    return ProcessingError("operation_failed", f"{label} failed: {reason}")


def _decodes(data: bytes) -> bool:
    try:
        pyvips.Image.new_from_buffer(data, _LOAD_OPTIONS, access="sequential").avg()
    except pyvips.Error:
        return False
    return True


def _check_result(label: str, canvas: Canvas, limits: ImageLimits) -> None:
    """Stop operations (e.g. an upscaling thumbnail) from building an over-limit image."""
    try:
        check_limits(_output_info(canvas), limits)
    except ImageRejected as exc:
        raise ProcessingError(exc.code, f"{label}: result {exc.message}") from None


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
