from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from messaging.events import ClientInfo
from pipeline import describe_operations

from .errors import ApiError
from .intake import read_upload
from .keys import JOBS, SETTINGS

STATIC = Path(__file__).parent / "static"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

routes = web.RouteTableDef()


@routes.get("/")
async def index(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


@routes.get("/api/v1/operations")
async def operations(_request: web.Request) -> web.Response:
    return web.json_response({"operations": describe_operations()})


@routes.post("/api/v1/jobs")
async def create_job(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    await request.app[JOBS].admit()
    upload = await read_upload(
        request,
        max_bytes=settings.image_max_bytes,
        limits=settings.image_limits(),
        max_ops=settings.pipeline_max_ops,
    )
    client = ClientInfo(
        address=request.remote, user_agent=request.headers.get("User-Agent", "")[:512] or None
    )
    job_id = await request.app[JOBS].submit(upload, client)
    location = f"/api/v1/jobs/{job_id}"
    body = {
        "id": job_id,
        "status": "queued",
        "links": {
            "self": location,
            "result": f"{location}/result",
            "provenance": f"{location}/provenance",
            "input_lineage": f"/api/v1/images/{upload.sha256}/lineage",
        },
    }
    return web.json_response(body, status=202, headers={"Location": location})


@routes.get("/api/v1/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    job = await request.app[JOBS].status(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    job.pop("output_ref", None)
    return web.json_response(job)


@routes.get("/api/v1/jobs/{job_id}/result")
async def get_result(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    data, content_type = await request.app[JOBS].result(job_id)
    return web.Response(
        body=data,
        content_type=content_type,
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@routes.get("/api/v1/jobs/{job_id}/provenance")
async def get_provenance(request: web.Request) -> web.Response:
    """The job's history as a W3C PROV-JSON document."""
    job_id = _job_id(request)
    document = await request.app[JOBS].provenance(job_id)
    if document is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    return web.json_response(document)


@routes.get("/api/v1/images/{sha256}/lineage")
async def get_lineage(request: web.Request) -> web.Response:
    """What an image was derived from, and what was derived from it, across jobs."""
    sha256 = request.match_info["sha256"].lower()
    if not _SHA256.match(sha256):
        raise ApiError(400, "bad_request", "an image is named by its SHA-256: 64 hex digits")
    lineage = await request.app[JOBS].lineage(sha256)
    if lineage is None:
        raise ApiError(404, "not_found", f"no image {sha256} in provenance")
    return web.json_response({"sha256": sha256, **lineage})


def _job_id(request: web.Request) -> str:
    job_id = request.match_info["job_id"].lower()
    if not _JOB_ID.match(job_id):
        raise ApiError(404, "not_found", "no job with that id")
    return job_id
