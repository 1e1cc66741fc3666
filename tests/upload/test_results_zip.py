"""The zip of many results, without servers: its names, its streaming writer, and the
refusals of `results_zip._entries` (a job not finished yet cannot be caught in time
against a real mesh: it would finish first)."""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.security.test_guard import settings
from upload.errors import ApiError, error_middleware
from upload.guard import Guard, Principal, guard_middleware
from upload.inflight import download_slots
from upload.jobs import Jobs
from upload.keys import DOWNLOADS, GUARD, JOBS, SETTINGS
from upload.results_zip import _entries, _ids, results_zip
from upload.spool import Spool
from upload.zipstream import ZipWriter, attachment, safe_stem, unique_names


@pytest.mark.parametrize(
    ("filename", "stem"),
    [
        ("cat.png", "cat"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini.jpg", "win.ini"),
        ("C:\\Users\\me\\holiday photo.JPG", "holiday photo"),
        ("..", "fallback"),
        ("...jpg", "jpg"),
        (".hidden.png", "hidden"),
        ("a\x00b\nc\x7f.jpg", "abc"),
        ("unicode-\u202eGPJ.exe", "unicode-GPJ"),
        ('a<b>c:"d|e?f*.png', "a_b_c__d_e_f_"),
        ("CON.jpg", "fallback"),
        ("trailing. .png", "trailing"),
        ("", "fallback"),
        (None, "fallback"),
        ("x" * 300 + ".png", "x" * 120),
    ],
)
def test_a_name_in_the_zip_is_a_safe_stem_of_the_file_uploaded(
    filename: str | None, stem: str
) -> None:
    assert safe_stem(filename, "fallback") == stem


def test_names_are_unique_regardless_of_case() -> None:
    pairs = [("cat", ".webp"), ("Cat", ".webp"), ("cat", ".png"), ("cat (2)", ".webp"),
             ("cat", ".webp")]  # fmt: skip
    assert unique_names(pairs) == [
        "cat.webp", "Cat (2).webp", "cat.png", "cat (2) (2).webp", "cat (3).webp",
    ]  # fmt: skip


def test_the_attachment_names_the_file_for_old_and_new_clients() -> None:
    assert attachment('r\u00e9sum\u00e9 "1".zip') == (
        "attachment; filename=\"r_sum_ _1_.zip\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.zip"
    )


def test_the_writer_streams_stored_entries_with_data_descriptors() -> None:
    writer, sent, pieces = ZipWriter(), [], {"a.png": b"a" * 700_000, "b.png": b""}
    for name, data in pieces.items():
        writer.start(name, len(data), datetime(2026, 12, 2, 5, 0, tzinfo=UTC))
        sent.append(writer.take())
        for offset in range(0, len(data), 65_536):
            writer.write(data[offset : offset + 65_536])
            chunk = writer.take()
            assert len(chunk) <= 65_536  # nothing held back beyond the chunk written
            sent.append(chunk)
        writer.end()
        sent.append(writer.take())
    writer.close()
    sent.append(writer.take())
    archive = zipfile.ZipFile(io.BytesIO(b"".join(sent)))
    assert archive.testzip() is None
    assert {info.filename: archive.read(info) for info in archive.infolist()} == pieces
    assert all(info.flag_bits & 0x08 for info in archive.infolist())
    assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}


def test_ids_are_taken_once_each_in_order_and_bounded() -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert _ids(f" {first.upper()},{second},,{first}", 2) == [first, second]
    with pytest.raises(ApiError) as none:
        _ids(" , ", 2)
    assert (none.value.status, none.value.code) == (400, "bad_request")
    with pytest.raises(ApiError) as many:
        _ids(",".join(str(uuid.uuid4()) for _ in range(3)), 2)
    assert (many.value.status, many.value.code) == (413, "too_many_jobs")


class _Jobs:
    """`Jobs.succeeded` as the mesh answers it: each id's refusal or job."""

    def __init__(self, answers: dict[str, ApiError | dict[str, Any]]) -> None:
        self.answers = answers

    async def succeeded(self, job_id: str, reader: Principal) -> dict[str, Any]:
        answer = self.answers[job_id]
        if isinstance(answer, ApiError):
            raise answer
        return answer


def _job(job_id: str, filename: str) -> dict[str, Any]:
    return {
        "id": job_id,
        "filename": filename,
        "updated_at": "2026-12-02T05:00:00+00:00",
        "output_ref": {"bucket": "out", "key": f"{job_id}/output.webp", "format": "webp",
                       "bytes": 10},
    }  # fmt: skip


