"""An async client of imagemesh's public HTTP API (`/api/v1`), over aiohttp.

Exceptions:

    ImagemeshError
    ├── ApiError          the API answered with an error ({"error": {"code", "message"}})
    └── Unavailable       no usable answer: a 503 that outlasted the retry deadline, ...
        ├── Unreachable   ... no connection at all (nothing was sent)
        └── Disconnected  ... or a connection lost while reading a response

A 503 is retried for up to `retry_for` seconds, waiting as its `Retry-After` asks."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any, Self

import aiohttp

from .sse import ServerSentEvent, SSEDecoder

__all__ = [
    "ApiClient",
    "ApiError",
    "Disconnected",
    "Download",
    "ImagemeshError",
    "Unavailable",
    "Unreachable",
]

DEFAULT_URL = "http://localhost:8000"
DEFAULT_RETRY_AFTER = 1.0
"""Seconds to wait after a 503 that does not say how long."""
RETRIED = frozenset({429, 503})
"""Busy (rate limited) or unavailable: both say when to come back (`Retry-After`)."""
MIN_RETRY_AFTER = 0.1
"""A 503 saying `Retry-After: 0` is retried this soon, not in a busy loop."""
JSON_BODY = {"Content-Type": "application/json"}
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
"""No limit on a whole request (uploads and event streams may be long), but on each read:
a stream silent for a minute is treated as dropped, and reconnected."""
DOWNLOAD_CHUNK_BYTES = 256 * 1024
"""How much of a download is held at once: a zip of many results is never whole in memory."""


class ImagemeshError(Exception):
    """Anything that stops a request from getting its answer."""


class ApiError(ImagemeshError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Unavailable(ImagemeshError):
    pass


class Unreachable(Unavailable):
    pass


class Disconnected(Unavailable):
    pass


class ApiClient:
    """One HTTP session with the API; use it as an async context manager."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        retry_for: float = 30.0,
        token: str | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry_for = retry_for
        self.token = token
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        if self._session is None:
            headers = {"User-Agent": f"imagemesh-cli/{_version()}"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self._session = aiohttp.ClientSession(timeout=TIMEOUT, headers=headers)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def operations(self) -> list[dict[str, Any]]:
        """The catalogue: each operation's name, description and params JSON Schema."""
        body = await self._json("GET", "/api/v1/operations")
        operations: list[dict[str, Any]] = body["operations"]
        return operations

    async def submit(
        self,
        data: bytes,
        filename: str,
        pipeline: list[dict[str, Any]],
        *,
        callback_url: str | None = None,
    ) -> dict[str, Any]:
        """Upload one image with its pipeline (and a webhook URL, told of the job's end):
        the 202 body (`id`, `status`, `links`)."""

        def form() -> aiohttp.FormData:
            # A FormData is spent once sent: a retry after a 503 needs a fresh one. The file
            # name goes as browsers send it (UTF-8, quotes escaped), not percent-encoded:
            # the server keeps what it reads, and `holiday photo.jpg` would stay `%20`.
            fields = aiohttp.FormData(quote_fields=False)
            fields.add_field(
                "file", data, filename=filename, content_type="application/octet-stream"
            )
            fields.add_field("pipeline", json.dumps(pipeline))
            if callback_url is not None:
                fields.add_field("callback_url", callback_url)
            return fields

        return await self._json("POST", "/api/v1/jobs", data=form)

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/api/v1/jobs/{job_id}")

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask to cancel a queued or processing job: the 202 body (`id`, `status` when
        asked, `links`). Sent again after a 503: asking twice is harmless."""
        return await self._json("POST", f"/api/v1/jobs/{job_id}/cancel")

    async def webhook_key(self) -> dict[str, Any]:
        """The caller's own webhook signing key: `secret`, `generation`, `principal`,
        `signature_header`, `algorithm` (404 `webhooks_off` when the server has none)."""
        return await self._json("GET", "/api/v1/webhooks/secret")

    async def erase(self, job_id: str) -> None:
        """Erase a finished job: its images are deleted, its record stays (204, no body).
        Sent again after a 503: a repeated erasure completes the first."""
        async with self._open("DELETE", f"/api/v1/jobs/{job_id}"):
            pass

    async def retry(
        self, job_id: str, pipeline: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Retry a failed or cancelled job as a new job on its stored input, with
        `pipeline` (None: the job's own): the 202 body (the new job's `id`, `retry_of`,
        `status`, `links`). Sent again after a 503, which made no job."""
        path = f"/api/v1/jobs/{job_id}/retry"
        if pipeline is None:
            return await self._json("POST", path)
        body = json.dumps({"pipeline": pipeline}).encode()
        return await self._json("POST", path, data=lambda: body, headers=JSON_BODY)

    async def jobs(
        self,
        *,
        status: str | None = None,
        limit: int | None = None,
        before: str | None = None,
        id_prefix: str | None = None,
    ) -> dict[str, Any]:
        """One page of recent jobs, newest first: `{"jobs": [...], "next": cursor | None}`;
        with `id_prefix`, the caller's jobs whose id starts with it."""
        query = {"status": status, "limit": limit, "before": before, "id_prefix": id_prefix}
        params = {name: str(value) for name, value in query.items() if value is not None}
        return await self._json("GET", "/api/v1/jobs", params=params)

    async def result(self, job_id: str) -> tuple[bytes, str]:
        """The output image's bytes and content type."""
        async with self._open("GET", f"/api/v1/jobs/{job_id}/result") as response:
            return await _read(response), response.content_type

    @asynccontextmanager
    async def result_download(self, job_id: str) -> AsyncIterator[Download]:
        """The output image as it arrives, chunk by chunk (for `imagemesh download`)."""
        async with self._open("GET", f"/api/v1/jobs/{job_id}/result") as response:
            yield Download(response)

    @asynccontextmanager
    async def results_zip(self, job_ids: Sequence[str]) -> AsyncIterator[Download]:
        """A zip of the results of `job_ids` (all succeeded jobs of the caller's, or the
        API refuses naming those that are not), as it arrives."""
        params = {"ids": ",".join(job_ids)}
        async with self._open("GET", "/api/v1/results.zip", params=params) as response:
            yield Download(response)

    async def events(
        self, job_id: str, *, last_event_id: str | None = None
    ) -> AsyncGenerator[ServerSentEvent, None]:
        """The job's server-sent events until the server closes the stream.

        Raises ApiError (404 also when the server has no event stream at all),
        Unreachable, or Disconnected when the stream breaks off."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        path = f"/api/v1/jobs/{job_id}/events"
        async with self._open("GET", path, headers=headers) as response:
            if response.content_type != "text/event-stream":
                raise ApiError(404, "not_found", f"{path} is not an event stream")
            decoder = SSEDecoder()
            try:
                async for chunk in response.content.iter_any():
                    for event in decoder.feed(chunk):
                        yield event
                for event in decoder.close():
                    yield event
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Disconnected(f"the event stream of job {job_id} broke off: {exc}") from exc

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Callable[[], aiohttp.FormData | bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        async with self._open(method, path, params=params, data=data, headers=headers) as response:
            body = await _read(response)
        try:
            decoded = json.loads(body)
        except ValueError as exc:
            raise ApiError(response.status, "bad_response", f"{path}: not JSON") from exc
        if not isinstance(decoded, dict):
            raise ApiError(response.status, "bad_response", f"{path}: not a JSON object")
        return decoded

    @asynccontextmanager
    async def _open(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Callable[[], aiohttp.FormData | bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A successful response, its body unread; errors raised as this module's."""
        if self._session is None:
            raise RuntimeError("use the ApiClient as `async with ApiClient(...) as client`")
        url = self.base_url + path
        deadline = time.monotonic() + self.retry_for
        while True:
            try:
                response = await self._session.request(
                    method,
                    url,
                    params=params,
                    data=data() if data else None,
                    headers=headers,
                )
            except aiohttp.ClientConnectorError as exc:
                raise Unreachable(f"cannot reach imagemesh at {self.base_url}: {exc}") from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Disconnected(f"{method} {path}: the connection broke off: {exc}") from exc
            if response.status < 400:
                try:
                    yield response
                finally:
                    response.release()
                return
            error = await _error_of(response)
            response.release()
            if response.status not in RETRIED:
                raise error
            pause = _retry_after(response.headers.get("Retry-After"))
            if time.monotonic() + pause > deadline:
                raise Unavailable(error.message)
            await asyncio.sleep(pause)


@dataclass(frozen=True, slots=True)
class Download:
    """A successful response whose body is read in chunks, never whole."""

    response: aiohttp.ClientResponse

    @property
    def content_type(self) -> str:
        return self.response.content_type

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, DOWNLOAD_CHUNK_BYTES at most at a time; Disconnected when the
        connection breaks off or the server cuts the body short."""
        try:
            async for chunk in self.response.content.iter_chunked(DOWNLOAD_CHUNK_BYTES):
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Disconnected(f"the download broke off: {exc}") from exc


async def _read(response: aiohttp.ClientResponse) -> bytes:
    try:
        return await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Disconnected(f"the connection broke off while reading: {exc}") from exc


async def _error_of(response: aiohttp.ClientResponse) -> ApiError:
    """The API's `{"error": {"code", "message"}}`, or what can be said without it."""
    try:
        body = json.loads(await response.read())
        error = body["error"]
        return ApiError(response.status, str(error["code"]), str(error["message"]))
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
        reason = response.reason or "error"
        return ApiError(response.status, "http_error", f"HTTP {response.status} {reason}")


def _retry_after(value: str | None) -> float:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date)."""
    if not value:
        return DEFAULT_RETRY_AFTER
    if value.strip().isdigit():
        return max(float(value), MIN_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), MIN_RETRY_AFTER)


def _version() -> str:
    try:
        return version("imagemesh-cli")
    except PackageNotFoundError:
        return "0"
