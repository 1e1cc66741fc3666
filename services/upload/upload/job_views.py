"""Reading jobs: the list, one job, its live events, and its input and output images."""

from __future__ import annotations

from aiohttp import web

from messaging.constants import JOB_STATUSES
from messaging.queries import MAX_SEARCH_LENGTH

from . import schemas
from .errors import ApiError
from .guard import client_of, principal_of
from .images import SENDING_UNAVAILABLE, TOO_MANY_DOWNLOADS, _send_image
from .job_prefix import ID_PREFIX_PATTERN, MAX_MATCHES, checked_prefix, jobs_with_prefix
from .jobs import public
from .keys import JOBS, LIVE, STREAMS
from .openapi import Doc, EventStream, documented, error, query_parameter
from .progress import stream_progress
from .routes import (
    GONE,
    IMAGE_TYPES,
    JOB_ID,
    UNAVAILABLE,
    UNKNOWN_JOB,
    _job_id,
    _owner_filter,
    routes,
)

JOB_EVENTS = EventStream(
    {
        "status": {"$ref": "#/components/schemas/Job"},
        "step": {"$ref": "#/components/schemas/ProgressStep"},
    }
)


@routes.get("/api/v1/jobs")
@documented(
    Doc(
        "Recent jobs, newest first",
        {
            200: ("a page of jobs, and the cursor of the next one", schemas.JobPage),
            400: error("a bad status, limit, cursor, search or id prefix"),
            503: UNAVAILABLE,
        },
        parameters=(
            query_parameter(
                "status",
                "only jobs in this status",
                {"type": "string", "enum": list(JOB_STATUSES)},
            ),
            query_parameter(
                "limit", "jobs per page", {"type": "integer", "minimum": 1, "maximum": 100}
            ),
            query_parameter("before", "the `next` cursor of the previous page", {"type": "string"}),
            query_parameter(
                "search",
                "only jobs whose id, file name or a word of that name starts with it (any "
                "case), e.g. `d58e10d6` or `holiday`",
                {"type": "string", "maxLength": MAX_SEARCH_LENGTH},
            ),
            query_parameter(
                "id_prefix",
                "only jobs whose id starts with this (6 to 36 characters, e.g. the 8 "
                f"shown): a short id resolved, or its candidates (at most {MAX_MATCHES}, "
                "no next page; the other parameters are checked, then ignored)",
                {"type": "string", "pattern": ID_PREFIX_PATTERN},
            ),
        ),
    )
)
async def list_jobs(request: web.Request) -> web.Response:
    principal = principal_of(request)
    status = request.query.get("status") or None
    if status is not None and status not in JOB_STATUSES:
        raise ApiError(400, "bad_request", f"status: one of {', '.join(JOB_STATUSES)}")
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise ApiError(400, "bad_request", "limit: an integer from 1 to 100")
    before = request.query.get("before") or None
    search = request.query.get("search", "").strip() or None
    if search is not None and len(search) > MAX_SEARCH_LENGTH:
        raise ApiError(400, "bad_request", f"search: at most {MAX_SEARCH_LENGTH} characters")
    if "id_prefix" in request.query:  # checked after the others: each must be valid
        prefix = checked_prefix(request.query["id_prefix"])
        return web.json_response(await jobs_with_prefix(request.app[JOBS], prefix, principal))
    page = await request.app[JOBS].recent(
        status=status,
        limit=limit,
        before=before,
        owner=_owner_filter(principal),
        search=search,
    )
    return web.json_response(page)


@routes.get("/api/v1/jobs/{job_id}")
@documented(
    Doc(
        "A job: status, input, pipeline, output or error",
        {200: ("the job", schemas.Job), 404: UNKNOWN_JOB, 503: UNAVAILABLE},
        description="Never 404 for a job `POST` accepted.",
        parameters=(JOB_ID,),
    )
)
async def get_job(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    job = await request.app[JOBS].readable(job_id, principal_of(request))
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    return web.json_response(public(job))


@routes.get("/api/v1/jobs/{job_id}/events")
@documented(
    Doc(
        "Follow a job live (server-sent events)",
        {
            200: ("`text/event-stream` until the job ends", JOB_EVENTS),
            404: UNKNOWN_JOB,
            429: error(
                "too many streams open for this principal or on this server "
                "(`too_many_streams`); retry after `Retry-After` seconds"
            ),
            503: UNAVAILABLE,
        },
        description="`event: status` (the job, as GET /api/v1/jobs/{id} shows it) first and "
        "whenever the status changes; `event: step` "
        '(`{"type", "time", "service", "operation"?, "index"?, "attempt"?, "duration_ms"?, '
        '"error"?}`) for each step as the mesh records it. The stream ends after the job '
        "succeeded, failed or was cancelled; a reconnecting client starts again from the "
        "current status.",
        parameters=(JOB_ID,),
    )
)
async def job_events(request: web.Request) -> web.StreamResponse:
    job_id = _job_id(request)
    response = await stream_progress(
        request,
        request.app[JOBS],
        request.app[LIVE],
        job_id,
        principal=principal_of(request),
        slots=request.app[STREAMS],
        client=client_of(request),
    )
    if response is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    return response


@routes.get("/api/v1/jobs/{job_id}/result")
@documented(
    Doc(
        "The output image",
        {
            200: ("the output, with its content type", IMAGE_TYPES),
            404: UNKNOWN_JOB,
            409: error(
                "not finished yet (`not_finished`), failed (`job_failed`) or cancelled "
                "(`job_cancelled`)"
            ),
            410: GONE,
            429: TOO_MANY_DOWNLOADS,
            503: SENDING_UNAVAILABLE,
        },
        parameters=(JOB_ID,),
    )
)
async def get_result(request: web.Request) -> web.StreamResponse:
    jobs = request.app[JOBS]
    image, content_type = await jobs.result(_job_id(request), principal_of(request))
    return await _send_image(request, jobs, image, content_type)


@routes.get("/api/v1/jobs/{job_id}/input")
@documented(
    Doc(
        "The input image, as uploaded",
        {200: ("the input, with its content type", IMAGE_TYPES), 404: UNKNOWN_JOB,
         410: GONE, 429: TOO_MANY_DOWNLOADS, 503: SENDING_UNAVAILABLE},
        parameters=(JOB_ID,),
    )
)  # fmt: skip
async def get_input(request: web.Request) -> web.StreamResponse:
    jobs = request.app[JOBS]
    image, content_type = await jobs.input(_job_id(request), principal_of(request))
    return await _send_image(request, jobs, image, content_type)
