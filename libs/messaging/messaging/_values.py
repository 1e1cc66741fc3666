"""The values events carry: images, errors, timings, erased objects (`messaging.events`
re-exports each). Frozen like the events, and described in the AsyncAPI document by their
field docstrings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_DURATION_MS",
    "MAX_OPERATIONS",
    "ClientInfo",
    "ErasedObject",
    "ErasedRole",
    "ErrorInfo",
    "FrozenModel",
    "ImageRef",
    "OperationTiming",
    "StepTiming",
    "TakenComputation",
]

MAX_DURATION_MS = 7 * 24 * 3600 * 1000
"""No step of a job takes a week: a longer (or NaN, infinite) duration is not a fact."""
MAX_OPERATIONS = 100
"""The most operations a pipeline may have (the ceiling of `PIPELINE_MAX_OPS`)."""


class FrozenModel(BaseModel):
    # A field's docstring is its description in the AsyncAPI document's schemas.
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class ImageRef(FrozenModel):
    """An image stored in S3, identified by its content."""

    bucket: str
    key: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)
    format: str
    width: int = Field(ge=0)
    height: int = Field(ge=0)
    content_type: str
    info: dict[str, Any] | None = None
    """What imageproc read from the image: colour space, bands, orientation, pages, an
    EXIF summary (never GPS coordinates). Set once imageproc has seen the image."""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class ErrorInfo(FrozenModel):
    code: str
    message: str


class StepTiming(FrozenModel):
    """One pipeline operation as imageproc applied it (its index is its place in
    `ImageProcessed.steps`): what an `operation.applied` document recorded before."""

    op: str
    params: dict[str, Any]
    duration_ms: float = Field(ge=0, le=MAX_DURATION_MS, allow_inf_nan=False)
    info: dict[str, Any] | None = None
    """For `info` operations: the image at that point of the pipeline."""


class ClientInfo(FrozenModel):
    """Where an upload came from, as the upload service saw it."""

    address: str | None = None
    user_agent: str | None = Field(default=None, max_length=512)


class OperationTiming(FrozenModel):
    """One operation of a computation, as a progress view shows it: name and time."""

    op: str
    duration_ms: float = Field(ge=0, le=MAX_DURATION_MS, allow_inf_nan=False)


class TakenComputation(FrozenModel):
    """What a reuse took, as the earlier job's `image.processed` said it (its operations,
    time and attempt): a progress view shows the computation at the reuse without reading
    the earlier job's record back."""

    duration_ms: float = Field(ge=0, le=MAX_DURATION_MS, allow_inf_nan=False)
    attempt: int | None = Field(default=None, ge=1)
    operations: list[OperationTiming] = Field(max_length=MAX_OPERATIONS)


ErasedRole = Literal["input", "output", "thumbnail", "computation"]


class ErasedObject(FrozenModel):
    """One stored object an erasure was about: deleted, or kept (and why)."""

    role: ErasedRole
    """The job's input or output image, the output's thumbnail, or the reuse index's
    entry (`computations/<key>.json`) that pointed later jobs at the output."""
    bucket: str
    key: str
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    deleted: bool
    kept_because: str | None = None
    """Why a shared object stays (another job that is not erased uses it)."""
