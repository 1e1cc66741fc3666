"""The commands: `submit`, `status`, `history`. Each takes a connected ApiClient and a
Printer and returns the process's exit code; `run` maps what they raise to exit codes."""

from __future__ import annotations

import asyncio
import enum
import mimetypes
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .api import ApiClient, ApiError, Unavailable
from .follow import StatusChanged, follow
from .pipeline import OpSpec, PipelineError, build_pipeline, load_pipeline, parse_op
from .pipeline import validate_pipeline as check_pipeline
from .render import Printer, history_line, job_lines, status_text, step_text
from .statuses import FAILED, QUEUED, SUCCEEDED

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "UsageError",
    "history",
    "run",
    "status",
    "submit",
]

EXIT_OK = 0
EXIT_FAILED = 1
"""A job failed, an upload was refused, or the API answered an error."""
EXIT_USAGE = 2
"""Bad arguments or a pipeline the catalogue refuses: nothing was submitted."""
EXIT_UNAVAILABLE = 3
"""The service could not be reached, or stayed unavailable past the retry deadline."""

HISTORY_PAGE = 100
MIN_PREFIX = 6
"""The shortest job id prefix accepted (as the server: 16.7 million values)."""
_FULL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PREFIX = re.compile(rf"^[0-9a-f]{{{MIN_PREFIX}}}[0-9a-f-]{{0,30}}$")
_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/avif": "avif",
    "image/tiff": "tiff",
    "image/gif": "gif",
}

Command = Callable[[ApiClient, Printer], Awaitable[int]]


class UsageError(Exception):
    pass


class Outcome(enum.IntEnum):
    """One file's fate, ordered by how much it weighs on the exit code."""

    SUCCEEDED = EXIT_OK
    FAILED = EXIT_FAILED
    UNAVAILABLE = EXIT_UNAVAILABLE


async def run(client: ApiClient, printer: Printer, command: Command) -> int:
    """Run `command` with a connected client; errors become messages and exit codes."""
    try:
        async with client:
            return await command(client, printer)
    except (UsageError, PipelineError) as exc:
        for line in str(exc).splitlines():
            printer.error(line)
        return EXIT_USAGE
    except ApiError as exc:
        printer.error(exc.message)
        return EXIT_USAGE if exc.status == 400 else EXIT_FAILED
    except Unavailable as exc:
        printer.error(str(exc))
        return EXIT_UNAVAILABLE


# --- submit -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Waiting:
    """How `submit --wait` follows its jobs."""

    output: Path
    timeout: float | None = None


async def submit(
    client: ApiClient,
    printer: Printer,
    *,
    files: Sequence[Path],
    ops: Sequence[str] = (),
    pipeline_json: str | None = None,
    pipeline_source: str = "--pipeline",
    wait: Waiting | None = None,
    callback_url: str | None = None,
) -> int:
    """One job per file, all with the same pipeline (and `callback_url`, a webhook told of
    each job's end); with `wait`, follow them to the end."""
    specs = [parse_op(op) for op in ops]  # syntax first: no round trip for a typo
    missing = [str(path) for path in files if not await asyncio.to_thread(path.is_file)]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    pipeline = await _pipeline(client, specs, pipeline_json, pipeline_source)
    outcomes: list[Outcome] = []
    following: list[asyncio.Task[Outcome]] = []
    for path in files:
        started = time.monotonic()
        job_id, outcome = await _submit_one(client, printer, path, pipeline, callback_url)
        if job_id is not None and wait is not None:
            job = _Job(job_id, path, started, len(pipeline))
            following.append(asyncio.create_task(_follow_one(client, printer, job, wait)))
        else:
            outcomes.append(outcome)
        if outcome is Outcome.UNAVAILABLE:
            break
    outcomes += await asyncio.gather(*following)
    return int(max(outcomes, default=Outcome.SUCCEEDED))


async def _pipeline(
    client: ApiClient, specs: list[OpSpec], text: str | None, source: str
) -> list[dict[str, Any]]:
    """The pipeline to send, checked against the server's catalogue."""
    given = load_pipeline(text, source=source) if text is not None else None
    if not specs and not given:
        return []
    catalogue = await client.operations()
    pipeline = given if given is not None else build_pipeline(specs, catalogue)
    check_pipeline(pipeline, catalogue)
    return pipeline


