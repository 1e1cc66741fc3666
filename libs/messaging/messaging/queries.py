"""The questions other services ask provenancedb over RPC, as typed requests.

Their routes in `topology` name them (with the other routes' models, in `contracts`):
`Broker.call` sends one, and the server's `Broker.serve` validates what arrives against
it (an invalid one is answered `bad_request`). Every field added later has a default, so
older callers keep working.

`owner` is how provenancedb answers per principal: a principal's name reads only that
principal's jobs (what upload sends for an ordinary caller); `None` reads everyone's (what
upload sends for a principal listed in `UPLOAD_AUDITORS`). provenancedb trusts the caller
to have authenticated the principal: only upload may call these routes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .events import PRINCIPAL_PATTERN

__all__ = [
    "MAX_HISTORY_LIMIT",
    "MAX_SEARCH_LENGTH",
    "REQUESTS",
    "JobCountsRequest",
    "JobStatus",
    "JobsRequest",
    "LineageRequest",
]

MAX_HISTORY_LIMIT = 100
"""Most jobs one history page holds."""
MAX_SEARCH_LENGTH = 128
"""Longest history search term (the index keeps names and words to 128 characters)."""
JobStatus = Literal["queued", "processing", "succeeded", "failed", "cancelled"]
"""One of `messaging.constants.JOB_STATUSES` (a test holds the two equal: a Literal must
be spelled out for type checkers)."""

Owner = str | None
"""A principal's name (only its jobs), or None (every principal's: auditors)."""


class _Request(BaseModel):
    # Strict: a limit of "20" or true is a caller's bug, not a number.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class JobsRequest(_Request):
    """`provenancedb.jobs`: a page of recent jobs, newest first (by `created_at`).

    Answer: `{"jobs": [<job as provenancedb.job-status folds it>...], "next": cursor|null}`;
    pass `next` back as `before` for the following page (null: there is none). With
    `status`, only jobs whose current status it is; with `owner`, only that principal's;
    with `search`, only jobs it finds (a prefix of the id, file name or a word of it).
    Each page is one index read, whatever the filter (a search: two, bounded)."""

    status: JobStatus | None = None
    limit: int = Field(ge=1, le=MAX_HISTORY_LIMIT)
    before: str | None = Field(default=None, max_length=2048)
    """The `next` of the previous page (opaque)."""
    owner: Owner = Field(default=None, pattern=PRINCIPAL_PATTERN)
    search: str | None = Field(default=None, max_length=MAX_SEARCH_LENGTH)
    """Only jobs whose id, file name or a word of that name starts with it (any case)."""


class LineageRequest(_Request):
    """`provenancedb.lineage`: an image's ancestors and descendants, across jobs.

    Answer: `{"found": bool, "lineage": {...}|null}`. With `owner`, only that principal's
    jobs appear (where the image is stored, which jobs used or made it, the derivation
    links they made, walked only through that principal's jobs), and an image that is not
    the input or output of one of its jobs is not found, as if provenance never saw it."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    owner: Owner = Field(default=None, pattern=PRINCIPAL_PATTERN)


class JobCountsRequest(_Request):
    """`provenancedb.job-counts`: how many of a principal's jobs are in each status, for
    a per-principal cap on waiting jobs.

    Answer: `{"queued": n, "processing": n, "succeeded": n, "failed": n, "cancelled": n}`;
    `queued` is
    waiting (accepted, not started yet). One read of a
    reduced index, whatever the number of jobs. The counts follow provenance: a job
    accepted a moment ago is counted once provenancedb recorded its intake (upload records
    it synchronously before it answers 202)."""

    owner: str = Field(pattern=PRINCIPAL_PATTERN)


REQUESTS: dict[str, type[BaseModel]] = {
    "provenancedb.jobs": JobsRequest,
    "provenancedb.lineage": LineageRequest,
    "provenancedb.job-counts": JobCountsRequest,
}
"""The typed request of each RPC route that has one, by route name (the AsyncAPI document
shows their schemas)."""
