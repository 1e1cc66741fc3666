"""Submitting jobs, and the operation catalogue a pipeline is written from."""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from pipeline import describe_operations

from . import schemas
from .guard import client_of, principal_of
from .intake import body_rules, read_upload
from .keys import JOBS, SETTINGS, UPLOADS
from .openapi import Doc, documented, error
from .routes import accepted, client_info, routes
from .webhooks import vetted_callback

# --------------------------------------------------------------------------- the API

_SIGNED_HEADER = {"required": True, "schema": {"type": "string"}}
_CALLBACK = {
    "summary": "The job ended (a webhook, when the job has a `callback_url`)",
    "description": "Sent once the job succeeded, failed or was cancelled; again after a "
    "5xx, 408, 429, a timeout or a refused connection, with back-off (AMQP_RETRY_DELAYS, "
    "AMQP_MAX_ATTEMPTS), never after another answer; redirects are not followed. Check "
    "`X-Imagemesh-Signature` against the exact body bytes with your key "
    "(GET /api/v1/webhooks/secret) before trusting it.",
    "parameters": [
        {
            "name": "X-Imagemesh-Signature",
            "in": "header",
            "description": "`sha256=` + hex HMAC-SHA256 of the body under the owner's key",
            **_SIGNED_HEADER,
        },
        {
            "name": "X-Imagemesh-Event",
            "in": "header",
            "description": "job.succeeded, job.failed or job.cancelled",
            **_SIGNED_HEADER,
        },
        {
            "name": "X-Imagemesh-Delivery",
            "in": "header",
            "description": "the same for every attempt: de-duplicate on it",
            **_SIGNED_HEADER,
        },
        {
            "name": "X-Imagemesh-Timestamp",
            "in": "header",
            "description": "Unix seconds when sent (the body's signed `sent_at`)",
            **_SIGNED_HEADER,
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/WebhookNotification"}}
        },
    },
    "responses": {
        "2XX": {"description": "delivered"},
        "default": {"description": "5xx, 408, 429: tried again later; anything else: final"},
    },
}


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
            400: error(
                "a bad form or pipeline (names the operation and parameter), or a "
                "`callback_url` refused (`bad_callback_url`, says why)"
            ),
            408: error("the body paused too long or arrived too slowly (`body_timeout`)"),
            411: error("no Content-Length: chunked uploads are not accepted"),
            413: error("the file is larger than IMAGE_MAX_BYTES"),
            415: error(
                "not an image type we accept (decided by content; the message and "
                "`GET /api/v1/about`'s `input_formats` name the accepted ones)"
            ),
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
                                "type": "array",
                                "items": {"type": "object"},
                                "description": 'JSON list of {"op": name, ...params}, as the '
                                "part's text; see GET /api/v1/operations",
                                "default": [],
                            },
                            "callback_url": {
                                "type": "string",
                                "format": "uri",
                                "minLength": 1,
                                "maxLength": 2048,
                                "description": "http(s) URL told of the job's end: a signed "
                                "POST (`X-Imagemesh-Signature`, see GET "
                                "/api/v1/webhooks/secret), retried with back-off. Its host "
                                "must resolve to global addresses only (unless "
                                "WEBHOOK_ALLOWED_NETWORKS lists its network): 400 "
                                "`bad_callback_url` otherwise",
                            },
                        },
                    },
                    "encoding": {"pipeline": {"contentType": "application/json"}},
                }
            },
        },
        extra={"callbacks": {"jobEnded": {"{$request.body#/callback_url}": {"post": _CALLBACK}}}},
    )
)
async def create_job(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    await request.app[JOBS].admit(principal_of(request).name)
    client = client_info(request)
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
            if upload.callback_url is not None:  # before anything is stored
                vetted = await vetted_callback(upload.callback_url, settings)
                upload = replace(upload, callback_url=vetted)
            job_id = await request.app[JOBS].submit(upload, client, principal_of(request).name)
    return accepted(job_id, upload.sha256)
