"""Upload intake without servers: the spool (a small buffer, then an unnamed file), the
body's time rules (idle pause, minimum rate) and the caps on uploads in flight."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from unittest import mock

import pytest
from aiohttp import StreamReader
from aiohttp.test_utils import make_mocked_request

from pipeline import ImageLimits, harden_vips
from tests.e2e.helpers import photo
from upload.errors import ApiError
from upload.guard import PEER, PRINCIPAL, Peer, Principal, client_of
from upload.inflight import upload_slots
from upload.intake import BodyRules, Upload, read_upload
from upload.slots import Slots
from upload.spool import Spool

BOUNDARY = "intakeboundary"


@pytest.fixture(autouse=True, scope="module")
def _hardened() -> None:
    harden_vips()


def held_under(directory: Path) -> list[str]:
    """Files this process holds open under `directory` (unnamed ones show as `#inode
    (deleted)`): what a spool leaves behind if it is not closed."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{directory}/"):
            found.append(target)
    return found


def form(data: bytes, pipeline: bytes = b"[]") -> bytes:
    dash = f"--{BOUNDARY}".encode()
    return (
        dash
        + b'\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
        + data
        + b"\r\n"
        + dash
        + b'\r\nContent-Disposition: form-data; name="pipeline"\r\n\r\n'
        + pipeline
        + b"\r\n"
        + dash
        + b"--\r\n"
    )


class Sender:
    """A request whose body arrives as a test says: chunks, pauses, or nothing more."""

    def __init__(self, length: int) -> None:
        self.payload = StreamReader(mock.Mock(), 2**16, loop=asyncio.get_running_loop())
        headers = [
            ("Content-Type", f"multipart/form-data; boundary={BOUNDARY}"),
            ("Content-Length", str(length)),
        ]
        self.request = make_mocked_request(
            "POST", "/api/v1/jobs", headers=headers, payload=self.payload
        )

    async def send(self, data: bytes, *, chunk: int = 64 * 1024, pause: float = 0.0) -> None:
        for at in range(0, len(data), chunk):
            self.payload.feed_data(data[at : at + chunk])
            await asyncio.sleep(pause)

    def end(self) -> None:
        self.payload.feed_eof()


async def upload(body: bytes, rules: BodyRules, *, chunk: int = 64 * 1024) -> Upload:
    sender = Sender(len(body))
    feeding = asyncio.create_task(sender.send(body, chunk=chunk))
    feeding.add_done_callback(lambda _: sender.end())
    try:
        return await read_upload(
            sender.request, max_bytes=25 * 2**20, limits=ImageLimits(), max_ops=10, body=rules
        )
    finally:
        feeding.cancel()


# --------------------------------------------------------------------------- the spool


