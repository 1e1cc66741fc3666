"""Controlling a job after submitting it: cancel.

Upload does not stop a job itself: it asks the mesh (`job.cancel-requested`, with who
asked), and the runner, which processes the job, decides (`imageproc_runner/cancels.py`).
It stops a job that has not started, or drops the output of one imageproc is working on,
and records `job.cancelled`; the job then ends `cancelled`. A job that finishes while the
request travels keeps its outcome: the 202 is a request, and the job's status says what
actually happened. Upload answers 409 for a job it already knows finished.

Only the job's owner may cancel it: an auditor reads every job but changes none (403),
and anyone else's job is not found (404), as for every job route.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from messaging.constants import FINAL_STATUSES
from messaging.events import CancelRequested

from . import schemas
from .errors import ApiError
from .guard import principal_of
from .keys import BROKER, JOBS
from .openapi import Doc, documented, error
from .publishing import unavailable
from .routes import JOB_ID, UNAVAILABLE, UNKNOWN_JOB, _job_id, routes

log = structlog.get_logger("upload")


@routes.post("/api/v1/jobs/{job_id}/cancel")
@documented(
    Doc(
        "Cancel a queued or processing job",
        {
            202: ("the cancellation is requested", schemas.CancelAccepted),
            403: error("an auditor's request: only the job's owner may cancel it (`forbidden`)"),
            404: UNKNOWN_JOB,
            409: error("the job already finished (`job_finished`)"),
            503: UNAVAILABLE,
        },
        description="The job ends `cancelled` (`cancelled_by` names who asked): it does not "
        "start, or its output is dropped, never stored. A job that finishes while the "
        "request travels keeps its outcome: follow its status to see which happened.",
        parameters=(JOB_ID,),
    )
)
async def cancel_job(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    principal = principal_of(request)
    job = await request.app[JOBS].owned(job_id, principal, "cancel")
    if job["status"] in FINAL_STATUSES:
        raise ApiError(409, "job_finished", f"the job already {job['status']}")
    requested = CancelRequested(job_id=job_id, principal=principal.name)
    try:
        await request.app[BROKER].publish(requested)
    except Exception as exc:
        log.warning("cancel_not_requested", job_id=job_id, error=repr(exc))
        raise unavailable("the cancellation could not be requested") from exc
    log.info("cancel_requested", job_id=job_id, principal=principal.name)
    location = f"/api/v1/jobs/{job_id}"
    body = {
        "id": job_id,
        "status": job["status"],
        "links": {"self": location, "events": f"{location}/events"},
    }
    return web.json_response(body, status=202)
