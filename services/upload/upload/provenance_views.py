"""A job's provenance (W3C PROV-JSON) and an image's lineage; who uploaded is for
auditors only (`without_client`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import schemas
from .errors import ApiError
from .guard import principal_of
from .keys import JOBS
from .openapi import Doc, documented, error, path_parameter
from .routes import (
    _SHA256,
    JOB_ID,
    SHA256_PATTERN,
    UNAVAILABLE,
    UNKNOWN_JOB,
    _job_id,
    _owner_filter,
    routes,
)


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
