"""What each RPC route takes and answers, as pydantic models (like the events).

`topology` declares every route once with its request and reply model
(`RpcRoute[Request, Reply]`); `Broker.call` and `Broker.serve` check both sides against
them, so mypy sees a caller and its server agree, and each side validates what it
receives. On the wire nothing changed: a model travels as the JSON object `RpcMessage`
carries as its meta, with the binary payload (an image) beside it as raw bytes.

Requests are strict where a caller's mistake must not pass (the provenancedb queries in
`queries`); replies ignore fields they do not know, so a server may add one before its
callers read it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from .events import StepTiming
from .queries import JobCountsRequest, JobsRequest, LineageRequest

__all__ = [
    "EngineReply",
    "EngineRequest",
    "FoundDocument",
    "FoundJob",
    "FoundLineage",
    "JobCounts",
    "JobCountsRequest",
    "JobObjects",
    "JobPage",
    "JobRequest",
    "JobsRequest",
    "LineageRequest",
    "ObjectUse",
    "RecordReply",
    "RecordRequest",
    "RecordedEvent",
    "RunReply",
    "RunRequest",
]


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Reply(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# --- imageproc ---------------------------------------------------------------------------


class RunRequest(_Request):
    """`imageproc.run`: the pipeline to apply to the image in the payload. The pipeline is
    any JSON here: imageproc's own parser (`pipeline.parse_pipeline`) judges it and
    answers `invalid_pipeline`, whatever upload already checked."""

    pipeline: JsonValue = Field(default_factory=list)
    thumbnail: bool = False
    """Also make the output's history thumbnail (`messaging.thumbnails`), in the same
    call: best effort, it never fails the job (`RunReply.thumbnail_bytes`)."""


class RunReply(_Reply):
    """The output image (in the payload), what it is, and how it was made."""

    format: str
    """The output's format: the runner takes its content type from this (allow-list)."""
    content_type: str | None = None
    width: int
    height: int
    bytes: int | None = None
    steps: list[StepTiming] = Field(default_factory=list)
    """Every operation applied, in pipeline order: the runner records them."""
    encode_ms: float = 0.0
    input_info: dict[str, Any] | None = None
    output_info: dict[str, Any] | None = None
    engine: str | None = None
    """What computed the output (`imageproc/engine.py`): the runner's reuse key."""
    thumbnail_bytes: int = Field(default=0, ge=0)
    """The payload's last `thumbnail_bytes` are the output's thumbnail (WebP), when the
    request asked for one and it could be made; 0: none, the payload is the output."""


class EngineRequest(_Request):
    """`imageproc.engine` takes no parameters (a request with any is refused)."""


class EngineReply(_Reply):
    engine: str


# --- provenancedb ------------------------------------------------------------------------


class RecordedEvent(_Request):
    """One event to record: its envelope (`Envelope.as_dict`) and its body."""

    envelope: dict[str, Any]
    event: dict[str, Any]


class RecordRequest(_Request):
    """`provenancedb.record`: events recorded synchronously, in order."""

    events: list[RecordedEvent] = Field(min_length=1)


class RecordReply(_Reply):
    recorded: int
    created: int


class JobRequest(_Request):
    """`provenancedb.job-status` and `provenancedb.job-provenance`: one job, by id."""

    model_config = ConfigDict(strict=True)
    job_id: str


class FoundJob(_Reply):
    """The job folded from its events, with its `owner` for the caller to check."""

    found: bool
    job: dict[str, Any] | None = None


class FoundDocument(_Reply):
    """The job's whole history as one W3C PROV-JSON document."""

    found: bool
    document: dict[str, Any] | None = None


class FoundLineage(_Reply):
    found: bool
    lineage: dict[str, Any] | None = None


class JobPage(_Reply):
    """A page of jobs, newest first; `next` is the cursor of the following page."""

    jobs: list[dict[str, Any]]
    next: str | None = None


class JobCounts(_Reply):
    """A principal's jobs per status (`queued`: accepted, not started yet)."""

    queued: int = 0
    processing: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


class ObjectUse(_Reply):
    """One stored object of a job, and the other jobs (not erased) that use it too."""

    role: str
    """`input`, `output` or `thumbnail` (the output's, `messaging.thumbnails`)."""
    bucket: str
    key: str
    sha256: str
    used_by: list[str] = Field(default_factory=list)
    """Other jobs, of any principal, that are not erased and use the same object: an input
    is content-addressed (any job of the same bytes), an output is shared through reuse,
    a thumbnail by every output of the same bytes. At most
    `provenancedb.sharing.MAX_USERS` are looked at."""
    more: bool = False
    """More jobs use it than were looked at: it is shared whatever they are."""


class JobObjects(_Reply):
    """`provenancedb.job-objects`: what erasing a job is about (`upload/erase.py`): its
    stored objects and who else uses each, and what its reuse index entry's key is made of
    (the engine of its computation, or the key of the computation it reused)."""

    found: bool
    objects: list[ObjectUse] = Field(default_factory=list)
    engine: str | None = None
    reuse_key: str | None = None
