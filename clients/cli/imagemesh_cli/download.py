"""`imagemesh download`: save finished results. One job's output becomes a file named as
`submit --wait` names it (`<name>-<short id>.<ext>`); several become one zip, streamed by
the server and written as it arrives (never whole in memory).

A file is whole or absent: the bytes go to a temporary file beside the target, are checked
(the output's sha256 the job's status gives; a zip's central directory), and only then take
the target's name, without replacing an existing file unless asked (`--force`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .api import ApiClient, ApiError, Download
from .commands import EXIT_FAILED, EXIT_OK, UsageError, extension_for, resolve_job_id
from .render import Printer, format_bytes

__all__ = ["DEFAULT_ZIP", "download", "result_name"]

DEFAULT_ZIP = "imagemesh-results.zip"
REFUSED = frozenset({404, 409, 410, 413})
"""What the API answers for results it will not give: no such job of the caller's, not
succeeded (not finished, failed, cancelled), erased, or too many for one zip."""
MAX_STEM = 100
"""Characters of the uploaded file's name kept in a result's file name."""
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
ERASED_LISTING = "erased.txt"
"""The entry of a zip that names the jobs asked for that were erased (left out)."""


class Corrupt(Exception):
    """What arrived is not what the server said it sent."""


@dataclass(frozen=True, slots=True)
class Saved:
    path: Path
    bytes: int
    sha256: str


async def download(
    client: ApiClient,
    printer: Printer,
    *,
    job_ids: Sequence[str],
    output: str | None = None,
    as_zip: bool = False,
    force: bool = False,
) -> int:
    """Save one job's result, or (several ids, or `as_zip`) a zip of theirs. The API's
    refusals (unknown, not succeeded, erased, too many) exit 1 naming the job(s)."""
    ids = list(dict.fromkeys([await resolve_job_id(client, given) for given in job_ids]))
    try:
        if as_zip or len(ids) > 1:
            return await _download_zip(client, printer, ids, output, force)
        return await _download_one(client, printer, ids[0], output, force)
    except ApiError as exc:
        if exc.status not in REFUSED:
            raise
        record = {"event": "refused", "job_ids": ids, "status": exc.status}
        printer.problem(
            {**record, "error": {"code": exc.code, "message": exc.message}},
            f"imagemesh: {_refusal(ids, exc)}",
        )
        return EXIT_FAILED
    except Corrupt as exc:
        printer.problem({"event": "corrupt", "job_ids": ids, "message": str(exc)}, str(exc))
        return EXIT_FAILED


def _refusal(ids: list[str], exc: ApiError) -> str:
    """The API's message, saying which job when there was one (a zip's names its ids)."""
    if len(ids) == 1 and ids[0] not in exc.message:
        return f"job {ids[0]}: {exc.message}"
    return exc.message


async def _download_one(
    client: ApiClient, printer: Printer, job_id: str, output: str | None, force: bool
) -> int:
    job = await client.job(job_id)
    stated = job.get("output")
    image: dict[str, Any] = stated if isinstance(stated, dict) else {}
    if isinstance(image.get("content_type"), str):  # refuse before downloading, if we can
        _check_free(_target(output, result_name(job, image["content_type"])), force)
    expected = image.get("sha256")
    async with client.result_download(job_id) as body:
        target = _target(output, result_name(job, body.content_type))
        _check_free(target, force)

        def same_bytes(_partial: Path, saved: Saved) -> None:
            if isinstance(expected, str) and saved.sha256 != expected:
                raise Corrupt(
                    f"job {job_id}: the result received has sha256 {saved.sha256}, the job's "
                    f"output {expected}: not saved"
                )

        saved = await _save(body, target, force, same_bytes)
    printer.emit(
        {
            "event": "saved",
            "job_id": job_id,
            "path": str(saved.path),
            "bytes": saved.bytes,
            "sha256": saved.sha256,
            "content_type": body.content_type,
        },
        f"saved {saved.path} ({format_bytes(saved.bytes)}), the result of job {job_id}",
    )
    return EXIT_OK


async def _download_zip(
    client: ApiClient, printer: Printer, ids: list[str], output: str | None, force: bool
) -> int:
    """The zip; exit 1 (the zip kept) when it is short of erased jobs, which it names."""
    target = _target(output, DEFAULT_ZIP)
    _check_free(target, force)
    found: list[Contents] = []

    def whole_zip(partial: Path, _saved: Saved) -> None:
        found.append(zip_contents(partial, len(ids)))

    async with client.results_zip(ids) as body:
        saved = await _save(body, target, force, whole_zip)
    contents = found[0]
    record = {
        "event": "saved",
        "job_ids": ids,
        "path": str(saved.path),
        "bytes": saved.bytes,
        "sha256": saved.sha256,
        "entries": contents.results,
        "erased": contents.erased,
    }
    line = f"saved {saved.path} ({format_bytes(saved.bytes)}): {len(contents.results)} results"
    if not contents.erased:
        printer.emit(record, line)
        return EXIT_OK
    left_out = f"erased, their results deleted (not in the zip): {', '.join(contents.erased)}"
    printer.problem(record, f"{line}; {left_out}")
    return EXIT_FAILED


@dataclass(frozen=True, slots=True)
class Contents:
    results: list[str]
    """The results' names in the zip."""
    erased: list[str]
    """The ids of the jobs asked for that were erased: `ERASED_LISTING` names them."""


