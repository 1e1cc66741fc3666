"""The OpenAPI 3.2 document, built from the routes themselves.

Each API handler carries its documentation (`@documented(...)`), and the document is made
by walking the application's router: a route cannot exist undocumented or be documented
without existing (tests/upload checks both ways), and the response schemas are the
models of `schemas`, which the contract tests hold the running service to. OpenAPI 3.2
rather than 3.1 for one thing: a server-sent event stream is described event by event
(`itemSchema`, `EventStream`), not as an opaque binary string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from . import schemas
from .guard import needs_token, rate_limited, unsafe
from .session import SESSION_COOKIE

H = TypeVar("H", bound=Callable[..., Any])
REF = "#/components/schemas/{model}"
JSON = "application/json"
MODELS: tuple[type[BaseModel], ...] = (
    schemas.ErrorBody,
    schemas.Job,
    schemas.Accepted,
    schemas.CancelAccepted,
    schemas.RetryRequest,
    schemas.RetryAccepted,
    schemas.WebhookSecret,
    schemas.WebhookNotification,
    schemas.JobPage,
    schemas.Operations,
    schemas.Lineage,
    schemas.About,
    schemas.Me,
    schemas.Health,
    schemas.ProvDocument,
    schemas.ProgressStep,
)


@dataclass(frozen=True)
class EventStream:
    """A `text/event-stream` body: the events it sends, each by its `event:` name with the
    JSON Schema of its `data:` (JSON text). Documented as OpenAPI 3.2 `itemSchema` (one
    server-sent event: `event`, `data`, `id`, `retry`), the data with `contentMediaType`
    and `contentSchema`, which validators such as schemathesis check event by event."""

    events: dict[str, dict[str, Any]]


Body = type[BaseModel] | str | EventStream | None
"""A response body: a model (JSON), a media type (e.g. "image/*"), an event stream, or
none."""


@dataclass(frozen=True)
class Doc:
    summary: str
    responses: dict[int, tuple[str, Body]]
    description: str = ""
    tags: tuple[str, ...] = ("jobs",)
    parameters: tuple[dict[str, Any], ...] = ()
    request_body: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def documented(doc: Doc) -> Callable[[H], H]:
    def attach(handler: H) -> H:
        handler.__openapi__ = doc  # type: ignore[attr-defined]
        return handler

    return attach


def doc_of(handler: object) -> Doc | None:
    return getattr(handler, "__openapi__", None)


def path_parameter(name: str, description: str, pattern: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": pattern},
    }


def query_parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}  # fmt: skip


def error(description: str) -> tuple[str, Body]:
    return description, schemas.ErrorBody


BEARER = "bearerAuth"
SESSION = "sessionCookie"
SECURITY_SCHEMES = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token, when the server requires them (`UPLOAD_API_TOKEN_HASHES`"
        " lists `NAME:SHA256`; `python -m upload.tokens new NAME` makes one). The token's "
        "name is the principal: the owner of the jobs it submits, the only one (with the "
        "auditors) who reads them; another principal's job is 404. The web app signs in "
        f"with a token at /signin instead and holds the encrypted `{SESSION_COOKIE}` cookie.",
    },
    SESSION: {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": "The web app's sign-in (POST /signin with a token): an encrypted, "
        "HttpOnly cookie only the server can make or read.",
    },
}
CSRF_FAILED = error(
    "a browser request from another site (`Sec-Fetch-Site: cross-site` or `same-site`), "
    "or with an `Origin` that is not this host (`csrf_failed`); clients that send neither "
    "header (curl, scripts) are not affected"
)
UNAUTHORIZED = error(
    "no valid `Authorization: Bearer <token>` (nor a signed-in session) while the server "
    "requires API tokens (`unauthorized`, with `WWW-Authenticate: Bearer`)"
)
RATE_LIMITED = error(
    "too many requests from this client (`rate_limited`); retry after `Retry-After` seconds"
)


def openapi_document(
    app: web.Application, *, version: str, tokens_required: bool = False
) -> dict[str, Any]:
    """The OpenAPI document of every documented route of `app`. `tokens_required`: the
    server has API tokens on (otherwise the bearer scheme is optional)."""
    security: list[dict[str, list[str]]] = [{BEARER: []}, {SESSION: []}]
    if not tokens_required:
        security.append({})
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        doc = doc_of(route.handler)
        if doc is None or route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path is None:
            continue
        operation = _operation(route, _guarded(doc, route.method, path))
        if needs_token(path):
            operation["security"] = security
        paths.setdefault(path, {})[route.method.lower()] = operation
    _, definitions = models_json_schema(
        [(model, "serialization") for model in MODELS], ref_template=REF
    )
    return {
        "openapi": "3.2.0",
        "info": {
            "title": "imagemesh",
            "version": version,
            "description": "Upload images, run a pipeline of operations on them, follow the "
            "job live, fetch the result, and read its provenance (W3C PROV) and lineage. "
            'Errors are always `{"error": {"code", "message"}}`.',
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "jobs", "description": "submit and follow image jobs"},
            {"name": "provenance", "description": "history and lineage, for auditors"},
            {"name": "catalogue", "description": "what the pipeline can do"},
            {"name": "service", "description": "health and metadata"},
        ],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _guarded(doc: Doc, method: str, path: str) -> Doc:
    """`doc` with the answers of the guard (upload.guard) where they apply: added to a
    route's own answer of the same status (cancel's 403 for an auditor is also a
    cross-site browser's), unless that answer already names the guard's code."""
    responses = dict(doc.responses)
    if unsafe(method):
        _also(responses, 403, "csrf_failed", CSRF_FAILED)
    if needs_token(path):
        _also(responses, 401, "unauthorized", UNAUTHORIZED)
    if rate_limited(path):
        _also(responses, 429, "rate_limited", RATE_LIMITED)
    return replace(doc, responses=responses)


def _also(
    responses: dict[int, tuple[str, Body]], status: int, code: str, answer: tuple[str, Body]
) -> None:
    own = responses.get(status)
    if own is None:
        responses[status] = answer
    elif f"`{code}`" not in own[0]:
        responses[status] = (f"{own[0]}; or {answer[0]}", own[1])


def _operation(route: web.AbstractRoute, doc: Doc) -> dict[str, Any]:
    name = getattr(route.handler, "__name__", "handler")
    operation: dict[str, Any] = {
        "operationId": name,
        "summary": doc.summary,
        "tags": list(doc.tags),
        "responses": {
            str(status): _response(description, body)
            for status, (description, body) in sorted(doc.responses.items())
        },
    }
    if doc.description:
        operation["description"] = doc.description
    if doc.parameters:
        operation["parameters"] = list(doc.parameters)
    if doc.request_body:
        operation["requestBody"] = doc.request_body
    return operation | doc.extra


def _response(description: str, body: Body) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if isinstance(body, type):
        response["content"] = {JSON: {"schema": {"$ref": REF.format(model=body.__name__)}}}
    elif isinstance(body, EventStream):
        response["content"] = {"text/event-stream": {"itemSchema": _event_schema(body)}}
    elif isinstance(body, str):
        response["content"] = {body: {"schema": {"type": "string", "format": "binary"}}}
    return response


def _event_schema(stream: EventStream) -> dict[str, Any]:
    """One server-sent event of `stream`, as OpenAPI 3.2 reads a stream's items."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": list(stream.events)},
            "data": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer", "minimum": 0},
        },
        "oneOf": [
            {
                "properties": {
                    "event": {"const": name},
                    "data": {"contentMediaType": JSON, "contentSchema": schema},
                }
            }
            for name, schema in stream.events.items()
        ],
    }