async def _submit_one(
    client: ApiClient,
    printer: Printer,
    path: Path,
    pipeline: list[dict[str, Any]],
    callback_url: str | None = None,
) -> tuple[str | None, Outcome]:
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        printer.problem(
            {"event": "unreadable", "file": str(path), "message": exc.strerror},
            f"{path}: {exc.strerror}",
        )
        return None, Outcome.FAILED
    try:
        accepted = await client.submit(data, path.name, pipeline, callback_url=callback_url)
    except ApiError as exc:
        if exc.status == 400:
            raise  # the request itself is wrong: the same for every file
        record = {"event": "refused", "file": str(path), "status": exc.status}
        printer.problem(
            {**record, "error": {"code": exc.code, "message": exc.message}},
            f"{path}: refused ({exc.code}): {exc.message}",
        )
        return None, Outcome.FAILED
    except Unavailable as exc:
        printer.problem(
            {"event": "unavailable", "file": str(path), "message": str(exc)},
            f"{path}: not submitted: {exc}",
        )
        return None, Outcome.UNAVAILABLE
    job_id = str(accepted["id"])
    printer.emit(
        {"event": "submitted", "file": str(path), "job_id": job_id, **_links(accepted)},
        f"{job_id}  {path}",
    )
    return job_id, Outcome.SUCCEEDED


def _links(accepted: dict[str, Any]) -> dict[str, Any]:
    return {key: accepted[key] for key in ("status", "links") if key in accepted}


@dataclass(frozen=True, slots=True)
class _Job:
    id: str
    path: Path
    started: float
    operations: int

    @property
    def short(self) -> str:
        return self.id[:8]

    def line(self, text: str) -> str:
        return f"{self.short}  +{time.monotonic() - self.started:.1f}s  {text}"

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        elapsed = round(time.monotonic() - self.started, 3)
        return {
            "event": event,
            "job_id": self.id,
            "file": str(self.path),
            "elapsed": elapsed,
            **fields,
        }


async def _follow_one(client: ApiClient, printer: Printer, job: _Job, wait: Waiting) -> Outcome:
    """Print the job's progress until it ends; save its result if it succeeded."""
    scope = asyncio.timeout(wait.timeout)
    last: dict[str, Any] = {"status": QUEUED}
    try:
        async with scope, aclosing(follow(client, job.id)) as updates:
            async for update in updates:
                if isinstance(update, StatusChanged):
                    last = update.job
                    _print_status(printer, job, update.job)
                else:
                    printer.emit(
                        job.record("step", step=update.step),
                        job.line(step_text(update.step, job.operations or None)),
                    )
        if last.get("status") != SUCCEEDED:
            return Outcome.FAILED
        await _save_result(client, printer, job, wait.output)
    except TimeoutError:
        if not scope.expired():
            raise
        message = f"gave up waiting after {wait.timeout:g} s: the job is still {last['status']}"
        printer.problem(job.record("timeout", message=message), job.line(message))
        return Outcome.FAILED
    except ApiError as exc:
        error = {"code": exc.code, "message": exc.message}
        printer.problem(job.record("error", status=exc.status, error=error), job.line(exc.message))
        return Outcome.FAILED
    except Unavailable as exc:
        printer.problem(job.record("unavailable", message=str(exc)), job.line(str(exc)))
        return Outcome.UNAVAILABLE
    return Outcome.SUCCEEDED


def _print_status(printer: Printer, job: _Job, snapshot: dict[str, Any]) -> None:
    status = str(snapshot.get("status"))
    record = job.record("status", status=status, job=snapshot)
    if status == FAILED:
        printer.problem(record, job.line(status_text(snapshot)))
    else:
        printer.emit(record, job.line(status_text(snapshot)))


async def _save_result(client: ApiClient, printer: Printer, job: _Job, output: Path) -> None:
    data, content_type = await client.result(job.id)
    target = output / f"{job.path.stem}-{job.short}.{extension_for(content_type)}"
    await asyncio.to_thread(_write, target, data)
    printer.emit(
        job.record("saved", path=str(target), bytes=len(data), content_type=content_type),
        job.line(f"saved {target}"),
    )


def extension_for(content_type: str) -> str:
    """`jpg` for image/jpeg, ...; `bin` for a type nobody knows."""
    known = _EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type)
    return (known or "bin").lstrip(".")


