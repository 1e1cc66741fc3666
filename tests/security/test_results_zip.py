"""`GET /api/v1/results.zip` against a real mesh: an upload replica with two principals'
API tokens and low zip bounds. The zip holds exactly the results /result sends, named
after the files uploaded (safe, unique); another principal's job is not found, as for
/result; the bounds refuse (413) before a byte of zip is sent; a job that did not
succeed refuses the whole zip (409), naming it."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import socket
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.conftest import Mesh
from tests.e2e.helpers import photo, wait_finished
from tests.security.conftest import upload_replica
from tests.waiting import async_wait_for
from upload.tokens import new_token, token_hash

pytestmark = pytest.mark.e2e

_RUN = uuid.uuid4().hex[:8]
ALICE, BOB = f"zip-alice-{_RUN}", f"zip-bob-{_RUN}"
ALICE_TOKEN, BOB_TOKEN = new_token(), new_token()
MAX_JOBS = 4
MAX_BYTES = 150_000
GRAY = json.dumps([{"op": "grayscale"}])


@dataclass
class Zipping:
    mesh: Mesh

    @property
    def url(self) -> str:
        return self.mesh.upload_url

    def zip_url(self, *ids: str) -> str:
        return f"{self.url}/api/v1/results.zip?ids={','.join(ids)}"


@pytest.fixture(scope="module")
def zipping(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zipping]:
    entries = [f"{ALICE}:{token_hash(ALICE_TOKEN)}", f"{BOB}:{token_hash(BOB_TOKEN)}"]
    with upload_replica(
        mesh,
        tmp_path_factory.mktemp("upload-zip"),
        UPLOAD_API_TOKEN_HASHES=",".join(entries),
        UPLOAD_SESSION_SECRET=f"zip-test-secret-{_RUN}",
        UPLOAD_ZIP_MAX_JOBS=str(MAX_JOBS),
        UPLOAD_ZIP_MAX_BYTES=str(MAX_BYTES),
    ) as replica:
        yield Zipping(replica)


def client(token: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest.fixture
async def alice() -> AsyncIterator[aiohttp.ClientSession]:
    async with client(ALICE_TOKEN) as session:
        yield session


@pytest.fixture
async def bob() -> AsyncIterator[aiohttp.ClientSession]:
    async with client(BOB_TOKEN) as session:
        yield session


async def finished(
    session: aiohttp.ClientSession,
    zipping: Zipping,
    data: bytes,
    filename: str,
    pipeline: str = GRAY,
) -> dict[str, Any]:
    """A job submitted with the file's name as a browser sends it, waited for."""
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("pipeline", pipeline)
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    async with session.post(f"{zipping.url}/api/v1/jobs", data=form) as made:
        assert made.status == 202, await made.text()
        job_id = (await made.json())["id"]
    return await wait_finished(session, zipping.url, job_id)


async def refusal(response: aiohttp.ClientResponse) -> tuple[int, str, str]:
    assert response.content_type == "application/json", response.headers
    error = (await response.json())["error"]
    return response.status, error["code"], error["message"]


async def test_the_zip_holds_each_result_as_result_sends_it_named_after_its_file(
    zipping: Zipping, alice: aiohttp.ClientSession
) -> None:
    names = ["cat.png", "cat.png", "../../etc/CAT.png", "unicode-\u202eGPJ.exe"]
    jobs = []
    for n, name in enumerate(names):
        jobs.append(await finished(alice, zipping, photo(40 + n, 30, "PNG"), name))
    assert {job["status"] for job in jobs} == {"succeeded"}
    ids = [job["id"] for job in jobs]
    async with alice.get(zipping.zip_url(*ids, ids[0])) as answer:  # an id twice: once
        assert answer.status == 200, await answer.text()
        assert answer.content_type == "application/zip"
        disposition = answer.headers["Content-Disposition"]
        body = await answer.read()
    assert disposition.startswith("attachment; filename=")
    assert "filename*=UTF-8''imagemesh-results-4.zip" in disposition
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None
    ext = f".{jobs[0]['output']['format']}"  # grayscale keeps PNG
    assert archive.namelist() == [f"cat{ext}", f"cat (2){ext}", f"CAT (3){ext}",
                                  f"unicode-GPJ{ext}"]  # fmt: skip
    for info, job in zip(archive.infolist(), jobs, strict=True):
        assert info.compress_type == zipfile.ZIP_STORED  # images are compressed already
        assert info.flag_bits & 0x08  # streamed: sizes and CRC after the data
        async with alice.get(f"{zipping.url}/api/v1/jobs/{job['id']}/result") as result:
            sent = await result.read()
        entry = archive.read(info)
        assert hashlib.sha256(entry).hexdigest() == hashlib.sha256(sent).hexdigest()
        assert hashlib.sha256(entry).hexdigest() == job["output"]["sha256"]


