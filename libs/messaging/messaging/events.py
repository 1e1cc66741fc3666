"""Every event of the mesh, defined once: a frozen model named as a past-tense fact.

Domain events (on the events exchange) drive work; provenance events (on the provenance
exchange) only record steps. provenancedb records both kinds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from ._values import (
    MAX_DURATION_MS,
    MAX_OPERATIONS,
    ClientInfo,
    ErasedObject,
    ErasedRole,
    ErrorInfo,
    FrozenModel,
    ImageRef,
    OperationTiming,
    StepTiming,
    TakenComputation,
)

__all__ = [
    "ALL_EVENTS",
    "EVENTS_BY_TYPE",
    "LOCAL_PRINCIPAL",
    "MAX_DURATION_MS",
    "MAX_OPERATIONS",
    "PRINCIPAL_PATTERN",
    "CancelRequested",
    "ClientInfo",
    "ErasedObject",
    "ErasedRole",
    "ErrorInfo",
    "Event",
    "ExchangeKind",
    "FrozenModel",
    "ImageProcessed",
    "ImageRef",
    "ImageReused",
    "ImageStored",
    "ImageUploaded",
    "JobCancelled",
    "JobErased",
    "JobFailed",
    "JobRetried",
    "MessageParked",
    "OperationApplied",
    "OperationTiming",
    "ProcessingStarted",
    "RetryScheduled",
    "StepTiming",
    "TakenComputation",
    "UploadReceived",
    "WebhookAttempted",
    "WebhookOutcome",
]

ExchangeKind = Literal["events", "provenance"]
LOCAL_PRINCIPAL = "local"
"""Who everyone is when no API tokens are configured (local development)."""
PRINCIPAL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$"
"""A principal's name: a token's name, a proxy's user (often an e-mail address)."""


class Event(FrozenModel):
    """Base of all events. `type` is the CloudEvents type and the routing key."""

    type: ClassVar[str]
    exchange: ClassVar[ExchangeKind]
    published_by: ClassVar[tuple[str, ...]] = ()
    """The services that publish it (for the AsyncAPI document)."""

    job_id: str


class UploadReceived(Event):
    """An upload passed validation and its bytes are stored in the input bucket: who sent
    what, and where it is."""

    type: ClassVar[str] = "upload.received"
    exchange: ClassVar[ExchangeKind] = "provenance"
    published_by: ClassVar[tuple[str, ...]] = ("upload",)

    client: ClientInfo
    principal: str = Field(default=LOCAL_PRINCIPAL, pattern=PRINCIPAL_PATTERN)
    """On whose behalf the upload service accepted the image (the job's owner)."""
    filename: str | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)
    format: str
    width: int = Field(ge=0)
    height: int = Field(ge=0)
    input: ImageRef | None = None
    """The stored input (its S3 location). None only in documents recorded before upload
    stored the input first (they have an `image.stored` input instead)."""


class ImageStored(Event):
    """An image was written to S3: a job's input (by upload) or its output (by the runner).

    No longer published: `upload.received` carries the stored input and `image.processed`
    the stored output. Kept so that documents recorded before still parse, render and
    audit; nobody may publish it (no `published_by`)."""

    type: ClassVar[str] = "image.stored"
    exchange: ClassVar[ExchangeKind] = "provenance"

    role: Literal["input", "output"]
    image: ImageRef
    derived_from: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """For an output: the SHA-256 of the input it was made from."""


class ImageUploaded(Event):
    """A user's image passed validation, is stored in the input bucket and awaits processing
    (the job is queued)."""

    type: ClassVar[str] = "image.uploaded"
    exchange: ClassVar[ExchangeKind] = "events"
    published_by: ClassVar[tuple[str, ...]] = ("upload",)

    input: ImageRef
    pipeline: list[dict[str, Any]]
    filename: str | None = None
    """The name the client gave; informational only, never used as a path."""
    created_at: datetime
    principal: str = Field(default=LOCAL_PRINCIPAL, pattern=PRINCIPAL_PATTERN)
    """The job's owner: who submitted it (fair dispatch and every read are per owner)."""
    input_new: bool = False
    """The input store had no object with these bytes before this job: no earlier job used
    them, so no earlier output can be reused (the runner does not look)."""
    callback_url: str | None = Field(default=None, max_length=2048)
    """Where the owner asked to be told of the job's end (a webhook): vetted at intake
    (http(s), no userinfo, global addresses only unless WEBHOOK_ALLOWED_NETWORKS). Never
    shown in the job's status (it may carry a token); `webhook.attempted` records it
    without its query."""
    retry_of: str | None = None
    """The failed or cancelled job this one retries (`POST /api/v1/jobs/{id}/retry`): the
    same stored input, that job's pipeline or a new one. That job's `job.retried` names
    this one."""


