"""Bounded memory and time per upload, against upload processes of their own (same vhost,
buckets and database as the session's mesh): files are spooled, never held whole (RSS
grows < 150 MB while 20 clients each stall 24 MiB into a 25 MiB upload, twice, and others
are served meanwhile); uploads in flight are capped per client (429) and in total (503),
with Retry-After; a sender that stalls or trickles is cut with 408 and nothing is kept."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import stack

from tests.conftest import Mesh
from tests.e2e.helpers import photo, wait_finished
from tests.security.conftest import upload_replica
from tests.waiting import async_wait_for

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
FILE_BYTES = 25 * MiB - 64 * 1024  # within IMAGE_MAX_BYTES, framing included
STALL_AFTER = 24 * MiB
STALLED = 20
RSS_GROWTH_LIMIT = 150 * 1000 * 1000
BOUNDARY = "boundsboundary"


# --------------------------------------------------------------------------- helpers


@dataclass
class Replica:
    mesh: Mesh
    spool: Path

    @property
    def pid(self) -> int:
        return self.mesh.processes["upload"].pid

    @property
    def port(self) -> int:
        return int(self.mesh.env["UPLOAD_PORT"])

    def rss(self) -> int:
        """The upload process's resident memory, in bytes (VmRSS)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def spooled(self) -> list[int]:
        """Sizes of the files the upload process holds open in its spool directory (the
        spool's files have no name: only its descriptors show them)."""
        sizes = []
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            link = f"/proc/{self.pid}/fd/{fd}"
            with contextlib.suppress(OSError):
                if os.readlink(link).startswith(f"{self.spool}/"):
                    sizes.append(os.stat(link).st_size)
        return sizes


@contextlib.contextmanager
def replica(mesh: Mesh, tmp: Path, **settings: str) -> Iterator[Replica]:
    spool = tmp / "spool"
    spool.mkdir()
    with upload_replica(
        mesh,
        tmp,
        UPLOAD_SPOOL_DIR=str(spool),
        UPLOAD_TRUSTED_PROXIES="127.0.0.1",
        **settings,
    ) as running:
        yield Replica(running, spool)