async def test_another_principals_job_is_not_found_as_an_unknown_one_is(
    zipping: Zipping, alice: aiohttp.ClientSession, bob: aiohttp.ClientSession
) -> None:
    hers = await finished(alice, zipping, photo(33, 22, "PNG"), "hers.png")
    his = await finished(bob, zipping, photo(34, 22, "PNG"), "his.png")
    unknown = str(uuid.uuid4())
    async with bob.get(zipping.zip_url(his["id"], hers["id"])) as answer:
        status, code, message = await refusal(answer)
    async with bob.get(zipping.zip_url(his["id"], unknown)) as answer:
        assert await refusal(answer) == (404, "not_found", message.replace(hers["id"], unknown))
    assert (status, code) == (404, "not_found")
    assert hers["id"] in message
    assert his["id"] not in message
    assert ALICE not in message
    assert "hers" not in message
    # As /result answers Bob for her job.
    async with bob.get(f"{zipping.url}/api/v1/jobs/{hers['id']}/result") as result:
        assert result.status == 404
    # Her own zip of it is fine; without a token, nothing.
    async with alice.get(zipping.zip_url(hers["id"])) as answer:
        assert answer.status == 200
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(zipping.zip_url(hers["id"])) as answer,
    ):
        assert answer.status == 401


async def test_the_bounds_refuse_before_any_zip_is_sent(
    zipping: Zipping, alice: aiohttp.ClientSession
) -> None:
    too_many = [str(uuid.uuid4()) for _ in range(MAX_JOBS + 1)]
    async with alice.get(zipping.zip_url(*too_many)) as answer:
        status, code, message = await refusal(answer)
    assert (status, code) == (413, "too_many_jobs")
    assert f"at most {MAX_JOBS}" in message
    # One result larger than the zip may hold in all (noise: PNG keeps it large).
    big = await finished(alice, zipping, photo(300, 300, "PNG"), "big.png", "[]")
    assert big["output"]["bytes"] > MAX_BYTES
    async with alice.get(zipping.zip_url(big["id"])) as answer:
        status, code, message = await refusal(answer)
    assert (status, code) == (413, "too_large")
    assert str(MAX_BYTES) in message
    assert str(big["output"]["bytes"]) in message
    async with alice.get(zipping.zip_url()) as answer:
        assert (await refusal(answer))[:2] == (400, "bad_request")


async def test_a_job_that_did_not_succeed_refuses_the_zip_naming_it(
    zipping: Zipping, alice: aiohttp.ClientSession
) -> None:
    good = await finished(alice, zipping, photo(35, 20, "PNG"), "good.png")
    crop_outside = json.dumps([{"op": "crop", "x": 5000, "y": 0, "width": 10, "height": 10}])
    bad = await finished(alice, zipping, photo(36, 20, "PNG"), "bad.png", crop_outside)
    assert (good["status"], bad["status"]) == ("succeeded", "failed")
    async with alice.get(zipping.zip_url(good["id"], bad["id"])) as answer:
        status, code, message = await refusal(answer)
    assert (status, code) == (409, "job_failed")
    assert f"failed: {bad['id']}" in message
    assert good["id"] not in message


@pytest.fixture(scope="module")
def one_download(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zipping]:
    """A replica where a client may receive one download at a time (the zip's bounds at
    their defaults)."""
    entries = [f"{ALICE}:{token_hash(ALICE_TOKEN)}", f"{BOB}:{token_hash(BOB_TOKEN)}"]
    with upload_replica(
        mesh,
        tmp_path_factory.mktemp("upload-zip-slots"),
        UPLOAD_API_TOKEN_HASHES=",".join(entries),
        UPLOAD_SESSION_SECRET=f"zip-test-secret-{_RUN}",
        UPLOAD_MAX_CONCURRENT_DOWNLOADS_PER_CLIENT="1",
        UPLOAD_BODY_TIMEOUT_SECONDS="120",
    ) as replica:
        yield Zipping(replica)


async def stalled_zip(
    url: str, path: str, token: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A GET whose client then reads nothing past the head, with a small receive buffer
    (so the kernel does not take the whole zip off the server's hands)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=64 * 1024)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
        .encode()
    )  # fmt: skip
    await writer.drain()
    return reader, writer


async def test_a_zip_being_sent_holds_one_of_its_clients_download_slots(
    zipping: Zipping,
    one_download: Zipping,
    alice: aiohttp.ClientSession,
    bob: aiohttp.ClientSession,
) -> None:
    # Noise as PNG: megabytes, far more than the sockets' buffers take.
    big = await finished(alice, zipping, photo(2000, 1500, "PNG"), "big.png", "[]")
    small = await finished(alice, zipping, photo(37, 20, "PNG"), "small.png")
    assert big["output"]["bytes"] > 4 * 1024 * 1024
    path = f"/api/v1/results.zip?ids={big['id']}"
    reader, writer = await stalled_zip(one_download.url, path, ALICE_TOKEN)
    result = f"{one_download.url}/api/v1/jobs/{small['id']}/result"
    try:
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        async with alice.get(result) as refused:
            assert (await refusal(refused))[:2] == (429, "too_many_downloads")
        async with alice.get(one_download.zip_url(small["id"])) as refused:
            assert (await refusal(refused))[:2] == (429, "too_many_downloads")
        mine = await finished(bob, zipping, photo(38, 20, "PNG"), "mine.png")
        async with bob.get(one_download.zip_url(mine["id"])) as other:
            assert other.status == 200  # another client is served meanwhile
    finally:
        writer.close()

    async def served() -> bool:
        async with alice.get(one_download.zip_url(small["id"])) as again:
            return again.status == 200 and len(await again.read()) > small["output"]["bytes"]

    await async_wait_for(served, timeout=30)
