"""Short job ids: people and the CLI shorten a job id to its first 8 characters (they are
random, `job_ids.new_job_id`); `GET /api/v1/jobs?id_prefix=` finds the reader's jobs whose
id starts with such a prefix, so that a short id can be resolved, or its candidates listed.

The lookup is the history's search (`search=`, one bounded index read in provenancedb),
scoped to the reader's own jobs like every read (an auditor's: everyone's), then kept to
ids that start with the prefix (the search also matches file names), plus the reader's
jobs this replica saw accepted that the index does not have yet. So a prefix never
reveals another principal's job: not as a match, not as a second candidate making an
answer "ambiguous". A full id is looked up directly.
"""

from __future__ import annotations

import re
from typing import Any

import structlog

from .errors import ApiError
from .guard import Principal
from .jobs import Jobs, public

log = structlog.get_logger("upload")
ID_PREFIX_PATTERN = r"^[0-9a-fA-F]{6}[0-9a-fA-F-]{0,30}$"
"""At least 6 hex digits (16.7 million values), at most a whole id (36 characters)."""
_ID_PREFIX = re.compile(ID_PREFIX_PATTERN)
_FULL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SEARCH_PAGE = 100
MAX_MATCHES = 20
"""At most this many candidates are answered (enough to say a prefix is ambiguous)."""


def checked_prefix(text: str) -> str:
    """`text` as a lower-case id prefix; 400 unless it is one."""
    if not _ID_PREFIX.match(text):
        raise ApiError(
            400, "bad_request", "id_prefix: 6 to 36 characters of a job id (hex digits, dashes)"
        )
    return text.lower()


async def jobs_with_prefix(jobs: Jobs, prefix: str, reader: Principal) -> dict[str, Any]:
    """{"jobs": [...], "next": None}: the reader's jobs whose id starts with `prefix`,
    newest first (a JobPage with no next page)."""
    if _FULL_ID.match(prefix):
        job = await jobs.readable(prefix, reader)
        return {"jobs": [public(job)] if job is not None else [], "next": None}
    owner = None if reader.auditor else reader.name
    page = await jobs.recent(
        status=None, limit=_SEARCH_PAGE, before=None, owner=owner, search=prefix
    )
    found = [job for job in page["jobs"] if str(job.get("id", "")).startswith(prefix)]
    indexed = {job["id"] for job in found}
    # Jobs accepted a moment ago are not in the search index yet: this replica saw them.
    fresh = []
    for job_id in jobs.live_starting_with(prefix, owner):
        if job_id not in indexed and (job := await jobs.readable(job_id, reader)) is not None:
            fresh.append(public(job))
    found = fresh + found
    log.info("jobs_by_prefix", prefix=prefix, found=len(found))
    return {"jobs": found[:MAX_MATCHES], "next": None}
