"""The public API's bodies as models: the OpenAPI document's schemas come from these, and
the contract tests check the running service's answers against them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from messaging.queries import JobStatus


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Body):
    code: str = Field(description="machine-readable, e.g. too_large, invalid_pipeline")
    message: str = Field(description="human-readable, names the limit or the problem")


class ErrorBody(_Body):
    error: ErrorDetail


class Image(_Body):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)
    format: str
    width: int = Field(ge=0)
    height: int = Field(ge=0)
    info: dict[str, Any] | None = Field(
        default=None, description="colour space, bands, orientation, pages, EXIF summary"
    )
    content_type: str | None = Field(default=None, description="outputs only")


class Step(_Body):
    op: str
    params: dict[str, Any]
    duration_ms: float
    info: dict[str, Any] | None = None


class Job(_Body):
    id: str
    status: JobStatus
    created_at: str = Field(description="UTC, RFC 3339")
    updated_at: str = Field(description="UTC, RFC 3339")
    filename: str | None = Field(default=None, description="as the client gave it")
    owner: str | None = Field(
        default=None, description="the principal that submitted it (`local` without tokens)"
    )
    input: Image | None = None
    pipeline: list[dict[str, Any]] = Field(default_factory=list)
    output: Image | None = Field(default=None, description="on success")
    steps: list[Step] | None = Field(default=None, description="on success")
    error: ErrorDetail | None = Field(default=None, description="on failure")
    reused_from: str | None = Field(
        default=None,
        description="on success without computing: the earlier job whose output this job "
        "took (same input bytes, canonical pipeline and engine; `steps` is then empty)",
    )
    cancelled_by: str | None = Field(
        default=None, description="when cancelled: the principal that cancelled it"
    )
    erased_at: str | None = Field(
        default=None,
        description="when erased (`DELETE`): UTC, RFC 3339; its images are deleted (`/result`, "
        "`/input` and `/thumbnail` answer 410), its record stays",
    )
    erased_by: str | None = Field(default=None, description="when erased: the principal")
    retry_of: str | None = Field(
        default=None, description="the failed or cancelled job this one retries"
    )
    retried_by: list[str] | None = Field(
        default=None, description="the jobs that retry this one (`POST .../retry`), oldest first"
    )


class Accepted(_Body):
    id: str
    status: Literal["queued"]
    links: dict[str, str] = Field(
        description="self, result, events, provenance, input_lineage: paths on this service"
    )


class CancelAccepted(_Body):
    id: str
    status: JobStatus = Field(
        description="the status when asked (queued or processing); the job ends `cancelled`, "
        "or, if it finished first, keeps what it finished with"
    )
    links: dict[str, str] = Field(description="self, events: paths on this service")


class WebhookJob(_Body):
    id: str
    status: Literal["succeeded", "failed", "cancelled"]
    created_at: str | None = Field(description="UTC, RFC 3339")
    finished_at: str = Field(description="UTC, RFC 3339: when the mesh recorded the end")
    filename: str | None = Field(description="as the client gave it")
    owner: str = Field(description="the principal whose key signed this")
    output: Image | None = Field(default=None, description="on success")
    reused_from: str | None = Field(default=None, description="on success by reuse")
    error: ErrorDetail | None = Field(default=None, description="on failure")
    cancelled_by: str | None = Field(default=None, description="when cancelled")
    links: dict[str, str] = Field(
        description="self, page, provenance and (on success) result: under UPLOAD_PUBLIC_URL, "
        "or paths when it is not set"
    )


class WebhookNotification(_Body):
    """What a job's `callback_url` receives when the job ends."""

    event: Literal["job.succeeded", "job.failed", "job.cancelled"]
    delivery: str = Field(
        description="the same for every attempt of this notification (`X-Imagemesh-Delivery`): "
        "de-duplicate on it"
    )
    attempt: int = Field(ge=1)
    sent_at: str = Field(description="UTC, RFC 3339; signed with the body: refuse old ones")
    job: WebhookJob