class ProcessingStarted(Event):
    type: ClassVar[str] = "job.processing-started"
    exchange: ClassVar[ExchangeKind] = "provenance"
    published_by: ClassVar[tuple[str, ...]] = ("imageproc_runner",)

    input: ImageRef
    pipeline: list[dict[str, Any]]
    attempt: int = Field(default=1, ge=1)


class OperationApplied(Event):
    """imageproc applied one operation of a job's pipeline (in the order it ran it).

    No longer published: each operation is a step of the job's `image.processed`
    (`StepTiming`), which the runner publishes from imageproc's reply. Kept so that
    documents recorded before still parse, render and audit; nobody may publish it (no
    `published_by`)."""

    type: ClassVar[str] = "operation.applied"
    exchange: ClassVar[ExchangeKind] = "provenance"

    index: int = Field(ge=0)
    op: str
    params: dict[str, Any]
    duration_ms: float = Field(ge=0, le=MAX_DURATION_MS, allow_inf_nan=False)
    input_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """The job's input (the operation itself works on an intermediate image, never stored)."""
    attempt: int = Field(default=1, ge=1)
    info: dict[str, Any] | None = None
    """For `info` operations: the image at that point of the pipeline."""


class ImageProcessed(Event):
    """The pipeline ran and its output is stored in the output bucket."""

    type: ClassVar[str] = "image.processed"
    exchange: ClassVar[ExchangeKind] = "events"
    published_by: ClassVar[tuple[str, ...]] = ("imageproc_runner",)

    input: ImageRef
    output: ImageRef
    pipeline: list[dict[str, Any]]
    steps: list[StepTiming]
    """Every operation applied, in pipeline order (imageproc's reply)."""
    duration_ms: float = Field(ge=0, le=MAX_DURATION_MS, allow_inf_nan=False)
    attempt: int | None = Field(default=None, ge=1)
    """The attempt that computed the output. None only in documents recorded before the
    steps were the operations' record (they have `operation.applied` documents)."""
    engine: str | None = Field(default=None, max_length=512)
    """What applied the operations (imageproc, libvips, ... versions: `imageproc.run`'s
    reply); None in documents recorded before it was said."""


class ImageReused(Event):
    """The job asked for work already done: the same input bytes, canonical pipeline and
    engine as an earlier succeeded job. It takes that job's output (the same object) and
    succeeds without imageproc (`imageproc_runner/reuse.py`)."""

    type: ClassVar[str] = "image.reused"
    exchange: ClassVar[ExchangeKind] = "events"
    published_by: ClassVar[tuple[str, ...]] = ("imageproc_runner",)

    input: ImageRef
    output: ImageRef
    """The earlier job's output: same bucket, key and sha256."""
    pipeline: list[dict[str, Any]]
    reused_from: str
    """The earlier job, whose computation made the output."""
    computation: str
    """The earlier job's `image.processed` event id: the activity that made the output."""
    engine: str
    """What computed it (imageproc, libvips, ... versions), part of the reuse key."""
    reuse_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    taken: TakenComputation | None = None
    """The computation's operations and time; None when its index entry predates them."""


class JobFailed(Event):
    """The job cannot succeed; `error.code` says why in machine terms."""

    type: ClassVar[str] = "job.failed"
    exchange: ClassVar[ExchangeKind] = "events"
    published_by: ClassVar[tuple[str, ...]] = ("upload", "imageproc_runner")

    error: ErrorInfo
    input: ImageRef | None = None
    pipeline: list[dict[str, Any]] = Field(default_factory=list)
    attempt: int | None = Field(default=None, ge=1)


class CancelRequested(Event):
    """A job's owner asked to cancel it (`POST /api/v1/jobs/{id}/cancel`) while upload knew
    it unfinished. Only a request: the runner decides, and records `job.cancelled` when it
    stops the job; a job that finished first keeps its outcome."""

    type: ClassVar[str] = "job.cancel-requested"
    exchange: ClassVar[ExchangeKind] = "events"
    published_by: ClassVar[tuple[str, ...]] = ("upload",)

    principal: str = Field(pattern=PRINCIPAL_PATTERN)
    """Who asked (the job's owner)."""


