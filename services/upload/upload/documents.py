"""The service's own documents: about, and the OpenAPI and AsyncAPI documents."""

from __future__ import annotations

from aiohttp import web

from messaging.asyncapi import asyncapi_document
from pipeline import accepted_formats

from . import schemas
from .keys import BROKER, GUARD, SETTINGS
from .openapi import Doc, documented, openapi_document
from .routes import routes


@routes.get("/api/v1/about")
@documented(
    Doc(
        "Version, links, the accepted input formats and the limits",
        {200: ("this service", schemas.About)},
        tags=("service",),
        description="What a client checks before sending: `input_formats` (decided by "
        "content; anything else is 415), the upload limits and what one results.zip may "
        "hold. Links: the API documents and the operator consoles.",
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
        "input_formats": accepted_formats(),
        "limits": {
            "image_max_bytes": settings.image_max_bytes,
            "image_max_pixels": settings.image_max_pixels,
            "image_max_side": settings.image_max_side,
            "pipeline_max_ops": settings.pipeline_max_ops,
            "zip_max_jobs": settings.upload_zip_max_jobs,
            "zip_max_bytes": settings.upload_zip_max_bytes,
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
