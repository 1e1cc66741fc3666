"""410 Gone: the images of an erased job (`erase.py`) are deleted, for good.

A job's status says it was erased (`erased_at`, `erased_by`) as soon as the erasure is
recorded, or at once on the replica that made it; another replica may still show it
unerased for a moment, and then S3 answers NoSuchKey. Both are the same fact for the
client: the image is gone (410), not a server error (500) nor an outage (503)."""

from __future__ import annotations

from typing import Any

import structlog

from objectstore import ObjectNotFound

from .errors import ApiError

log = structlog.get_logger("upload")


def refuse_erased(job: dict[str, Any]) -> None:
    """410 `gone` when the job is erased: its input, output and thumbnail are deleted."""
    if job.get("erased_at"):
        raise ApiError(
            410,
            "gone",
            f"job {job['id']} was erased by {job.get('erased_by')} at {job['erased_at']}: "
            "its images are deleted",
        )


def refuse_missing(exc: BaseException, uri: str) -> None:
    """410 `gone` when S3 no longer has a stored image (its job was erased meanwhile)."""
    if isinstance(exc, ObjectNotFound):
        log.warning("image_gone", uri=uri)
        raise ApiError(410, "gone", "the image is no longer stored: its job was erased") from exc