def zip_contents(path: Path, asked: int) -> Contents:
    """What a zip of `asked` results holds; Corrupt if it is unreadable or short of one
    that is neither in it nor named erased."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            listing = archive.read(ERASED_LISTING) if ERASED_LISTING in names else b""
    except zipfile.BadZipFile as exc:
        raise Corrupt(f"the zip received is not readable ({exc}): not saved") from exc
    erased = _UUID.findall(listing.decode("utf-8", "replace"))
    results = [name for name in names if name != ERASED_LISTING]
    if len(results) + len(erased) != asked:
        raise Corrupt(f"the zip received holds {len(results)} results of {asked}: not saved")
    return Contents(results, erased)


def result_name(job: dict[str, Any], content_type: str) -> str:
    """`<stem of the uploaded file's name>-<first 8 of the id>.<ext>`, as `submit --wait`
    saves it (never the input's own name, which may sit in the same folder). The name is
    the client's: no folder, no control or reserved characters, no leading dot."""
    given = re.split(r"[/\\]", str(job.get("filename") or ""))[-1]
    stem = Path(given).stem if "." in given.lstrip(".") else given
    stem = _UNSAFE.sub("_", stem).lstrip(". ")[:MAX_STEM].rstrip() or "result"
    return f"{stem}-{str(job['id'])[:8]}.{extension_for(content_type)}"


def _target(output: str | None, name: str) -> Path:
    """`output` itself, or `name` in it when it is a folder (existing, or written `dir/`:
    a string, as a Path would drop the slash)."""
    if output is None:
        return Path(name)
    if output.endswith(("/", os.sep)) or Path(output).is_dir():
        return Path(output) / name
    return Path(output)


def _check_free(target: Path, force: bool) -> None:
    if target.is_dir():
        raise UsageError(f"{target} is a folder")
    if target.exists() and not force:
        raise UsageError(f"{target} exists: not overwritten (--force replaces it)")


async def _save(
    body: Download, target: Path, force: bool, verify: Callable[[Path, Saved], None]
) -> Saved:
    """The body into a temporary file beside `target`, checked by `verify`, then renamed:
    on any failure (a broken connection, Ctrl-C, a check) nothing is left behind."""
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    handle = await asyncio.to_thread(_partial_file, target)
    partial = Path(handle.name)
    try:
        digest, size = hashlib.sha256(), 0
        with handle:
            async for chunk in body.chunks():
                digest.update(chunk)
                size += len(chunk)
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(_flush, handle)
        saved = Saved(target, size, digest.hexdigest())
        await asyncio.to_thread(verify, partial, saved)
        await asyncio.to_thread(_place, partial, target, force)
    except BaseException:
        with contextlib.suppress(OSError):  # at once, not in a thread: it may be Ctrl-C
            os.remove(partial)
        raise
    return saved


def _partial_file(target: Path) -> IO[bytes]:
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed by _save)
        dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False
    )
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(handle.name, 0o666 & ~umask)  # as any new file, not the temporary's 0600
    return handle


def _flush(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _place(partial: Path, target: Path, force: bool) -> None:
    """`partial` becomes `target`. Without `force`, a hard link gives the name only if no
    file has it, however late one appeared (a plain rename would replace it)."""
    if force:
        partial.replace(target)
        return
    try:
        os.link(partial, target)
    except FileExistsError:
        raise UsageError(f"{target} exists: not overwritten (--force replaces it)") from None
    except OSError:  # a file system without hard links: check, then rename
        if target.exists():
            raise UsageError(f"{target} exists: not overwritten (--force replaces it)") from None
        partial.replace(target)
        return
    partial.unlink()
