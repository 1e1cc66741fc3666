"""Validation of an upload before anything is stored: size (while streaming), pipeline,
type (by content), pixel count (from the header).

The file is never held whole in memory: it is spooled (`spool.Spool`: a small buffer, then
an unnamed temporary file), hashed on the way in, probed from the spool and stored from it.
The body must keep arriving (`BodyRules`): a sender that pauses longer than the idle
timeout, or falls below the minimum average rate, is cut with 408 and nothing is kept."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from pipeline import (
    ImageInfo,
    ImageLimits,
    ImageRejected,
    Operation,
    PipelineError,
    accepted_format_names,
    parse_pipeline,
    pipeline_to_json,
    probe_file,
    probe_image,
    sniff_format,
)

from .errors import ApiError
from .settings import Settings
from .spool import Spool

CHUNK = 64 * 1024
MAX_PIPELINE_BYTES = 64 * 1024
MULTIPART_OVERHEAD = MAX_PIPELINE_BYTES + 16 * 1024
TIMER_SLACK_SECONDS = 0.01
MAX_PARTS = 8
"""Fields a form may have: `file`, `pipeline`, `callback_url` and a few a browser or client
adds."""
MAX_CALLBACK_BYTES = 4 * 1024
"""More than a URL may be (2048 characters, `ssrf.MAX_URL_LENGTH`): read, then refused."""


@dataclass(frozen=True, slots=True)
class BodyRules:
    """How an upload's body must arrive, and how much of it may be held in memory."""

    idle_seconds: float = 30.0
    """The longest pause between two pieces of the body."""
    min_bytes_per_second: int = 0
    """The slowest average rate: the whole body is due `idle_seconds` + Content-Length /
    this after the request started (0: no such deadline)."""
    memory_bytes: int = 1024 * 1024
    """How much of the file is held in memory before the rest goes to a temporary file."""
    spool_dir: str = ""
    """Where those temporary files are made ("": the system's, TMPDIR)."""

    def deadline(self, started: float, length: int) -> float:
        if not self.min_bytes_per_second:
            return math.inf
        return started + self.idle_seconds + length / self.min_bytes_per_second


def body_rules(settings: Settings) -> BodyRules:
    return BodyRules(
        idle_seconds=settings.upload_body_timeout_seconds,
        min_bytes_per_second=settings.upload_body_min_bytes_per_second,
        memory_bytes=settings.upload_spool_memory_bytes,
        spool_dir=settings.upload_spool_dir,
    )


@dataclass(frozen=True, slots=True)
class Upload:
    """An accepted upload; its file is in `spool` until the upload is closed (`with`)."""

    spool: Spool
    filename: str | None
    pipeline: list[dict[str, Any]]
    info: ImageInfo
    sha256: str
    callback_url: str | None = None
    """As the form gave it: checked by `ssrf` before the job is submitted."""

    @property
    def size(self) -> int:
        return self.spool.size

    def measured(self) -> dict[str, Any]:
        """What the intake measured of the image: the received event and the stored
        input's reference both say it."""
        return {
            "sha256": self.sha256,
            "bytes": self.size,
            "format": self.info.format.value,
            "width": self.info.width,
            "height": self.info.height,
        }

    def close(self) -> None:
        self.spool.close()

    def __enter__(self) -> Upload:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()


