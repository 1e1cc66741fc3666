"""Validation of an upload before anything is stored: size (while streaming), pipeline,
type (by content), pixel count (from the header)."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from pipeline import (
    ImageInfo,
    ImageLimits,
    ImageRejected,
    Operation,
    PipelineError,
    parse_pipeline,
    pipeline_to_json,
    probe_image,
    sniff_format,
)

from .errors import ApiError

CHUNK = 64 * 1024
MAX_PIPELINE_BYTES = 64 * 1024
MULTIPART_OVERHEAD = MAX_PIPELINE_BYTES + 16 * 1024
MAX_PARTS = 8
"""Fields a form may have: `file`, `pipeline` and a few a browser or client adds."""


@dataclass(frozen=True, slots=True)
class Upload:
    data: bytes
    filename: str | None
    pipeline: list[dict[str, Any]]
    info: ImageInfo
    sha256: str


async def read_upload(
    request: web.Request, *, max_bytes: int, limits: ImageLimits, max_ops: int
) -> Upload:
    # The whole body is bounded before anything is read: a chunked request (no length)
    # could otherwise send a preamble or fields without end before the form is parsed.
    if request.content_length is None:
        raise ApiError(
            411,
            "length_required",
            "send the upload with a Content-Length (chunked uploads are not accepted)",
        )
    if request.content_length > max_bytes + MULTIPART_OVERHEAD:
        raise _too_large(max_bytes)
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError) as exc:
        raise ApiError(
            400, "bad_request", "expected multipart/form-data with a `file` field"
        ) from exc
    try:
        data, filename, raw_pipeline = await _read_parts(reader, max_bytes)
    except (HttpProcessingError, ValueError, AssertionError, RuntimeError) as exc:
        # Broken part headers or boundaries: the client's fault, said plainly.
        raise ApiError(400, "bad_request", f"malformed multipart form: {_first_line(exc)}") from exc
    if data is None:
        raise ApiError(400, "missing_file", "the form has no `file` field")
    ops = _parse(raw_pipeline, max_ops)
    if sniff_format(data[:64]) is None:
        raise ApiError(
            415,
            "unsupported_type",
            "the file is not an image type we accept (JPEG, PNG, WebP, GIF, TIFF, AVIF); "
            "the type is decided by the content, not the name",
        )
    info = await asyncio.to_thread(_probe, data, limits)
    digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
    return Upload(data, filename, pipeline_to_json(ops), info, digest)


async def _read_parts(
    reader: MultipartReader, max_bytes: int
) -> tuple[bytes | None, str | None, str]:
    """The form's `file` and `pipeline`; a few other fields are read (bounded) and dropped."""
    data: bytes | None = None
    filename: str | None = None
    raw_pipeline = "[]"
    too_large = _too_large(max_bytes)
    parts = 0
    while (part := await reader.next()) is not None:
        parts += 1
        if parts > MAX_PARTS:
            raise ApiError(400, "bad_request", f"the form has more than {MAX_PARTS} fields")
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "bad_request", "nested multipart is not supported")
        if part.name == "file":
            data, filename = (
                await _read_limited(part, max_bytes, _too_large(max_bytes)),
                _text_of(part.filename),
            )
        elif part.name == "pipeline":
            too_long = ApiError(
                400, "invalid_pipeline", f"pipeline exceeds {MAX_PIPELINE_BYTES} bytes"
            )
            raw = await _read_limited(part, MAX_PIPELINE_BYTES, too_long)
            raw_pipeline = raw.decode("utf-8", "replace").strip() or "[]"
        else:
            await _read_limited(part, MULTIPART_OVERHEAD, too_large)
    return data, filename, raw_pipeline


async def _read_limited(part: BodyPartReader, limit: int, error: ApiError) -> bytes:
    buffer = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        buffer += chunk
        if len(buffer) > limit:
            raise error
    return bytes(buffer)


def _parse(raw: str, max_ops: int) -> tuple[Operation, ...]:
    try:
        return parse_pipeline(raw, max_ops=max_ops)
    except PipelineError as exc:
        raise ApiError(400, "invalid_pipeline", str(exc)) from exc


def _probe(data: bytes, limits: ImageLimits) -> ImageInfo:
    try:
        return probe_image(data, limits=limits)
    except ImageRejected as exc:
        status = 415 if exc.code == "unsupported_type" else 422
        raise ApiError(status, exc.code, exc.message) from exc


def _text_of(filename: str | None) -> str | None:
    """The name as given, made valid UTF-8 (undecodable bytes become U+FFFD): it travels in
    events and documents, never as a path."""
    if filename is None:
        return None
    return filename.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _first_line(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(text).strip().splitlines()[0][:200]


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413,
        "too_large",
        f"the file exceeds the {max_bytes // (1024 * 1024)} MiB limit ({max_bytes} bytes)",
    )
