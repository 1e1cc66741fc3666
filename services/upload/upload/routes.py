"""The public HTTP API and the web app's pages: the one route table, and what its handler
modules share. The handlers register themselves on `routes` when their modules are
imported (`pages`, `submission`, `job_views`, `provenance_views`, `documents`); `app.py`
imports them, in that order, before it adds the table. Every API route documents itself
for the OpenAPI document (`openapi.documented`)."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from messaging.events import ClientInfo

from .errors import ApiError
from .guard import PEER, Principal
from .openapi import error, path_parameter

STATIC = Path(__file__).parent / "static"
SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
JOB_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_SHA256 = re.compile(SHA256_PATTERN)
_JOB_ID = re.compile(JOB_ID_PATTERN)
JOB_ID = path_parameter("job_id", "the id `POST /api/v1/jobs` answered with", JOB_ID_PATTERN)
UNAVAILABLE = error("a dependency is down; retry after `Retry-After` seconds")
UNKNOWN_JOB = error("no such job")
GONE = error("the job was erased (`DELETE`): its images are deleted (`gone`)")
IMAGE_TYPES = "image/*"

routes = web.RouteTableDef()


# --------------------------------------------------------------------------- helpers


def _owner_filter(principal: Principal) -> str | None:
    """Whose jobs a query may include: the principal's own, or everyone's for an auditor."""
    return None if principal.auditor else principal.name


def _job_id(request: web.Request) -> str:
    job_id = request.match_info["job_id"].lower()
    if not _JOB_ID.match(job_id):
        raise ApiError(404, "not_found", "no job with that id")
    return job_id


def client_info(request: web.Request) -> ClientInfo:
    """Who sent a request that makes a job (a submission, a retry), as its events say."""
    return ClientInfo(
        address=request[PEER].address or None,  # through trusted proxies (UPLOAD_TRUSTED_PROXIES)
        user_agent=request.headers.get("User-Agent", "")[:512] or None,
    )


def accepted(job_id: str, sha256: str, **fields: str) -> web.Response:
    """The 202 of a request that made a job (a submission, a retry): its id, status and
    links, `Location` naming it; `fields` add to the body."""
    location = f"/api/v1/jobs/{job_id}"
    body = {
        "id": job_id,
        "status": "queued",
        **fields,
        "links": {
            "self": location,
            "result": f"{location}/result",
            "events": f"{location}/events",
            "provenance": f"{location}/provenance",
            "input_lineage": f"/api/v1/images/{sha256}/lineage",
        },
    }
    return web.json_response(body, status=202, headers={"Location": location})
