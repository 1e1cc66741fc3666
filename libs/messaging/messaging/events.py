"""Every event of the mesh, defined once: a frozen model named as a past-tense fact.

Domain events (on the events exchange) drive work; provenance events (on the provenance
exchange) only record steps. provenancedb records both kinds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

ExchangeKind = Literal["events", "provenance"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ImageRef(_Frozen):
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


class ErrorInfo(_Frozen):
    code: str
    message: str


class StepTiming(_Frozen):
    """One pipeline operation as imageproc applied it."""

    op: str
    params: dict[str, Any]
    duration_ms: float
    info: dict[str, Any] | None = None
    """For `info` operations: the image at that point of the pipeline."""


class Event(_Frozen):
    """Base of all events. `type` is the CloudEvents type and the routing key."""

    type: ClassVar[str]
    exchange: ClassVar[ExchangeKind]

    job_id: str


class ImageUploaded(Event):
    """A user's image passed validation, is stored in the input bucket and awaits processing."""

    type: ClassVar[str] = "image.uploaded"
    exchange: ClassVar[ExchangeKind] = "events"

    input: ImageRef
    pipeline: list[dict[str, Any]]
    filename: str | None = None
    """The name the client gave; informational only, never used as a path."""
    created_at: datetime


class ProcessingStarted(Event):
    type: ClassVar[str] = "job.processing-started"
    exchange: ClassVar[ExchangeKind] = "provenance"

    input: ImageRef
    pipeline: list[dict[str, Any]]


class ImageProcessed(Event):
    """The pipeline ran and its output is stored in the output bucket."""

    type: ClassVar[str] = "image.processed"
    exchange: ClassVar[ExchangeKind] = "events"

    input: ImageRef
    output: ImageRef
    pipeline: list[dict[str, Any]]
    steps: list[StepTiming]
    duration_ms: float


class JobFailed(Event):
    """The job cannot succeed; `error.code` says why in machine terms."""

    type: ClassVar[str] = "job.failed"
    exchange: ClassVar[ExchangeKind] = "events"

    error: ErrorInfo
    input: ImageRef | None = None
    pipeline: list[dict[str, Any]] = Field(default_factory=list)


ALL_EVENTS: tuple[type[Event], ...] = (ImageUploaded, ProcessingStarted, ImageProcessed, JobFailed)
EVENTS_BY_TYPE: dict[str, type[Event]] = {cls.type: cls for cls in ALL_EVENTS}