async def test_a_job_not_finished_refuses_the_zip_naming_it_after_unknown_ones() -> None:
    done, waiting, failed, unknown = (str(uuid.uuid4()) for _ in range(4))
    answers: dict[str, ApiError | dict[str, Any]] = {
        done: _job(done, "cat.png"),
        waiting: ApiError(409, "not_finished", "the job is running"),
        failed: ApiError(409, "job_failed", "the job failed"),
        unknown: ApiError(404, "not_found", f"no job {unknown}"),
    }
    reader = Principal("someone")
    with pytest.raises(ApiError) as refused:
        await _entries(_Jobs(answers), [done, waiting, failed], reader)  # type: ignore[arg-type]
    assert (refused.value.status, refused.value.code) == (409, "not_finished")
    assert f"not finished: {waiting}; failed: {failed}" in refused.value.message
    with pytest.raises(ApiError) as missing:
        await _entries(_Jobs(answers), [waiting, unknown, "x/../y"], reader)  # type: ignore[arg-type]
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert missing.value.message == f"no job {unknown}, 'x/../y'"
    entries, erased = await _entries(_Jobs(answers), [done], reader)  # type: ignore[arg-type]
    assert [(entry.name, entry.size) for entry in entries] == [("cat.webp", 10)]
    assert erased == []


async def test_a_cancelled_job_refuses_the_zip_naming_it() -> None:
    """Not a zip short of it: every refusal of `Jobs.succeeded` refuses the zip."""
    done, cancelled, failed = (str(uuid.uuid4()) for _ in range(3))
    answers: dict[str, ApiError | dict[str, Any]] = {
        done: _job(done, "cat.png"),
        cancelled: ApiError(409, "job_cancelled", "the job was cancelled by someone"),
        failed: ApiError(409, "job_failed", "the job failed"),
    }
    reader = Principal("someone")
    with pytest.raises(ApiError) as refused:
        await _entries(_Jobs(answers), [done, cancelled], reader)  # type: ignore[arg-type]
    assert (refused.value.status, refused.value.code) == (409, "job_cancelled")
    assert refused.value.message.endswith(f"cancelled: {cancelled}")
    with pytest.raises(ApiError) as both:
        await _entries(_Jobs(answers), [cancelled, failed], reader)  # type: ignore[arg-type]
    assert both.value.message.endswith(f"failed: {failed}; cancelled: {cancelled}")


async def test_an_erased_job_is_left_out_and_named() -> None:
    """An erased job's result is deleted for good: the zip goes without it, naming it."""
    done, erased = (str(uuid.uuid4()) for _ in range(2))
    answers: dict[str, ApiError | dict[str, Any]] = {
        done: _job(done, "cat.png"),
        erased: ApiError(410, "gone", f"job {erased} was erased"),
    }
    reader = Principal("someone")
    entries, left_out = await _entries(_Jobs(answers), [erased, done], reader)  # type: ignore[arg-type]
    assert ([entry.job_id for entry in entries], left_out) == ([done], [erased])


# --------------------------------------------------------------------------- the store fails

GOOD, BROKEN = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"


class _Store:
    """Jobs whose results the store gives (GOOD: 300 KB) or fails to give (BROKEN)."""

    async def succeeded(self, job_id: str, reader: Principal) -> dict[str, Any]:
        return _job(job_id, f"{job_id[-1]}.png") | {"owner": reader.name}

    @asynccontextmanager
    async def fetched(self, image: dict[str, Any], spool: Spool) -> AsyncIterator[Spool]:
        if image["key"].startswith(BROKEN):
            raise ApiError(503, "unavailable", "the image store is unavailable")
        await spool.write(b"r" * 300_000)
        await spool.finish()
        try:
            yield spool
        finally:
            spool.close()


@pytest.fixture
async def zip_server() -> AsyncIterator[TestServer]:
    guard = Guard(settings())
    app = web.Application(middlewares=[error_middleware, guard_middleware(guard)])
    app[GUARD] = guard
    app[SETTINGS] = settings()
    app[JOBS] = cast(Jobs, _Store())
    app[DOWNLOADS] = download_slots(total=4, per_client=2)
    app.router.add_get("/api/v1/results.zip", results_zip)
    running = TestServer(app)
    async with running:
        yield running


async def test_a_store_failing_on_the_first_result_is_a_503_and_later_cuts_the_zip(
    zip_server: TestServer,
) -> None:
    url = zip_server.make_url("/api/v1/results.zip")
    async with aiohttp.ClientSession() as http:
        async with http.get(url, params={"ids": f"{BROKEN},{GOOD}"}) as first:
            assert first.status == 503
            assert (await first.json())["error"]["code"] == "unavailable"
        async with http.get(url, params={"ids": f"{GOOD},{BROKEN}"}) as later:
            assert later.status == 200  # sent with the first entry, before the failure
            with pytest.raises(aiohttp.ClientPayloadError):
                await later.read()  # cut: never a zip that looks whole
        async with http.get(url, params={"ids": GOOD}) as whole:
            archive = zipfile.ZipFile(io.BytesIO(await whole.read()))
            assert archive.read("a.webp") == b"r" * 300_000
