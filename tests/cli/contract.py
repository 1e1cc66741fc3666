"""The public API's contract as the upload service documents it, for the CLI's fake API.

The fake (fake.py) stands in for upload in the CLI's tests; if it answered what upload
never does, those tests would prove nothing. So every answer it gives is checked here
against upload's own OpenAPI document (built from its routes, the same `openapi_document`
GET /api/v1/openapi.json serves): the route must exist, the status must be one upload
documents for it, the media type must match, and a JSON body must be accepted (strictly:
no extra fields, no coercion) by the `upload.schemas` model the document names. A job in an
event stream's `status` event is a `schemas.Job`, as the events route documents."""

from __future__ import annotations

import functools
import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from upload import schemas

__all__ = ["ContractViolation", "check_answer", "check_job"]

REF_PREFIX = "#/components/schemas/"
JSON = "application/json"


class ContractViolation(AssertionError):
    """The fake answered something the real API does not."""


@functools.cache
def document() -> dict[str, Any]:
    """upload's OpenAPI document (no server: the routes' documentation only)."""
    import upload.app  # noqa: F401  # registers every route on the shared table
    from upload.openapi import openapi_document
    from upload.routes import routes

    app = web.Application()
    app.router.add_routes(routes)
    return openapi_document(app, version="contract")


def check_answer(
    method: str, route: str, status: int, content_type: str, body: bytes | None
) -> None:
    """Raises ContractViolation unless upload documents this answer for `method route`
    (`route` as aiohttp writes a resource, e.g. /api/v1/jobs/{job_id})."""
    operation = document()["paths"].get(route, {}).get(method.lower())
    if operation is None:
        raise ContractViolation(f"upload has no route {method} {route}")
    response = operation["responses"].get(str(status))
    if response is None:
        known = ", ".join(operation["responses"])
        raise ContractViolation(f"upload never answers {method} {route} with {status} ({known})")
    content: dict[str, Any] = response.get("content", {})
    media = next((m for m in content if _media_matches(m, content_type)), None)
    if media is None:
        raise ContractViolation(
            f"{method} {route} {status}: {content_type!r}, upload answers {sorted(content)}"
        )
    if media == JSON:
        _validate(_model(content[JSON]["schema"]), body or b"", f"{method} {route} {status}")


def check_job(job: dict[str, Any]) -> None:
    """Raises ContractViolation unless `job` is a job as upload shows one."""
    _validate(schemas.Job, json.dumps(job).encode(), "a job")


def _media_matches(documented: str, actual: str) -> bool:
    kind, _, subtype = documented.partition("/")
    actual_kind, _, actual_subtype = actual.partition(";")[0].strip().partition("/")
    return kind == actual_kind and subtype in {"*", actual_subtype}


def _model(schema: dict[str, Any]) -> type[BaseModel]:
    ref = schema.get("$ref", "")
    if not ref.startswith(REF_PREFIX):
        raise ContractViolation(f"no model for the schema {schema}")
    model = getattr(schemas, ref.removeprefix(REF_PREFIX), None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ContractViolation(f"{ref} is not a model of upload.schemas")
    return model


def _validate(model: type[BaseModel], body: Any, what: str) -> None:
    if not isinstance(body, bytes):
        raise ContractViolation(f"{what}: the body is not bytes ({type(body).__name__})")
    try:
        model.model_validate_json(body, strict=True)
    except ValidationError as exc:
        raise ContractViolation(f"{what} is not a valid {model.__name__}: {exc}") from exc
