"""A job's provenance (W3C PROV-JSON) and an image's lineage; who uploaded is for
auditors only (`without_client`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from . import schemas
from .errors import ApiError
from .guard import principal_of
from .keys import JOBS, LIVE
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
        "version that ran it; images are entities named by content (`sha256:<hex>`). "
        "Never 404 for a job `POST` accepted: provenance records a job concurrently, so "
        "one accepted moments ago is waited for briefly, then answered with what is "
        "recorded so far (at first no activity: the input image only).",
        tags=("provenance",),
        parameters=(JOB_ID,),
    )
)
async def get_provenance(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    principal = principal_of(request)
    jobs = request.app[JOBS]
    # The job as the status read knows it (live, or waited for when accepted moments ago):
    # known and the principal's, its document is waited for; else 404.
    job = await jobs.readable(job_id, principal)
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    document = await recorded(lambda: jobs.provenance(job_id)) or pending_document(job)
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
        description="The input of a job `POST` accepted moments ago, which provenance "
        "records concurrently, is waited for briefly, then answered with that job alone.",
        tags=("provenance",),
        parameters=(path_parameter("sha256", "the image's SHA-256 (hex)", SHA256_PATTERN),),
    )
)
async def get_lineage(request: web.Request) -> web.Response:
    sha256 = request.match_info["sha256"].lower()
    if not _SHA256.match(sha256):
        raise ApiError(400, "bad_request", "an image is named by its SHA-256: 64 hex digits")
    jobs, owner = request.app[JOBS], _owner_filter(principal_of(request))
    lineage = await jobs.lineage(sha256, owner)
    if lineage is None:
        # The input of a job this replica saw accepted (the principal's): not recorded yet.
        taking = request.app[LIVE].taking(sha256, owner)
        if not taking:
            raise ApiError(404, "not_found", f"no image {sha256} in provenance")
        lineage = await recorded(lambda: jobs.lineage(sha256, owner))
        if lineage is None:
            lineage = await pending_lineage(request, taking)
    return web.json_response({"sha256": sha256, **lineage})


RECORDING_WAIT_SECONDS = 2.5
"""How long a read of a job (or its input) that provenance has not recorded yet waits for
it: the job was accepted moments ago, and provenance records its intake concurrently."""
T = TypeVar("T")


async def recorded(read: Callable[[], Awaitable[T | None]]) -> T | None:
    """What `read()` finds once it finds something, or None after RECORDING_WAIT_SECONDS:
    provenance says nothing when a record arrives, so it is asked again, less and less
    often."""
    deadline = time.monotonic() + RECORDING_WAIT_SECONDS
    pause = 0.05
    while (found := await read()) is None:
        if time.monotonic() + pause > deadline:
            return None
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)
    return found


PROV_PREFIXES = {"imagemesh": "urn:imagemesh:", "sha256": "urn:sha256:"}
"""As provenancedb's documents name them (`provenancedb.provterms`)."""


def pending_document(job: dict[str, Any]) -> dict[str, Any]:
    """A job's PROV-JSON document before provenance has recorded any of it: no activity
    yet, the input image (named by content, as recorded documents name it) when known."""
    image = job.get("input") or {}
    entity = {}
    if image.get("sha256"):
        entity[f"sha256:{image['sha256']}"] = {
            f"imagemesh:{name}": image[name]
            for name in ("bytes", "format", "width", "height")
            if image.get(name) is not None
        }
    return {"prefix": dict(PROV_PREFIXES), "activity": {}, "entity": entity, "agent": {}}


async def pending_lineage(request: web.Request, taking: list[str]) -> dict[str, Any]:
    """An image's lineage before provenance has recorded it: the jobs this replica saw
    take it as input (accepted moments ago), nothing derived from it yet."""
    job = await request.app[JOBS].status(taking[0])
    image = (job or {}).get("input") or {}
    return {
        "image": {name: value for name, value in image.items() if name != "sha256"},
        "produced_by": [],
        "used_by": taking,
        "ancestors": [],
        "descendants": [],
    }


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