class JobCancelled(Event):
    """The runner stopped a job its owner cancelled: before it started, or after imageproc
    answered (the output is dropped, never stored). The job ends `cancelled`."""

    type: ClassVar[str] = "job.cancelled"
    exchange: ClassVar[ExchangeKind] = "events"
    published_by: ClassVar[tuple[str, ...]] = ("imageproc_runner",)

    principal: str = Field(pattern=PRINCIPAL_PATTERN)
    """Who asked for the cancellation (its `job.cancel-requested`)."""
    input: ImageRef
    pipeline: list[dict[str, Any]]
    attempt: int = Field(default=1, ge=1)
    while_processing: bool = False
    """Whether imageproc had run the pipeline (its output dropped) or the job had not
    started."""


class JobRetried(Event):
    """The owner of a failed or cancelled job retried it: `retry` is the new job, whose
    `image.uploaded` names this one (`retry_of`). A job may be retried more than once."""

    type: ClassVar[str] = "job.retried"
    exchange: ClassVar[ExchangeKind] = "events"
    published_by: ClassVar[tuple[str, ...]] = ("upload",)

    retry: str
    """The new job's id."""
    principal: str = Field(pattern=PRINCIPAL_PATTERN)
    """Who retried it (the job's owner)."""


class JobErased(Event):
    """The owner of a finished job erased it (`DELETE /api/v1/jobs/{id}`): its pixels are
    gone from S3 (`objects` says which objects, and which stay because another job uses
    them). Provenance stays append-only: the job's earlier documents keep the hashes, sizes
    and times, but no longer point at retrievable objects. The status keeps its outcome and
    shows `erased_at` and `erased_by`."""

    type: ClassVar[str] = "job.erased"
    exchange: ClassVar[ExchangeKind] = "events"
    published_by: ClassVar[tuple[str, ...]] = ("upload",)

    principal: str = Field(pattern=PRINCIPAL_PATTERN)
    """Who erased it (the job's owner)."""
    objects: list[ErasedObject] = Field(default_factory=list, max_length=64)


class RetryScheduled(Event):
    """Handling a job's message failed; it is tried again after `delay_seconds`."""

    type: ClassVar[str] = "job.retry-scheduled"
    exchange: ClassVar[ExchangeKind] = "provenance"
    published_by: ClassVar[tuple[str, ...]] = ("imageproc_runner",)

    queue: str
    attempt: int = Field(ge=1)
    """The attempt that failed."""
    delay_seconds: float = Field(ge=0, allow_inf_nan=False)
    error: str


class MessageParked(Event):
    """A job's message was moved to a parking lot, where an operator sees it."""

    type: ClassVar[str] = "job.parked"
    exchange: ClassVar[ExchangeKind] = "provenance"
    published_by: ClassVar[tuple[str, ...]] = ("imageproc_runner",)

    queue: str
    parking_queue: str
    attempts: int = Field(ge=1)
    error: str


WebhookOutcome = Literal["delivered", "retrying", "failed", "parked"]


class WebhookAttempted(Event):
    """upload tried once to tell a job's owner of its end (a POST to the job's
    `callback_url`): what the receiver answered and what follows. `delivered` (2xx);
    `retrying` (5xx, 408, 429, a timeout or connection error: tried again after a
    back-off); `parked` (the last such attempt: the message waits in
    `upload.webhooks.parking`); `failed` (any other answer, or a target refused: not
    retried). Not a step a job needs: a job whose webhook failed is complete."""

    type: ClassVar[str] = "webhook.attempted"
    exchange: ClassVar[ExchangeKind] = "provenance"
    published_by: ClassVar[tuple[str, ...]] = ("upload",)

    principal: str = Field(pattern=PRINCIPAL_PATTERN)
    """The job's owner, on whose behalf upload sent it (and whose key signed it)."""
    delivery: str = Field(max_length=128)
    """The `X-Imagemesh-Delivery` id: the same for every attempt of one notification."""
    attempt: int = Field(ge=1)
    url: str = Field(max_length=2048)
    """The target without its query and fragment (they may carry a token)."""
    job_status: str
    """The end the notification announced (succeeded, failed, cancelled)."""
    status_code: int | None = Field(default=None, ge=100, le=599)
    """The receiver's HTTP status; None when there was no answer (see `error`)."""
    error: str | None = Field(default=None, max_length=1000)
    duration_ms: float = Field(ge=0, le=MAX_DURATION_MS, allow_inf_nan=False)
    outcome: WebhookOutcome


ALL_EVENTS: tuple[type[Event], ...] = (
    UploadReceived,
    ImageStored,
    ImageUploaded,
    ProcessingStarted,
    OperationApplied,
    ImageProcessed,
    ImageReused,
    JobFailed,
    RetryScheduled,
    MessageParked,
    CancelRequested,
    JobCancelled,
    JobRetried,
    JobErased,
    WebhookAttempted,
)
EVENTS_BY_TYPE: dict[str, type[Event]] = {cls.type: cls for cls in ALL_EVENTS}
