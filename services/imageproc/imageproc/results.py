"""What a pipeline gives back, or why it cannot: plain data, no image library, so that
imageproc's service process (which never decodes an image) handles results without
loading libvips (its workers do, ``_worker``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline import ImageInfo

__all__ = ["PipelineResult", "ProcessingError", "StepResult"]


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
    info: dict[str, Any] | None = None
    """For `info` steps: the image as it was at that point (see `_info.describe_image`)."""


@dataclass(frozen=True, slots=True)
class PipelineResult:
    data: bytes
    info: ImageInfo
    content_type: str
    steps: tuple[StepResult, ...]
    encode_ms: float
    input_info: dict[str, Any]
    output_info: dict[str, Any]
    thumbnail: bytes = b""
    """The output's history thumbnail, when the job asked for one and it could be made
    (``_worker``: best effort, never a reason to fail the job)."""
