"""The public HTTP API and the web app's pages. Every API route documents itself for the
OpenAPI document (`openapi.documented`)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import web

from messaging.asyncapi import asyncapi_document
from messaging.events import ClientInfo
from pipeline import describe_operations

from . import schemas
from .errors import ApiError
from .guard import (
    PEER,
    PRINCIPAL,
    SIGN_IN_PATH,
    SIGN_OUT_PATH,
    Principal,
    client_of,
    principal_of,
)
from .intake import body_rules, read_upload
from .jobs import Jobs, public
from .keys import BROKER, DOWNLOADS, GUARD, JOBS, LIVE, SETTINGS, STREAMS, UPLOADS
from .openapi import (
    Doc,
    documented,
    error,
    openapi_document,
    path_parameter,
    query_parameter,
)
from .progress import stream_progress
from .session import sign_in, sign_out
from .spool import Spool

log = structlog.get_logger("upload")
IMAGE_HEADERS = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
SEND_CHUNK_BYTES = 256 * 1024
"""What an image being sent holds in memory at a time, besides its spool."""

STATIC = Path(__file__).parent / "static"
SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
JOB_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_SHA256 = re.compile(SHA256_PATTERN)
_JOB_ID = re.compile(JOB_ID_PATTERN)
JOB_ID = path_parameter("job_id", "the id `POST /api/v1/jobs` answered with", JOB_ID_PATTERN)
UNAVAILABLE = error("a dependency is down; retry after `Retry-After` seconds")
UNKNOWN_JOB = error("no such job")
IMAGE_TYPES = "image/*"

routes = web.RouteTableDef()


# --------------------------------------------------------------------------- pages


_NEXT = re.compile(r"^/(?![/\\])[A-Za-z0-9/_.~%?=&-]{0,512}$")
"""Where the sign-in may send the browser back to: a path on this site (not `//host`)."""


def _page(request: web.Request, name: str) -> web.FileResponse:
    """A page of the web app; without a principal (tokens on, not signed in), the
    sign-in page instead, which comes back here."""
    if PRINCIPAL not in request:
        target = quote(request.path_qs, safe="/?=&")
        raise web.HTTPSeeOther(f"{SIGN_IN_PATH}?next={target}")
    return _file(name)


def _file(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    return _page(request, "index.html")


@routes.get("/history")
async def history_page(request: web.Request) -> web.FileResponse:
    return _page(request, "history.html")


@routes.get("/jobs/{job_id}")
async def job_page(request: web.Request) -> web.FileResponse:
    return _page(request, "job.html")


@routes.get("/api/docs")
async def api_docs_page(request: web.Request) -> web.FileResponse:
    return _file("api.html")


# --------------------------------------------------------------------------- sign-in


@routes.get(SIGN_IN_PATH)
async def sign_in_page(request: web.Request) -> web.FileResponse:
    if not request.app[GUARD].tokens.enabled:
        # Nothing to sign in with: everyone is `local`, or the authenticating proxy signs
        # people in (and this request did not come through it).
        if PRINCIPAL in request:
            raise web.HTTPSeeOther("/")
        raise web.HTTPUnauthorized(text="sign in through the authenticating proxy\n")
    return _file("signin.html")


@routes.post(SIGN_IN_PATH)
async def sign_in_form(request: web.Request) -> web.Response:
    """The sign-in form: a token, and where to go next. A valid token starts a session
    (the encrypted cookie) and goes there; a wrong one back to the form, saying so. The
    guard refused it already if another site sent it."""
    guard = request.app[GUARD]
    form = await request.post()
    token, target = form.get("token"), form.get("next")
    target = target if isinstance(target, str) and _NEXT.match(target) else "/"
    found = guard.tokens.identify(token.strip()) if isinstance(token, str) else None
    if found is None:
        raise web.HTTPSeeOther(f"{SIGN_IN_PATH}?failed=1&next={quote(target, safe='/')}")
    await sign_in(request, *found)
    raise web.HTTPSeeOther(target)


@routes.post(SIGN_OUT_PATH)
async def sign_out_form(request: web.Request) -> web.Response:
    await sign_out(request)
    raise web.HTTPSeeOther(SIGN_IN_PATH if request.app[GUARD].tokens.enabled else "/")


@routes.get("/api/v1/me")
@documented(
    Doc(
        "Who this request acts for",
        {200: ("the principal, and whether the server needs one", schemas.Me)},
        tags=("service",),
    )
)
async def me(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = {
        "principal": principal.name,
        "auditor": principal.auditor,
        "sign_in": request.app[GUARD].tokens.enabled,
    }
    return web.json_response(body)


# --------------------------------------------------------------------------- the API


@routes.get("/api/v1/operations")
@documented(
    Doc(
        "The operation catalogue",
        {200: ("every operation with the JSON Schema of its parameters", schemas.Operations)},
        tags=("catalogue",),
    )
)
async def operations(_request: web.Request) -> web.Response:
    return web.json_response({"operations": describe_operations()})


@routes.post("/api/v1/jobs")
@documented(
    Doc(
        "Submit an image with a pipeline",
        {
            202: ("accepted and queued; `Location` names the job", schemas.Accepted),
            400: error("a bad form or pipeline (names the operation and parameter)"),
            408: error("the body paused too long or arrived too slowly (`body_timeout`)"),
            411: error("no Content-Length: chunked uploads are not accepted"),
            413: error("the file is larger than IMAGE_MAX_BYTES"),
            415: error("not an image type we accept (decided by content)"),
            422: error("undecodable, or over the pixel, side or frame limits"),
            429: error(
                "this client's uploads in progress are at their cap (`too_many_uploads`), "
                "its principal's waiting jobs are (`too_many_queued`, "
                "UPLOAD_MAX_QUEUED_PER_PRINCIPAL), or its rate is (`rate_limited`); retry "
                "after `Retry-After` seconds"
            ),
            503: error(
                "too many uploads in progress on this server (`busy`), or a dependency is "
                "down; retry after `Retry-After` seconds"
            ),
        },
        description="One job per file. The type is decided by the content, never the name; "
        "size is checked while streaming and pixels from the header, before decoding. "
        "Uploads in progress are capped per client and in total, and the body must keep "
        "arriving (UPLOAD_BODY_TIMEOUT_SECONDS, UPLOAD_BODY_MIN_BYTES_PER_SECOND).",
        request_body={
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "pipeline": {
                                "type": "string",
                                "description": 'JSON list of {"op": name, ...params}; '
                                "see GET /api/v1/operations",
                                "default": "[]",
                            },
                        },
                    }
                }
            },
        },
    )
)
async def create_job(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    await request.app[JOBS].admit(principal_of(request).name)
    client = ClientInfo(
        address=request[PEER].address or None,  # through trusted proxies (UPLOAD_TRUSTED_PROXIES)
        user_agent=request.headers.get("User-Agent", "")[:512] or None,
    )
    # A slot before a byte of the body is read (429 this client's cap, 503 the total),
    # held until the input is stored; the file is spooled, never whole in memory.
    with request.app[UPLOADS].hold(client_of(request)):
        upload = await read_upload(
            request,
            max_bytes=settings.image_max_bytes,
            limits=settings.image_limits(),
            max_ops=settings.pipeline_max_ops,
            body=body_rules(settings),
        )
        with upload:
            job_id = await request.app[JOBS].submit(upload, client, principal_of(request).name)
    location = f"/api/v1/jobs/{job_id}"
    body = {
        "id": job_id,
        "status": "queued",
        "links": {
            "self": location,
            "result": f"{location}/result",
            "events": f"{location}/events",
            "provenance": f"{location}/provenance",
            "input_lineage": f"/api/v1/images/{upload.sha256}/lineage",
        },
    }
    return web.json_response(body, status=202, headers={"Location": location})


@routes.get("/api/v1/jobs")
@documented(
    Doc(
        "Recent jobs, newest first",
        {
            200: ("a page of jobs, and the cursor of the next one", schemas.JobPage),
            400: error("a bad status, limit or cursor"),
            503: UNAVAILABLE,
        },
        parameters=(
            query_parameter(
                "status",
                "only jobs in this status",
                {"type": "string", "enum": ["queued", "processing", "succeeded", "failed"]},
            ),
            query_parameter(
                "limit", "jobs per page", {"type": "integer", "minimum": 1, "maximum": 100}
            ),
            query_parameter("before", "the `next` cursor of the previous page", {"type": "string"}),
        ),
    )
)
async def list_jobs(request: web.Request) -> web.Response:
    principal = principal_of(request)
    status = request.query.get("status") or None
    if status is not None and status not in {"queued", "processing", "succeeded", "failed"}:
        raise ApiError(400, "bad_request", "status: queued, processing, succeeded or failed")
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise ApiError(400, "bad_request", "limit: an integer from 1 to 100")
    before = request.query.get("before") or None
    page = await request.app[JOBS].recent(
        status=status, limit=limit, before=before, owner=_owner_filter(principal)
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
            200: ("`text/event-stream` until the job ends", "text/event-stream"),
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
        "succeeded or failed; a reconnecting client starts again from the current status.",
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
            409: error("not finished yet (`not_finished`), or failed (`job_failed`)"),
            503: UNAVAILABLE,
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
         503: UNAVAILABLE},
        parameters=(JOB_ID,),
    )
)  # fmt: skip
async def get_input(request: web.Request) -> web.StreamResponse:
    jobs = request.app[JOBS]
    image, content_type = await jobs.input(_job_id(request), principal_of(request))
    return await _send_image(request, jobs, image, content_type)


@routes.get("/api/v1/jobs/{job_id}/provenance")
@documented(
    Doc(
        "The job's history as a W3C PROV-JSON document",
        {200: ("PROV-JSON", schemas.ProvDocument), 404: UNKNOWN_JOB, 503: UNAVAILABLE},
        description="Every step is an activity with its times, parameters and the service "
        "version that ran it; images are entities named by content (`sha256:<hex>`).",
        tags=("provenance",),
        parameters=(JOB_ID,),
    )
)
async def get_provenance(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    principal = principal_of(request)
    jobs = request.app[JOBS]
    document = await jobs.provenance(job_id) if await jobs.readable(job_id, principal) else None
    if document is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    return web.json_response(document if principal.auditor else without_client(document))


@routes.get("/api/v1/images/{sha256}/lineage")
@documented(
    Doc(
        "What an image was derived from, and what was derived from it, across jobs",
        {
            200: ("ancestors and descendants, each with its depth and job", schemas.Lineage),
            400: error("not a SHA-256"),
            404: error("provenance never saw this image"),
            503: UNAVAILABLE,
        },
        tags=("provenance",),
        parameters=(path_parameter("sha256", "the image's SHA-256 (hex)", SHA256_PATTERN),),
    )
)
async def get_lineage(request: web.Request) -> web.Response:
    sha256 = request.match_info["sha256"].lower()
    if not _SHA256.match(sha256):
        raise ApiError(400, "bad_request", "an image is named by its SHA-256: 64 hex digits")
    lineage = await request.app[JOBS].lineage(sha256, _owner_filter(principal_of(request)))
    if lineage is None:
        raise ApiError(404, "not_found", f"no image {sha256} in provenance")
    return web.json_response({"sha256": sha256, **lineage})


@routes.get("/api/v1/about")
@documented(
    Doc(
        "Version and links: API documents, operator consoles",
        {200: ("this service", schemas.About)},
        tags=("service",),
    )
)
async def about(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = {
        "service": "imagemesh",
        "version": request.app[BROKER].version,
        "links": {
            "openapi": "/api/v1/openapi.json",
            "api_docs": "/api/docs",
            "asyncapi": "/api/v1/asyncapi.json",
            "fauxton": settings.upload_fauxton_url,
            "rabbitmq_console": settings.upload_rabbitmq_console_url,
        },
        "limits": {
            "image_max_bytes": settings.image_max_bytes,
            "image_max_pixels": settings.image_max_pixels,
            "pipeline_max_ops": settings.pipeline_max_ops,
        },
    }
    return web.json_response(body)


@routes.get("/api/v1/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    document = openapi_document(
        request.app,
        version=request.app[BROKER].version,
        tokens_required=request.app[GUARD].tokens.enabled,
    )
    return web.json_response(document)


@routes.get("/api/v1/asyncapi.json")
async def asyncapi_json(request: web.Request) -> web.Response:
    broker = request.app[BROKER]
    return web.json_response(asyncapi_document(broker.settings, version=broker.version))


# --------------------------------------------------------------------------- helpers


def _owner_filter(principal: Principal) -> str | None:
    """Whose jobs a query may include: the principal's own, or everyone's for an auditor."""
    return None if principal.auditor else principal.name


CLIENT_TYPE = "imagemesh:Client"


def without_client(document: dict[str, Any]) -> dict[str, Any]:
    """A PROV-JSON document without the uploader's address and user agent (only auditors
    see who uploaded): the client agents, and the associations naming them."""
    agents = document.get("agent", {})
    clients = {
        identifier
        for identifier, attributes in agents.items()
        if isinstance(attributes, dict)
        and isinstance(kind := attributes.get("prov:type"), dict)
        and kind.get("$") == CLIENT_TYPE
    }
    if not clients:
        return document
    stripped = dict(document)
    stripped["agent"] = {k: v for k, v in agents.items() if k not in clients}
    associations = {
        identifier: relation
        for identifier, relation in document.get("wasAssociatedWith", {}).items()
        if relation.get("prov:agent") not in clients
    }
    stripped["wasAssociatedWith"] = associations
    if not associations:
        del stripped["wasAssociatedWith"]
    return stripped


async def _send_image(
    request: web.Request, jobs: Jobs, image: dict[str, Any], content_type: str
) -> web.StreamResponse:
    """Send a stored image: held in a spool, not in memory, while the client reads it; a
    client that takes nothing for UPLOAD_BODY_TIMEOUT_SECONDS is cut."""
    settings = request.app[SETTINGS]
    spool = Spool(memory=settings.upload_spool_memory_bytes, directory=settings.upload_spool_dir)
    with request.app[DOWNLOADS].hold(client_of(request)):
        async with jobs.fetched(image, spool):
            response = web.StreamResponse(
                headers={
                    "Cache-Control": "private, max-age=3600",
                    "X-Content-Type-Options": "nosniff",
                }
            )
            response.content_type = content_type
            response.content_length = spool.size
            await response.prepare(request)
            source = spool.reader()
            try:
                while chunk := await asyncio.to_thread(source.read, SEND_CHUNK_BYTES):
                    async with asyncio.timeout(settings.upload_body_timeout_seconds):
                        await response.write(chunk)
            except TimeoutError:
                log.warning("download_cut", reason="the client took nothing", sent=source.tell())
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
    return response


def _job_id(request: web.Request) -> str:
    job_id = request.match_info["job_id"].lower()
    if not _JOB_ID.match(job_id):
        raise ApiError(404, "not_found", "no job with that id")
    return job_id
