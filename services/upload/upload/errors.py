"""The API's error shape: {"error": {"code": ..., "message": ...}} with a matching status."""

from __future__ import annotations

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

log = structlog.get_logger("upload")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.headers = headers

    def response(self) -> web.Response:
        headers = dict(self.headers or {})
        if self.retry_after:
            headers["Retry-After"] = str(self.retry_after)
        return error_response(self.status, self.code, self.message, headers=headers or None)


def error_response(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        log.info(
            "request_refused",
            path=request.path,
            status=exc.status,
            code=exc.code,
            reason=exc.message,
        )
        return exc.response()
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400:
            raise
        return error_response(
            exc.status, _code_for(exc.status), exc.reason, headers=_kept_headers(exc)
        )
    except Exception:
        log.exception("request_failed", path=request.path)
        return error_response(500, "internal", "internal error; the incident is logged")


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


async def security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """On every answer: only our own scripts, styles and images (no inline script, no CDN);
    never framed, never sniffed, no referrer to other sites."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")


KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")
"""Headers of an HTTP exception that belong to its status (a 405's `Allow` is required by
RFC 9110 15.5.6), kept when the exception becomes a JSON error body."""


def _kept_headers(exc: web.HTTPException) -> dict[str, str] | None:
    kept = {name: exc.headers[name] for name in KEPT_HEADERS if name in exc.headers}
    return kept or None


def _code_for(status: int) -> str:
    return {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(status, "http_error")
