"""Pure synchronous pyvips pipelines: bytes and operations in, bytes and metadata out.

No asyncio and no I/O here: callers run ``run_pipeline`` in a thread pool. The
input is untrusted, so it is probed against the limits before anything is decoded.
Only the first frame of animated or multi-page inputs is processed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyvips

from pipeline import (
    ImageFormat,
    ImageInfo,
    ImageLimits,
    ImageRejected,
    Operation,
    Thumbnail,
    check_limits,
    probe_image,
)

from ._canvas import Canvas
from ._encode import encode, start_format
from .ops import OPERATIONS
from .ops.geometry import thumbnail_from_buffer

__all__ = [
    "OPERATIONS",
    "PipelineResult",
    "ProcessingError",
    "StepResult",
    "run_pipeline",
]

# Reject truncated files instead of padding them with grey.
_LOAD_OPTIONS = "fail_on=truncated"


class ProcessingError(Exception):
    """The job can never succeed with this input and pipeline (do not retry)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ProcessingError(code={self.code!r}, message={self.message!r})"


@dataclass(frozen=True, slots=True)
class StepResult:
    """One applied operation. libvips is lazy: most pixel work is timed in ``encode_ms``."""

    op: str
    params: dict[str, Any]
    duration_ms: float


@dataclass(frozen=True, slots=True)
class PipelineResult:
    data: bytes
    info: ImageInfo
    content_type: str
    steps: tuple[StepResult, ...]
    encode_ms: float


def run_pipeline(data: bytes, ops: Sequence[Operation], *, limits: ImageLimits) -> PipelineResult:
    """Apply ``ops`` to the image in ``data`` and encode the result.

    Raises ProcessingError (codes ``unsupported_type``, ``undecodable``, ``too_many_pixels``,
    ``too_large_side``, ``too_many_frames``, ``operation_failed``).
    """
    try:
        info = probe_image(data, limits=limits)
    except ImageRejected as exc:
        raise ProcessingError(exc.code, exc.message) from None
    canvas, steps = _apply_all(data, ops, start_format(info.format), limits)
    started = time.perf_counter()
    with _vips_errors(f"encode as {canvas.format.value}", data):
        encoded = encode(canvas)
    encode_ms = _elapsed_ms(started)
    return PipelineResult(
        data=encoded,
        info=_output_info(canvas),
        content_type=canvas.format.content_type,
        steps=steps,
        encode_ms=encode_ms,
    )


def _apply_all(
    data: bytes, ops: Sequence[Operation], fmt: ImageFormat, limits: ImageLimits
) -> tuple[Canvas, tuple[StepResult, ...]]:
    steps: list[StepResult] = []
    canvas: Canvas | None = None
    for number, op in enumerate(ops, start=1):
        started = time.perf_counter()
        with _vips_errors(f"operation {number} ({op.op})", data):
            if canvas is None and isinstance(op, Thumbnail):
                # Thumbnail straight from the bytes lets libvips shrink on load.
                canvas = Canvas(thumbnail_from_buffer(data, op, _LOAD_OPTIONS), fmt)
            else:
                canvas = OPERATIONS[op.op](canvas or Canvas(_load(data), fmt), op)
        _check_result(number, op.op, canvas, limits)
        params = op.model_dump(mode="json", exclude={"op"}, exclude_none=True)
        steps.append(StepResult(op.op, params, _elapsed_ms(started)))
    if canvas is None:
        with _vips_errors("load", data):
            canvas = Canvas(_load(data), fmt)
    return canvas, tuple(steps)


def _load(data: bytes) -> Any:
    image = pyvips.Image.new_from_buffer(data, _LOAD_OPTIONS, access="sequential")
    return image.autorot()


# --- encoding -----------------------------------------------------------------------


def _output_info(canvas: Canvas) -> ImageInfo:
    image = canvas.image
    return ImageInfo(
        format=canvas.format,
        width=image.width,
        height=image.height,
        pages=1,
        bands=image.bands,
        has_alpha=bool(image.hasalpha()),
    )


# --- errors -------------------------------------------------------------------------


@contextmanager
def _vips_errors(label: str, data: bytes) -> Iterator[None]:
    """Turn a pyvips.Error into a ProcessingError naming the step it came from."""
    try:
        yield
    except pyvips.Error as exc:
        raise _from_vips(label, data, exc) from exc


def _from_vips(label: str, data: bytes, exc: Any) -> ProcessingError:
    # libvips decodes lazily, so a corrupt body surfaces inside whichever step first
    # reads pixels, and its error text varies; decoding the input again tells for sure.
    if not _decodes(data):
        return ProcessingError("undecodable", f"{label}: the image data is corrupt or truncated")
    detail = str(exc.detail).strip().splitlines()
    reason = detail[0] if detail else str(exc.message)
    return ProcessingError("operation_failed", f"{label} failed: {reason}")


def _decodes(data: bytes) -> bool:
    try:
        pyvips.Image.new_from_buffer(data, _LOAD_OPTIONS, access="sequential").avg()
    except pyvips.Error:
        return False
    return True


def _check_result(number: int, name: str, canvas: Canvas, limits: ImageLimits) -> None:
    """Stop operations (e.g. an upscaling thumbnail) from building an over-limit image."""
    try:
        check_limits(_output_info(canvas), limits)
    except ImageRejected as exc:
        raise ProcessingError(
            exc.code, f"operation {number} ({name}): result {exc.message}"
        ) from None


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
