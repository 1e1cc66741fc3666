"""Retrying a job that failed or was cancelled: a new job on the same stored input.

The new job is made as a submission's is (the same admission, rate limit and pipeline
checks; its intake published by `publishing.py`), except that nothing is uploaded: its
input is the retried job's stored object, checked to be still there. Its pipeline is the
retried job's, or the one the body gives (`{"pipeline": [...]}`). The two are linked both
ways: the new job's `image.uploaded` names the retried one (`retry_of`), the retried job's
`job.retried` names the new one (`retried_by` in its status), in the statuses and in
provenance. A job may be retried more than once; each retry is a job of its own.

Only the job's owner may retry it: an auditor reads every job but acts on none (403),
and anyone else's job is not found (404), as for every job route. A job whose input is
no longer stored (erased) is 410.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from messaging.constants import CANCELLED, FAILED
from messaging.rpc import validation_message

from . import schemas
from .errors import ApiError
from .guard import principal_of
from .intake import CHUNK, MAX_PIPELINE_BYTES, validated_pipeline
from .keys import JOBS, SETTINGS
from .openapi import JSON, REF, Doc, documented, error
from .routes import JOB_ID, UNAVAILABLE, UNKNOWN_JOB, _job_id, accepted, client_info, routes

RETRYABLE = frozenset({FAILED, CANCELLED})
MAX_BODY_BYTES = MAX_PIPELINE_BYTES + 1024
"""A retry's body is a pipeline, bounded as a submission's pipeline field is."""


@routes.post("/api/v1/jobs/{job_id}/retry")
@documented(
    Doc(
        "Retry a failed or cancelled job",
        {
            202: ("a new job is queued; `Location` names it", schemas.RetryAccepted),
            400: error('a body that is not `{"pipeline": [...]}`, or a bad pipeline'),
            403: error("an auditor's request: only the job's owner may retry it (`forbidden`)"),
            404: UNKNOWN_JOB,
            408: error("the body arrived too slowly (`body_timeout`)"),
            409: error(
                "the job is queued, processing or succeeded (`not_retryable`), or was "
                "refused before its image was stored (`no_input`)"
            ),
            410: error("the job's input is no longer stored: the job was erased (`gone`)"),
            413: error("the body is larger than a pipeline may be (`too_large`)"),
            429: error(
                "its owner's waiting jobs are at their cap (`too_many_queued`), or this "
                "client's rate of new jobs is (`rate_limited`, shared with submissions)"
            ),
            503: UNAVAILABLE,
        },
        description="A new job on the retried job's stored input, with its pipeline or the "
        "one given. The new job's `retry_of` names the retried job, whose `retried_by` "
        "lists the new one; provenance records the retry (`job.retried`) on behalf of "
        "the caller. The same admission as a submission: backpressure (503), the waiting "
        "jobs per principal (429).",
        parameters=(JOB_ID,),
        request_body={
            "required": False,
            "content": {JSON: {"schema": {"$ref": REF.format(model="RetryRequest")}}},
        },
    )
)
async def retry_job(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    principal = principal_of(request)
    jobs = request.app[JOBS]
    job = await jobs.owned(job_id, principal, "retry")
    _check_retryable(job)
    settings = request.app[SETTINGS]
    given = await _given_pipeline(request, settings.upload_body_timeout_seconds)
    pipeline = validated_pipeline(
        job.get("pipeline", []) if given is None else given, settings.pipeline_max_ops
    )
    await jobs.admit(principal.name)
    retry_id = await jobs.retry(job, pipeline, client_info(request), principal.name)
    return accepted(retry_id, job["input_ref"]["sha256"], retry_of=job_id)


def _check_retryable(job: dict[str, Any]) -> None:
    """409 for a job that is not failed or cancelled, or has no stored input; 410 for an
    erased one."""
    status = job["status"]
    if status not in RETRYABLE:
        raise ApiError(
            409, "not_retryable", f"the job is {status}: only a failed or cancelled job is retried"
        )
    if job.get("erased_at"):
        raise ApiError(
            410,
            "gone",
            f"the job was erased by {job.get('erased_by')} at {job['erased_at']}: its input "
            "is no longer stored, so it cannot be retried",
        )
    if not job.get("input_ref"):
        raise ApiError(
            409,
            "no_input",
            "the job was refused before its image was stored: there is no input to retry "
            "with; submit the image again",
        )


async def _given_pipeline(request: web.Request, timeout: float) -> list[Any] | None:
    """The pipeline the body gives, or None (no body, or no `pipeline`): the retried
    job's then. 400 for a body that is not a RetryRequest."""
    raw = await _body(request, timeout)
    if not raw.strip():
        return None
    try:
        body = schemas.RetryRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise ApiError(
            400, "bad_request", f'the body must be {{"pipeline": [...]}}: {validation_message(exc)}'
        ) from exc
    return body.pipeline


async def _body(request: web.Request, timeout: float) -> bytes:
    """The whole body, at most MAX_BODY_BYTES (413), within `timeout` seconds (408)."""
    too_large = ApiError(413, "too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise too_large
    data = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_chunked(CHUNK):
                data += chunk
                if len(data) > MAX_BODY_BYTES:
                    raise too_large
    except TimeoutError as exc:
        raise ApiError(
            408,
            "body_timeout",
            f"the body did not arrive within {timeout:g} s",
            headers={"Connection": "close"},
        ) from exc
    return bytes(data)
