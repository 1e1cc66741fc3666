"""Many results at once: `GET /api/v1/results.zip?ids=...`, a zip streamed as it is made.

Each id goes through the check of `/result` (`Jobs.succeeded`): an id that is unknown or
another principal's is not found, and the request is refused naming the ids (404), as
it is for ids of jobs that did not succeed (409): a client gets every result it asked
for, or none and the reason, never a zip silently short of some. An erased job's result
is deleted for good: it is left out, and the zip's `erased.txt` names it (410 when every
job asked for is erased). The bounds (how many
results, their total stored size) are checked before a byte is sent (413); the zip holds
one download slot of its client while it is sent, as an image does. Each result is read
from S3 into a spool, as /result reads it, and sent from there in chunks.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from pipeline import ImageFormat

from .errors import ApiError
from .guard import Principal, client_of, principal_of
from .images import SEND_CHUNK_BYTES, SENDING_UNAVAILABLE, TOO_MANY_DOWNLOADS
from .jobs import Jobs
from .keys import DOWNLOADS, JOBS, SETTINGS
from .openapi import Doc, documented, error
from .routes import JOB_ID_PATTERN, routes
from .spool import Spool
from .zipstream import ZipWriter, attachment, safe_stem, unique_names

log = structlog.get_logger("upload")
_JOB_ID = re.compile(JOB_ID_PATTERN)
LOOKUPS_AT_ONCE = 8
"""Job statuses looked up at once for one zip (each may ask provenance)."""
IDS_PATTERN = r"^[0-9a-fA-F-]{36}(,[0-9a-fA-F-]{36})*$"
SHOWN_ID_CHARS = 40
"""Characters of a malformed id repeated in an error message."""
REFUSED_409 = {"not_finished": "not finished", "job_failed": "failed",
               "job_cancelled": "cancelled"}  # fmt: skip
"""`Jobs.succeeded`'s 409 codes, as a refused zip names its ids (the first one found is
the error's code). A zip is never short of a job asked for."""


@dataclass(frozen=True)
class Entry:
    job_id: str
    output: dict[str, Any]
    name: str
    modified: datetime

    @property
    def size(self) -> int:
        return int(self.output.get("bytes") or 0)