class WebhookSecret(_Body):
    principal: str = Field(description="whose key it is: the caller's own")
    secret: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="the HMAC-SHA256 key (its text, as UTF-8 bytes) of this principal's "
        "webhook signatures",
    )
    generation: int = Field(
        ge=1, description="the key's generation: raised by the operator to rotate this key alone"
    )
    signature_header: Literal["X-Imagemesh-Signature"]
    algorithm: Literal["sha256"]


class RetryRequest(_Body):
    pipeline: list[Any] | None = Field(
        default=None,
        description='the new job\'s pipeline, a list of {"op": name, ...params} checked as a '
        "submission's (GET /api/v1/operations); absent or null: the retried job's",
    )


class RetryAccepted(Accepted):
    retry_of: str = Field(description="the retried job (its `retried_by` names this one)")


class JobPage(_Body):
    jobs: list[Job] = Field(description="newest first")
    next: str | None = Field(description="cursor for the next page (`before=`), or null")


class Operation(_Body):
    name: str
    description: str
    params: dict[str, Any] = Field(description="JSON Schema of the operation's parameters")


class Operations(_Body):
    operations: list[Operation]


class LineageLink(_Body):
    sha256: str
    depth: int = Field(ge=1)
    job_id: str = Field(description="the job that made this link")
    derived: str | None = Field(default=None, description="ancestors: the image made from it")
    source: str | None = Field(default=None, description="descendants: the image it came from")


class Lineage(_Body):
    sha256: str
    image: dict[str, Any] = Field(description="format, size, dimensions, S3 locations")
    produced_by: list[str] = Field(description="jobs whose output this image is")
    used_by: list[str] = Field(description="jobs that took this image as input")
    ancestors: list[LineageLink]
    descendants: list[LineageLink]


class About(_Body):
    service: str
    version: str
    links: dict[str, str] = Field(
        description="API documents, and operator consoles: fauxton, rabbitmq_console"
    )
    input_formats: list[str] = Field(
        description="the image formats an upload may be in, decided by its content "
        "(jpeg, png, webp, gif, tiff, avif; input only: bmp, ico, pnm, qoi, jp2, heif)"
    )
    limits: dict[str, int] = Field(
        description="what an upload may be: image_max_bytes, image_max_pixels, image_max_side, "
        "pipeline_max_ops; what one results.zip may hold: zip_max_jobs, zip_max_bytes"
    )


class Me(_Body):
    principal: str | None = Field(description="who this request acts for; null: not signed in")
    auditor: bool = Field(description="reads every job and who uploaded it (UPLOAD_AUDITORS)")
    sign_in: bool = Field(description="the server needs a principal (API tokens are on)")


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str


class ProvDocument(BaseModel):
    """W3C PROV-JSON (https://www.w3.org/submissions/prov-json/)."""

    model_config = ConfigDict(extra="allow")

    prefix: dict[str, str]
    activity: dict[str, dict[str, Any]] = Field(default_factory=dict)
    entity: dict[str, dict[str, Any]] = Field(default_factory=dict)
    agent: dict[str, dict[str, Any]] = Field(default_factory=dict)


class ProgressStep(BaseModel):
    """One step of a job as its event stream (`event: step`) sends it: what every step
    says, and the fields of its kind (more may come: a client ignores what it does not
    know)."""

    model_config = ConfigDict(extra="allow")

    id: str | None = Field(
        default=None, description="the mesh event's id (also the SSE `id`): sent once each"
    )
    type: str = Field(description="the mesh's event type, e.g. operation.applied, job.failed")
    time: str = Field(description="when the mesh recorded it (ISO 8601, UTC)")
    service: str = Field(description="the service that did it")
    operation: str | None = Field(default=None, description="operation.applied")
    index: int | None = Field(default=None, ge=0, description="the operation's position")
    attempt: int | None = Field(default=None, ge=1, description="which attempt")
    duration_ms: float | None = Field(default=None, ge=0)
    role: str | None = Field(default=None, description="image.stored: input or output")
    stored: bool | None = Field(default=None, description="upload.received: input stored")
    reused_from: str | None = Field(default=None, description="image.reused: the job")
    operations: list[dict[str, Any]] | None = Field(
        default=None, description="image.processed: each operation applied, with its time"
    )
    error: Any = Field(default=None, description="job.failed, retries: what went wrong")
