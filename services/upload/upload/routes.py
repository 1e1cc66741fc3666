from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from pipeline import describe_operations

from .errors import ApiError
from .intake import read_upload
from .keys import JOBS, SETTINGS

STATIC = Path(__file__).parent / "static"
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
    job_id = await request.app[JOBS].submit(upload)
    location = f"/api/v1/jobs/{job_id}"
    body = {
        "id": job_id,
        "status": "queued",
        "links": {"self": location, "result": f"{location}/result"},
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


def _job_id(request: web.Request) -> str:
    job_id = request.match_info["job_id"].lower()
    if not _JOB_ID.match(job_id):
        raise ApiError(404, "not_found", "no job with that id")
    return job_id