def _write(target: Path, data: bytes) -> None:
    """Whole or not at all: a file of that name is never half written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    partial.replace(target)


# --- status, history ------------------------------------------------------------------------


async def status(client: ApiClient, printer: Printer, *, job_id: str) -> int:
    job = await client.job(await resolve_job_id(client, job_id))
    if printer.json_mode:
        printer.emit(job, None)
    else:
        for line in job_lines(job):
            printer.emit(job, line)
    return EXIT_OK


async def cancel(client: ApiClient, printer: Printer, *, job_id: str) -> int:
    """Ask the server to cancel one of your jobs (queued or processing). The job then ends
    `cancelled`, unless it finished while the request travelled: `status` tells."""
    accepted = await client.cancel(await resolve_job_id(client, job_id))
    line = (
        f"{accepted.get('id')}  cancel requested (was {accepted.get('status')}); "
        "`imagemesh status` shows how it ends"
    )
    printer.emit(accepted, line)
    return EXIT_OK


async def webhook_key(client: ApiClient, printer: Printer) -> int:
    """Print your webhook signing key: what a receiver checks `X-Imagemesh-Signature`
    with. Exit 1 when the server has webhooks off."""
    key = await client.webhook_key()
    lines = [
        f"key         {key.get('secret')}",
        f"generation  {key.get('generation')}  (an operator's rotation raises it)",
        f"principal   {key.get('principal')}",
        f"each webhook carries {key.get('signature_header')}: sha256=<hex HMAC-SHA256 of "
        "the exact body, keyed with the key's text>",
    ]
    if printer.json_mode:
        printer.emit(key, None)
    else:
        for line in lines:
            printer.emit(key, line)
    return EXIT_OK


async def resolve_job_id(client: ApiClient, given: str) -> str:
    """The whole id of the job `given` names: a whole id as it is, or a prefix of one (the
    8 characters shown everywhere; at least MIN_PREFIX) that exactly one of the caller's
    jobs starts with. UsageError listing the candidates when several do; ApiError 404
    when none does. Only the caller's own jobs are candidates (the server scopes the
    lookup; an older server that ignores `id_prefix` answers its recent jobs, which are
    filtered here as well)."""
    text = given.strip().lower()
    if _FULL_ID.match(text):
        return text
    if not _PREFIX.match(text):
        raise UsageError(
            f"{given!r} is not a job id: give the whole id or at least {MIN_PREFIX} "
            "characters of its start (e.g. the 8 shown by submit and history)"
        )
    page = await client.jobs(id_prefix=text)
    jobs = [job for job in page.get("jobs") or [] if isinstance(job, dict)]
    candidates = [job for job in jobs if str(job.get("id")).startswith(text)]
    if not candidates:
        raise ApiError(404, "not_found", f"no job of yours starts with {text}")
    if len(candidates) > 1:
        lines = [f"{text} matches {len(candidates)} of your jobs; give more of the id:"]
        raise UsageError("\n".join(lines + [f"  {history_line(job)}" for job in candidates]))
    return str(candidates[0]["id"])


async def history(
    client: ApiClient, printer: Printer, *, status: str | None = None, limit: int = 20
) -> int:
    """Recent jobs, newest first, following the server's pages up to `limit`."""
    shown = 0
    cursor: str | None = None
    while shown < limit:
        page = await _history_page(client, status, min(limit - shown, HISTORY_PAGE), cursor)
        jobs = [job for job in page.get("jobs") or [] if isinstance(job, dict)]
        for job in jobs[: limit - shown]:
            printer.emit(job, history_line(job))
            shown += 1
        cursor = page.get("next")
        if not cursor or not jobs:
            break
    if not shown and not printer.json_mode:
        printer.error("no jobs" + (f" with status {status}" if status else ""))
    return EXIT_OK


async def _history_page(
    client: ApiClient, status: str | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    try:
        return await client.jobs(status=status, limit=limit, before=cursor)
    except ApiError as exc:
        if exc.status in {404, 405}:
            raise ApiError(
                exc.status,
                exc.code,
                f"this server cannot list jobs (GET /api/v1/jobs answered {exc.status}); "
                "it predates `imagemesh history`",
            ) from exc
        raise