@routes.get("/api/v1/results.zip")
@documented(
    Doc(
        "Download many results as one zip",
        {
            200: ("a zip of the results, each entry stored (not compressed)", "application/zip"),
            400: error("no ids (`bad_request`)"),
            404: error("ids of no job, or of another principal's (`not_found`), named"),
            409: error(
                "ids of jobs not finished yet (`not_finished`), failed (`job_failed`) or "
                "cancelled (`job_cancelled`), named"
            ),
            410: error("every job named was erased (`gone`), named"),
            413: error(
                "more ids than `UPLOAD_ZIP_MAX_JOBS` (`too_many_jobs`) or results larger in "
                "all than `UPLOAD_ZIP_MAX_BYTES` (`too_large`)"
            ),
            429: TOO_MANY_DOWNLOADS,
            503: SENDING_UNAVAILABLE,
        },
        description="The results of the jobs named, in the order named (an id given twice "
        "counts once), each named after the file uploaded with the result's extension "
        "(`cat.png` processed to WebP: `cat.webp`; a second `cat.webp` is `cat (2).webp`; "
        "no path, no control characters). Every id must be a job of the caller's that "
        "succeeded: otherwise nothing is sent, and the error names the ids (404 for ids "
        "of no job or of another principal's, checked first; 409 for jobs not succeeded). "
        "An erased job's result is deleted: it is left out, and the zip's `erased.txt` "
        "names it (410 when every job named is erased). "
        "Bounded in count and total size before anything is sent (413). The zip holds one "
        "of the client's download slots while it is sent (429 `too_many_downloads`, 503 "
        "`busy` beyond, as for /result). Should the store fail mid-zip, the connection is "
        "closed: the zip is then incomplete and unreadable, never short of an entry.",
        parameters=(
            {
                "name": "ids",
                "in": "query",
                "required": True,
                "description": "job ids, comma-separated (at most `UPLOAD_ZIP_MAX_JOBS`)",
                "schema": {"type": "string", "pattern": IDS_PATTERN},
            },
        ),
    )
)
async def results_zip(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    ids = _ids(request.query.get("ids", ""), settings.upload_zip_max_jobs)
    entries, erased = await _entries(request.app[JOBS], ids, principal_of(request))
    if not entries:
        raise ApiError(410, "gone", f"erased, their results deleted: {', '.join(erased)}")
    total = sum(entry.size for entry in entries)
    if total > settings.upload_zip_max_bytes:
        raise ApiError(
            413,
            "too_large",
            f"the results hold {total} bytes in all; a zip holds at most "
            f"{settings.upload_zip_max_bytes} (UPLOAD_ZIP_MAX_BYTES): ask for fewer",
        )
    with request.app[DOWNLOADS].hold(client_of(request)):
        return await _send(request, entries, erased)


def _ids(value: str, max_jobs: int) -> list[str]:
    """The ids asked for, in order, each once; 400 for none, 413 for too many."""
    ids = list(dict.fromkeys(part.strip().lower() for part in value.split(",") if part.strip()))
    if not ids:
        raise ApiError(400, "bad_request", "ids: one or more job ids, comma-separated")
    if len(ids) > max_jobs:
        raise ApiError(
            413,
            "too_many_jobs",
            f"{len(ids)} ids; a zip holds at most {max_jobs} results (UPLOAD_ZIP_MAX_JOBS)",
        )
    return ids


async def _entries(jobs: Jobs, ids: list[str], reader: Principal) -> tuple[list[Entry], list[str]]:
    """Each job's result and its name in the zip, and the ids of the erased jobs (left
    out); refused (404, then 409) naming the ids that are not `reader`'s succeeded jobs.
    503 if provenance cannot say."""
    gate = asyncio.Semaphore(LOOKUPS_AT_ONCE)

    async def look_up(job_id: str) -> dict[str, Any] | ApiError:
        if not _JOB_ID.match(job_id):
            return ApiError(404, "not_found", "malformed")
        async with gate:
            try:
                return await jobs.succeeded(job_id, reader)
            except ApiError as exc:
                if exc.status in (404, 409, 410):
                    return exc
                raise

    found = await asyncio.gather(*(look_up(job_id) for job_id in ids))
    _refuse_any(ids, found)
    jobs_found = [job for job in found if isinstance(job, dict)]
    names = unique_names(
        (safe_stem(job.get("filename"), job["id"][:8]), _extension(job["output_ref"]))
        for job in jobs_found
    )
    entries = [
        Entry(job["id"], job["output_ref"], name, _modified(job))
        for job, name in zip(jobs_found, names, strict=True)
    ]
    return entries, _named(ids, found, 410)


def _refuse_any(ids: list[str], found: list[dict[str, Any] | ApiError]) -> None:
    """404 naming the ids of no job of the caller's (said first: what the caller may not
    see comes before the state of what it may); else 409 naming those not succeeded."""
    missing = _named(ids, found, 404)
    if missing:
        raise ApiError(404, "not_found", f"no job {', '.join(missing)}")
    refused = {code: _named(ids, found, 409, code) for code in REFUSED_409}
    refused = {code: named for code, named in refused.items() if named}
    if refused:
        said = [f"{REFUSED_409[code]}: {', '.join(named)}" for code, named in refused.items()]
        code = next(iter(refused))
        raise ApiError(409, code, f"only succeeded jobs have results; {'; '.join(said)}")
    if any(isinstance(got, ApiError) and got.status != 410 for got in found):  # unknown
        raise ApiError(409, "not_succeeded", "only succeeded jobs have results")


def _named(
    ids: list[str], found: list[dict[str, Any] | ApiError], status: int, code: str | None = None
) -> list[str]:
    """The ids (as an error shows them) whose look-up was refused with `status` (`code`)."""
    return [
        _shown(job_id)
        for job_id, got in zip(ids, found, strict=True)
        if isinstance(got, ApiError) and got.status == status and code in (None, got.code)
    ]


def _shown(job_id: str) -> str:
    """An id as an error repeats it: a malformed one shortened and quoted."""
    return job_id if _JOB_ID.match(job_id) else repr(job_id[:SHOWN_ID_CHARS])


def _extension(output: dict[str, Any]) -> str:
    try:
        return ImageFormat(str(output.get("format"))).extension
    except ValueError:
        return ""


def _modified(job: dict[str, Any]) -> datetime:
    """When the result was made (the job's last update), for the entry's time."""
    try:
        return datetime.fromisoformat(str(job.get("updated_at")))
    except ValueError:
        return datetime.now(UTC)


async def _send(
    request: web.Request, entries: list[Entry], erased: list[str]
) -> web.StreamResponse:
    """The zip, entry by entry, each result fetched into a spool and sent in chunks. The
    answer begins once the first result is fetched: a store that fails on it is a 503;
    later, the zip is cut (its status is sent already), as is a client that takes
    nothing for UPLOAD_BODY_TIMEOUT_SECONDS."""
    response = web.StreamResponse(
        headers={
            "Content-Disposition": attachment(f"imagemesh-results-{len(entries)}.zip"),
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        }
    )
    response.content_type = "application/zip"
    zipped = ZipWriter()
    try:
        for entry in entries:
            await _send_entry(request, response, zipped, entry)
        if erased:
            _erased_listing(zipped, erased)
        zipped.close()
        await _write(request, response, zipped.take())
    except (TimeoutError, ApiError, ConnectionError) as exc:
        if not response.prepared:
            raise  # nothing sent yet: the error is the answer (a 503 from the store)
        log.warning("zip_cut", reason=type(exc).__name__, entries=len(entries))
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    log.info("zip_sent", entries=len(entries), bytes=sum(entry.size for entry in entries))
    return response


async def _send_entry(
    request: web.Request, response: web.StreamResponse, zipped: ZipWriter, entry: Entry
) -> None:
    settings = request.app[SETTINGS]
    spool = Spool(
        memory=settings.upload_spool_memory_bytes,
        directory=settings.upload_spool_dir,
        hashed=False,
    )
    async with request.app[JOBS].fetched(entry.output, spool):
        if not response.prepared:
            await response.prepare(request)
        zipped.start(entry.name, spool.size, entry.modified)
        source = spool.reader()
        while chunk := await asyncio.to_thread(source.read, SEND_CHUNK_BYTES):
            zipped.write(chunk)
            await _write(request, response, zipped.take())
        zipped.end()
        await _write(request, response, zipped.take())


ERASED_LISTING = "erased.txt"
"""The zip's entry naming the jobs asked for that were erased (no result is named .txt)."""


def _erased_listing(zipped: ZipWriter, erased: list[str]) -> None:
    """An entry naming the erased jobs left out: the zip is short of them, and says so."""
    text = "".join(
        ["Erased (DELETE /api/v1/jobs/ID), their results deleted: not in this zip.\n"]
        + [f"{job_id}\n" for job_id in erased]
    ).encode()
    zipped.start(ERASED_LISTING, len(text), datetime.now(UTC))
    zipped.write(text)
    zipped.end()


async def _write(request: web.Request, response: web.StreamResponse, data: bytes) -> None:
    if data:
        async with asyncio.timeout(request.app[SETTINGS].upload_body_timeout_seconds):
            await response.write(data)