async def read_upload(
    request: web.Request,
    *,
    max_bytes: int,
    limits: ImageLimits,
    max_ops: int,
    body: BodyRules = BodyRules(),  # frozen: one shared default is safe
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
    spool = Spool(memory=body.memory_bytes, directory=body.spool_dir)
    try:
        filename, raw_pipeline, callback = await _read_form(request, spool, max_bytes, body)
        ops = _parse(raw_pipeline, max_ops)
        if sniff_format(spool.head) is None:
            raise ApiError(
                415,
                "unsupported_type",
                f"the file is not an image type we accept ({accepted_format_names()}); "
                "the type is decided by the content, not the name",
            )
        await spool.finish()
        info = await asyncio.to_thread(_probe, spool, limits)
        return Upload(spool, filename, pipeline_to_json(ops), info, spool.sha256, callback)
    except BaseException:
        spool.close()  # nothing of a refused upload is kept, in memory or on disk
        raise


async def _read_form(
    request: web.Request, spool: Spool, max_bytes: int, rules: BodyRules
) -> tuple[str | None, str, str | None]:
    """Read the form into `spool` (the file) within the body's time rules."""
    loop = asyncio.get_running_loop()
    deadline = rules.deadline(loop.time(), request.content_length or 0)
    try:
        async with asyncio.timeout(None) as timer:

            def progress() -> None:
                """Bytes arrived: the next are due within the idle time (or the deadline)."""
                timer.reschedule(min(loop.time() + rules.idle_seconds, deadline))

            progress()
            try:
                reader = await request.multipart()
            except (AssertionError, ValueError, KeyError) as exc:
                raise ApiError(
                    400, "bad_request", "expected multipart/form-data with a `file` field"
                ) from exc
            try:
                found, filename, raw_pipeline, callback = await _read_parts(
                    reader, spool, max_bytes, progress
                )
            except (HttpProcessingError, ValueError, AssertionError, RuntimeError) as exc:
                # Broken part headers or boundaries: the client's fault, said plainly.
                raise ApiError(
                    400, "bad_request", f"malformed multipart form: {_first_line(exc)}"
                ) from exc
    except TimeoutError as exc:
        # Event loops may run a timer up to their clock's resolution early (uvloop's is a
        # millisecond): a timer at the deadline is the deadline.
        raise _too_slow(rules, loop.time() >= deadline - TIMER_SLACK_SECONDS) from exc
    if not found:
        raise ApiError(400, "missing_file", "the form has no `file` field")
    return filename, raw_pipeline, callback


async def _read_parts(
    reader: MultipartReader, spool: Spool, max_bytes: int, progress: Callable[[], None]
) -> tuple[bool, str | None, str, str | None]:
    """The form's `file` (into `spool`), `pipeline` and `callback_url`; a few other fields
    are read (bounded) and dropped. Returns (file found, its name, the pipeline, the
    callback URL or None)."""
    found = False
    filename: str | None = None
    raw_pipeline = "[]"
    callback: str | None = None
    too_large = _too_large(max_bytes)
    parts = 0
    while (part := await reader.next()) is not None:
        progress()
        parts += 1
        if parts > MAX_PARTS:
            raise ApiError(400, "bad_request", f"the form has more than {MAX_PARTS} fields")
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "bad_request", "nested multipart is not supported")
        if part.name == "file":
            if found:  # one job per file; and a second would need a second spool
                raise ApiError(400, "bad_request", "the form has more than one `file` field")
            found, filename = True, _text_of(part.filename)
            await _spool_limited(part, spool, max_bytes, too_large, progress)
        elif part.name == "pipeline":
            too_long = ApiError(
                400, "invalid_pipeline", f"pipeline exceeds {MAX_PIPELINE_BYTES} bytes"
            )
            raw = await _read_limited(part, MAX_PIPELINE_BYTES, too_long, progress)
            raw_pipeline = raw.decode("utf-8", "replace").strip() or "[]"
        elif part.name == "callback_url":
            too_long = ApiError(400, "bad_callback_url", "callback_url: too long")
            raw = await _read_limited(part, MAX_CALLBACK_BYTES, too_long, progress)
            # As given: an empty or padded URL is refused, not guessed at (`ssrf.checked_url`).
            callback = raw.decode("utf-8", "replace")
        else:
            await _read_limited(part, MULTIPART_OVERHEAD, too_large, progress)
    return found, filename, raw_pipeline, callback


async def _spool_limited(
    part: BodyPartReader,
    spool: Spool,
    limit: int,
    error: ApiError,
    progress: Callable[[], None],
) -> None:
    while chunk := await part.read_chunk(CHUNK):
        progress()
        if spool.size + len(chunk) > limit:
            raise error
        await spool.write(chunk)


async def _read_limited(
    part: BodyPartReader, limit: int, error: ApiError, progress: Callable[[], None]
) -> bytes:
    buffer = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        progress()
        buffer += chunk
        if len(buffer) > limit:
            raise error
    return bytes(buffer)


def _parse(raw: object, max_ops: int) -> tuple[Operation, ...]:
    try:
        return parse_pipeline(raw, max_ops=max_ops)
    except PipelineError as exc:
        raise ApiError(400, "invalid_pipeline", str(exc)) from exc


def validated_pipeline(raw: object, max_ops: int) -> list[dict[str, Any]]:
    """A pipeline checked as a submission's is (a list, or its JSON text), in the form a job
    carries it (defaults included); 400 `invalid_pipeline` naming the operation and
    parameter. For a retry's pipeline, given or the retried job's."""
    return pipeline_to_json(_parse(raw, max_ops))


def _probe(spool: Spool, limits: ImageLimits) -> ImageInfo:
    try:
        if spool.on_disk:  # read by libvips from the file, never into memory
            return probe_file(spool.fileno(), limits=limits)
        return probe_image(spool.data(), limits=limits)
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


def _too_slow(rules: BodyRules, past_deadline: bool) -> ApiError:
    if past_deadline:
        reason = f"slower than {rules.min_bytes_per_second} bytes per second on average"
    else:
        reason = f"nothing arrived for {rules.idle_seconds:g} s"
    return ApiError(
        408,
        "body_timeout",
        f"the upload arrived too slowly ({reason}); nothing was stored, send it again",
        headers={"Connection": "close"},
    )