async def test_a_small_file_stays_in_memory(tmp_path: Path) -> None:
    spool = Spool(memory=1024 * 1024, directory=str(tmp_path))
    data = os.urandom(300_000)
    for at in range(0, len(data), 65536):
        await spool.write(data[at : at + 65536])
    await spool.finish()
    assert not spool.on_disk
    assert not held_under(tmp_path)
    assert spool.reader().read() == data
    assert (spool.size, spool.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert spool.head == data[:64]


async def test_a_large_file_goes_to_an_unnamed_file_and_memory_stays_bounded(
    tmp_path: Path,
) -> None:
    memory = 256 * 1024
    spool = Spool(memory=memory, directory=str(tmp_path))
    data = os.urandom(5 * 1024 * 1024)
    chunk = 65536
    for at in range(0, len(data), chunk):
        await spool.write(data[at : at + chunk])
        # Never more than the buffer (and the chunk that filled it) in memory.
        assert spool._pending_bytes <= memory + chunk
    await spool.finish()
    assert spool.on_disk
    assert os.listdir(tmp_path) == []  # no name: nothing to leave behind
    assert len(held_under(tmp_path)) == 1
    assert spool.reader().read() == data
    assert spool.sha256 == hashlib.sha256(data).hexdigest()
    spool.close()
    assert not held_under(tmp_path)


# --------------------------------------------------------------------------- read_upload


@pytest.mark.parametrize("memory", [64 * 1024, 8 * 1024 * 1024])
async def test_an_upload_is_the_bytes_sent_from_memory_or_disk(tmp_path: Path, memory: int) -> None:
    data = photo(1200, 900, quality=95)
    assert len(data) > 64 * 1024
    rules = BodyRules(memory_bytes=memory, spool_dir=str(tmp_path))
    with await upload(form(data, b'[{"op": "grayscale"}]'), rules) as accepted:
        assert accepted.spool.on_disk is (memory < len(data))
        assert (accepted.info.format.value, accepted.info.width) == ("jpeg", 1200)
        assert accepted.size == len(data)
        assert accepted.sha256 == hashlib.sha256(data).hexdigest()
        assert accepted.spool.reader().read() == data
        assert accepted.pipeline == [{"op": "grayscale"}]
    assert not held_under(tmp_path)


async def test_a_refused_upload_leaves_nothing_on_disk(tmp_path: Path) -> None:
    rules = BodyRules(memory_bytes=64 * 1024, spool_dir=str(tmp_path))
    not_an_image = b"\xff\xd8\xff" + bytes(1024 * 1024)  # a JPEG's magic, then zeros
    with pytest.raises(ApiError) as caught:
        await upload(form(not_an_image), rules)
    assert caught.value.status == 422
    assert not held_under(tmp_path)


async def test_a_second_file_is_a_bad_request() -> None:
    data = photo(40, 30)
    body = form(data).replace(b"pipeline", b"file", 1)
    with pytest.raises(ApiError) as caught:
        await upload(body, BodyRules())
    assert (caught.value.status, caught.value.code) == (400, "bad_request")


async def test_a_sender_that_stalls_is_cut_with_408_and_nothing_kept(tmp_path: Path) -> None:
    data = photo(1200, 900, quality=95)
    body = form(data)
    sender = Sender(len(body))
    rules = BodyRules(idle_seconds=0.3, memory_bytes=64 * 1024, spool_dir=str(tmp_path))
    await sender.send(body[: len(body) // 2])  # then nothing
    started = time.monotonic()
    with pytest.raises(ApiError) as caught:
        await read_upload(
            sender.request, max_bytes=2**25, limits=ImageLimits(), max_ops=10, body=rules
        )
    assert time.monotonic() - started < 3.0
    assert (caught.value.status, caught.value.code) == (408, "body_timeout")
    assert "nothing arrived for 0.3 s" in caught.value.message
    assert caught.value.response().headers["Connection"] == "close"
    assert not held_under(tmp_path)


async def test_a_sender_below_the_minimum_rate_is_cut_even_if_it_never_pauses(
    tmp_path: Path,
) -> None:
    body = form(photo(300, 200))
    sender = Sender(len(body))
    # Due within 0.5 s + length / (8 x length) ≈ 0.6 s; it sends 1 KiB every 0.05 s.
    rules = BodyRules(idle_seconds=0.5, min_bytes_per_second=8 * len(body))
    feeding = asyncio.create_task(sender.send(body, chunk=1024, pause=0.05))
    started = time.monotonic()
    try:
        with pytest.raises(ApiError) as caught:
            await read_upload(
                sender.request, max_bytes=2**25, limits=ImageLimits(), max_ops=10, body=rules
            )
    finally:
        feeding.cancel()
    assert time.monotonic() - started < 3.0
    assert (caught.value.status, caught.value.code) == (408, "body_timeout")
    assert "bytes per second" in caught.value.message


async def test_a_slow_but_steady_sender_within_the_rules_gets_through() -> None:
    body = form(photo(300, 200))
    # 4 KiB every 0.02 s, pauses far below the idle time, well above the minimum rate.
    rules = BodyRules(idle_seconds=0.5, min_bytes_per_second=1024)
    sender = Sender(len(body))
    feeding = asyncio.create_task(sender.send(body, chunk=4096, pause=0.02))
    feeding.add_done_callback(lambda _: sender.end())
    with await read_upload(
        sender.request, max_bytes=2**25, limits=ImageLimits(), max_ops=10, body=rules
    ) as accepted:
        assert accepted.info.width == 300


# --------------------------------------------------------------------------- caps


def refusal(slots: Slots, client: str) -> tuple[int, str, int | None] | None:
    try:
        with slots.hold(client):
            return None
    except ApiError as exc:
        return exc.status, exc.code, exc.retry_after


def test_uploads_in_flight_are_capped_per_client_then_in_total() -> None:
    slots = upload_slots(total=3, per_client=2)
    with held(slots, "a", "a"):
        assert refusal(slots, "a") == (429, "too_many_uploads", 5)
        with held(slots, "b"):
            assert slots.in_use == 3
            assert refusal(slots, "c") == (503, "busy", 5)
            assert refusal(slots, "a") == (429, "too_many_uploads", 5)  # its own cap first
        assert refusal(slots, "c") is None
    assert slots.in_use == 0
    assert slots._held == {}  # nothing kept for clients with nothing in flight


def test_a_slot_is_given_back_when_the_upload_fails() -> None:
    slots = upload_slots(total=1, per_client=1)
    with pytest.raises(RuntimeError), slots.hold("a"):
        raise RuntimeError("the upload failed")
    assert refusal(slots, "a") is None


class held:
    """Slots held for `clients` while the block runs."""

    def __init__(self, slots: Slots, *clients: str) -> None:
        self._holds = [slots.hold(client) for client in clients]

    def __enter__(self) -> None:
        for hold in self._holds:
            hold.__enter__()

    def __exit__(self, *_exc: object) -> None:
        for hold in reversed(self._holds):
            hold.__exit__(None, None, None)


def asking(principal: str, address: str) -> str:
    request = make_mocked_request("POST", "/api/v1/jobs")
    request[PRINCIPAL] = Principal(principal)
    request[PEER] = Peer(address, "http")
    return client_of(request)


def test_a_client_is_its_principal_when_authenticated_else_its_address() -> None:
    # One principal from two addresses shares its cap; without tokens (everyone `local`)
    # each address has its own, an IPv6 client by its /64.
    assert asking("alice", "192.0.2.1") == asking("alice", "192.0.2.2") == "principal:alice"
    assert asking("local", "192.0.2.1") == "address:192.0.2.1"
    assert asking("local", "192.0.2.1") != asking("local", "192.0.2.2")
    assert asking("local", "2001:db8::1") == asking("local", "2001:db8::2")
    assert asking("local", "2001:db8::1") != asking("local", "2001:db8:0:1::1")