def multipart_head(filename: str = "big.jpg") -> bytes:
    return (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()


def multipart_tail() -> bytes:
    return f"\r\n--{BOUNDARY}--\r\n".encode()


class RawUpload:
    """POST /api/v1/jobs on a socket of its own, the body written as the test says."""

    def __init__(self, port: int, client: str, length: int) -> None:
        self.port, self.client, self.length = port, client, length
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = (
            "POST /api/v1/jobs HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\n"
            f"X-Forwarded-For: {self.client}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {self.length}\r\n\r\n"
        )
        self.writer.write(head.encode())

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def send_filler(self, size: int, block: bytes = b"\x5a" * (256 * 1024)) -> None:
        while size > 0:
            await self.send(block[:size])
            size -= len(block)

    async def answer(self, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body of the response (the connection closes after it)."""
        assert self.reader is not None
        async with asyncio.timeout(timeout):
            status = int((await self.reader.readline()).split()[1])
            headers = {}
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()


async def stalled(port: int, client: str, *, file_bytes: int, sent: int) -> RawUpload:
    """An upload of a `file_bytes` JPEG-looking file, `sent` bytes of which are sent."""
    head, tail = multipart_head(), multipart_tail()
    upload = RawUpload(port, client, len(head) + file_bytes + len(tail))
    await upload.open()
    await upload.send(head + b"\xff\xd8\xff\xe0")
    await upload.send_filler(sent - 4)
    return upload


@contextlib.asynccontextmanager
async def stalled_uploads(
    target: Replica, clients: list[str], *, file_bytes: int, sent: int
) -> AsyncIterator[list[RawUpload]]:
    """Uploads that send `sent` bytes and stall, open until the block ends; the block
    starts once the server holds them all on disk."""
    on_disk = sent - 2 * MiB  # what is not yet in the spool's buffer or a socket's
    already = sum(size >= on_disk for size in target.spooled())
    uploads = await asyncio.gather(
        *(stalled(target.port, client, file_bytes=file_bytes, sent=sent) for client in clients)
    )
    try:
        await async_wait_for(
            lambda: sum(size >= on_disk for size in target.spooled()) == already + len(clients),
            timeout=120,
        )
        yield list(uploads)
    finally:
        await asyncio.gather(*(upload.close() for upload in uploads))


def stored(mesh: Mesh, data: bytes) -> bool:
    """Whether the input bucket holds `data` (inputs are keyed by content)."""
    s3 = stack.s3_client(stack.Config.of(mesh.env))
    prefix = f"sha256/{hashlib.sha256(data).hexdigest()}"
    return bool(
        s3.list_objects_v2(Bucket=mesh.env["S3_INPUT_BUCKET"], Prefix=prefix).get("KeyCount")
    )


async def refused(response: aiohttp.ClientResponse) -> tuple[int, str]:
    assert response.content_type == "application/json"
    return response.status, (await response.json())["error"]["code"]


def as_client(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def submit_as(
    http: aiohttp.ClientSession, base: str, data: bytes, client: str
) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="photo.jpg", content_type="image/jpeg")
    return await http.post(f"{base}/api/v1/jobs", data=form, headers=as_client(client))


# --------------------------------------------------------------------------- memory


@pytest.fixture(scope="module")
def roomy(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    """Caps above the load (20 clients), a body timeout longer than the test."""
    with replica(
        mesh,
        tmp_path_factory.mktemp("upload-roomy"),
        UPLOAD_BODY_TIMEOUT_SECONDS="120",
    ) as running:
        yield running


async def test_stalled_uploads_cost_disk_not_memory_and_others_are_served(
    roomy: Replica, http: aiohttp.ClientSession
) -> None:
    base = roomy.mesh.upload_url
    # Warm up (imports, libvips, threads, connections), then the baseline.
    warm = await submit_as(http, base, photo(640, 480), "198.51.100.1")
    assert warm.status == 202, await warm.text()
    baseline = roomy.rss()
    clients = [f"198.51.100.{10 + n}" for n in range(STALLED)]
    for round_ in (1, 2):  # the second round must not pile onto the first
        async with stalled_uploads(roomy, clients, file_bytes=FILE_BYTES, sent=STALL_AFTER):
            growth = roomy.rss() - baseline
            assert growth < RSS_GROWTH_LIMIT, f"round {round_}: RSS grew {growth / MiB:.0f} MiB"
            # Meanwhile another client is served, promptly, start to finish.
            started = time.monotonic()
            response = await submit_as(http, base, photo(800, 600), "203.0.113.7")
            assert response.status == 202, await response.text()
            assert time.monotonic() - started < 10
            job = await wait_finished(http, base, (await response.json())["id"])
            assert job["status"] == "succeeded", job
            growth = roomy.rss() - baseline
            assert growth < RSS_GROWTH_LIMIT, f"round {round_}: RSS grew {growth / MiB:.0f} MiB"
        # The stalled senders went away: their spooled files with them.
        await async_wait_for(lambda: roomy.spooled() == [], timeout=30)
    assert os.listdir(roomy.spool) == []


async def test_a_stored_input_is_the_file_sent_byte_for_byte(
    roomy: Replica, http: aiohttp.ClientSession
) -> None:
    for width in (200, 2600):  # kept in memory; spooled to disk (> 1 MiB)
        data = photo(width, width * 3 // 4, quality=97)
        assert (len(data) > MiB) is (width > 1000)  # past UPLOAD_SPOOL_MEMORY_BYTES or not
        response = await submit_as(http, roomy.mesh.upload_url, data, "198.51.100.2")
        assert response.status == 202, await response.text()
        job = await wait_finished(http, roomy.mesh.upload_url, (await response.json())["id"])
        assert job["input"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert job["input"]["bytes"] == len(data)
        async with http.get(
            f"{roomy.mesh.upload_url}/api/v1/jobs/{job['id']}/input",
            headers=as_client("198.51.100.2"),
        ) as answer:
            assert answer.status == 200
            assert await answer.read() == data
        s3 = stack.s3_client(stack.Config.of(roomy.mesh.env))
        key = f"sha256/{job['input']['sha256']}.jpg"
        body = s3.get_object(Bucket=roomy.mesh.env["S3_INPUT_BUCKET"], Key=key)["Body"].read()
        assert body == data
    assert roomy.spooled() == []


async def test_stalled_downloads_cost_a_chunk_not_the_image(
    roomy: Replica, http: aiohttp.ClientSession
) -> None:
    """/input and /result stream from S3: 20 readers that stop reading an 18 MiB image do
    not make upload hold 20 copies of it (it held each whole before: ~360 MiB)."""
    data = photo(4800, 3600, quality=100)
    assert len(data) > 15 * MiB
    client = "198.51.100.3"
    response = await submit_as(http, roomy.mesh.upload_url, data, client)
    assert response.status == 202, await response.text()
    job_id = (await response.json())["id"]
    baseline = roomy.rss()
    path = f"/api/v1/jobs/{job_id}/input"
    readers = [
        await stalled_reader(roomy.port, path, f"198.51.100.{40 + n}") for n in range(STALLED)
    ]
    try:
        # Each has its answer's head (so the handler is writing the body) and is not reading.
        heads = [await reader.readuntil(b"\r\n\r\n") for reader, _ in readers]
        assert all(head.startswith(b"HTTP/1.1 200") for head in heads)
        assert all(f"content-length: {len(data)}".encode() in head.lower() for head in heads)
        growth = roomy.rss() - baseline
        assert growth < RSS_GROWTH_LIMIT, f"RSS grew {growth / MiB:.0f} MiB"
    finally:
        for _, writer in readers:
            writer.close()
    # A reader that reads gets the image byte for byte.
    async with http.get(
        f"{roomy.mesh.upload_url}/api/v1/jobs/{job_id}/input", headers=as_client(client)
    ) as answer:
        assert answer.status == 200
        assert answer.content_length == len(data)
        assert await answer.read() == data


async def stalled_reader(
    port: int, path: str, client: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A GET whose client then reads nothing past the head, with a small receive buffer
    (so the kernel does not take the whole answer off the server's hands)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=64 * 1024)
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Forwarded-For: {client}\r\n"
    writer.write(f"{head}\r\n".encode())
    await writer.drain()
    return reader, writer


# --------------------------------------------------------------------------- caps


@pytest.fixture(scope="module")
def capped(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    with replica(
        mesh,
        tmp_path_factory.mktemp("upload-capped"),
        UPLOAD_MAX_CONCURRENT_UPLOADS="3",
        UPLOAD_MAX_CONCURRENT_UPLOADS_PER_CLIENT="2",
        UPLOAD_MAX_CONCURRENT_DOWNLOADS_PER_CLIENT="2",
        UPLOAD_BODY_TIMEOUT_SECONDS="120",
    ) as running:
        yield running


async def test_uploads_in_flight_are_capped_per_client_then_in_total(
    capped: Replica, http: aiohttp.ClientSession
) -> None:
    base = capped.mesh.upload_url
    small = photo(64, 48)
    a, b, c = "198.51.100.21", "198.51.100.22", "198.51.100.23"
    async with stalled_uploads(capped, [a, a], file_bytes=4 * MiB, sent=3 * MiB):
        # The client's own cap: 429 before its body is read.
        response = await submit_as(http, base, small, a)
        assert await refused(response) == (429, "too_many_uploads")
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        async with stalled_uploads(capped, [b], file_bytes=4 * MiB, sent=3 * MiB):
            # The server's cap: 503 to anyone.
            response = await submit_as(http, base, small, c)
            assert await refused(response) == (503, "busy")
            assert 1 <= int(response.headers["Retry-After"]) <= 60
        # One slot free again: another client gets it.
        response = await submit_as(http, base, small, c)
        assert response.status == 202, await response.text()
    # Every slot is given back when the stalled senders go away.
    await async_wait_for(lambda: capped.spooled() == [], timeout=30)
    for client in (a, a, b):
        response = await submit_as(http, base, photo(64, 48 + len(client)), client)
        assert response.status == 202, await response.text()


async def test_images_being_sent_are_capped_per_client(
    capped: Replica, http: aiohttp.ClientSession
) -> None:
    base, client = capped.mesh.upload_url, "198.51.100.24"
    data = photo(4800, 3600, quality=100)  # far more than the sockets' buffers take
    response = await submit_as(http, base, data, client)
    assert response.status == 202, await response.text()
    path = f"/api/v1/jobs/{(await response.json())['id']}/input"
    readers = [await stalled_reader(capped.port, path, client) for _ in range(2)]
    try:
        for reader, _ in readers:
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        async with http.get(f"{base}{path}", headers=as_client(client)) as third:
            assert await refused(third) == (429, "too_many_downloads")
            assert 1 <= int(third.headers["Retry-After"]) <= 60
        async with http.get(f"{base}{path}", headers=as_client("198.51.100.25")) as other:
            assert other.status == 200  # another client is served meanwhile
            assert await other.read() == data
    finally:
        for _, writer in readers:
            writer.close()

    # The readers left: the client's slots are free again.
    async def served() -> bool:
        async with http.get(f"{base}{path}", headers=as_client(client)) as again:
            return again.status == 200 and await again.read() == data

    await async_wait_for(served, timeout=30)


# --------------------------------------------------------------------------- time


IDLE_SECONDS = 1.0
MIN_RATE = 20_000


@pytest.fixture(scope="module")
def hurried(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    with replica(
        mesh,
        tmp_path_factory.mktemp("upload-hurried"),
        UPLOAD_BODY_TIMEOUT_SECONDS=str(IDLE_SECONDS),
        UPLOAD_BODY_MIN_BYTES_PER_SECOND=str(MIN_RATE),
        UPLOAD_SPOOL_MEMORY_BYTES=str(64 * 1024),
    ) as running:
        yield running


def form_of(data: bytes) -> bytes:
    return multipart_head() + data + multipart_tail()


async def test_a_sender_that_stalls_is_cut_with_408_and_nothing_is_kept(
    hurried: Replica,
) -> None:
    data = photo(1600, 1200, quality=97)  # spooled to disk past 64 KiB
    body = form_of(data)
    upload = RawUpload(hurried.port, "198.51.100.31", len(body))
    await upload.open()
    await upload.send(body[: len(body) // 2])
    await async_wait_for(lambda: hurried.spooled() != [], timeout=10)
    started = time.monotonic()
    status, headers, answer = await upload.answer()
    await upload.close()
    assert status == 408
    assert time.monotonic() - started < IDLE_SECONDS + 5
    assert json.loads(answer)["error"]["code"] == "body_timeout"
    assert headers["connection"] == "close"
    assert hurried.spooled() == []
    assert os.listdir(hurried.spool) == []
    assert not stored(hurried.mesh, data)


async def test_a_reader_that_takes_nothing_is_cut(
    hurried: Replica, http: aiohttp.ClientSession
) -> None:
    data = photo(4800, 3600, quality=100)
    client = "198.51.100.33"
    response = await submit_as(http, hurried.mesh.upload_url, data, client)
    assert response.status == 202, await response.text()
    reader, writer = await stalled_reader(
        hurried.port, f"/api/v1/jobs/{(await response.json())['id']}/input", client
    )
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        await async_wait_for(lambda: hurried.spooled() != [], timeout=10)
        # Nothing read for longer than the body timeout: the server gives up on it,
        # closes the connection and drops the spooled copy.
        await async_wait_for(lambda: hurried.spooled() == [], timeout=IDLE_SECONDS + 10)
        received = await asyncio.wait_for(reader.read(), timeout=10)  # to the close
        assert len(received) < len(data)
    finally:
        writer.close()


async def test_a_sender_that_trickles_below_the_minimum_rate_is_cut(
    hurried: Replica,
) -> None:
    data = photo(200, 150)
    body = form_of(data)
    # Never idle for IDLE_SECONDS, but far below MIN_RATE: due IDLE_SECONDS + length / rate.
    due = IDLE_SECONDS + len(body) / MIN_RATE
    upload = RawUpload(hurried.port, "198.51.100.32", len(body))
    await upload.open()
    started = time.monotonic()

    async def trickle() -> None:
        # 256 bytes every IDLE_SECONDS / 10: ~2.5 KB/s, far below MIN_RATE, and never a
        # pause near the idle timeout even on a loaded machine.
        for at in range(0, len(body), 256):
            await upload.send(body[at : at + 256])
            await asyncio.sleep(IDLE_SECONDS / 10)

    trickling = asyncio.create_task(trickle())
    try:
        status, _, answer = await upload.answer(timeout=due + 10)
    finally:
        trickling.cancel()
        await upload.close()
    assert status == 408
    assert due - 0.5 < time.monotonic() - started < due + 5
    assert "bytes per second" in json.loads(answer)["error"]["message"]
    assert not stored(hurried.mesh, data)


async def test_a_steady_sender_within_the_rules_is_accepted(
    hurried: Replica, http: aiohttp.ClientSession
) -> None:
    data = photo(300, 200)
    body = form_of(data)
    upload = RawUpload(hurried.port, "198.51.100.33", len(body))
    await upload.open()
    for at in range(0, len(body), 4096):  # ~200 KB/s, pauses of 20 ms
        await upload.send(body[at : at + 4096])
        await asyncio.sleep(0.02)
    status, _, answer = await upload.answer()
    await upload.close()
    assert status == 202, answer
    job = await wait_finished(http, hurried.mesh.upload_url, json.loads(answer)["id"])
    assert job["status"] == "succeeded"
