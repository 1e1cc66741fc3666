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
    "JobPage",
    "JobRequest",
    "JobsRequest",
    "LineageRequest",
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
