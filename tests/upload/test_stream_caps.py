"""Progress streams are capped per principal and in all (429 with Retry-After beyond), a
slot is free again when its stream ends, also when the client just leaves, and another
principal's job is 404 (its slot freed at once). Served over real HTTP by upload's own
guard and route; provenance is a stand-in whose jobs never finish, so streams stay open
for as long as the test wants."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.security.test_guard import settings
from tests.waiting import async_wait_for
from upload.errors import ApiError, error_middleware
from upload.guard import Guard, guard_middleware
from upload.job_views import job_events
from upload.jobs import Jobs
from upload.keys import GUARD, JOBS, LIVE, STREAMS
from upload.live import LiveJobs
from upload.progress import stream_slots
from upload.slots import Slots
from upload.tokens import new_token, token_hash

ALICE_TOKEN, BOB_TOKEN = new_token(), new_token()
ALICES_JOB = "00000000-0000-4000-8000-00000000000a"
BOBS_JOB = "00000000-0000-4000-8000-00000000000b"


class QueuedForever:
    """Provenance where every job waits to start, for ever."""

    async def status(self, job_id: str) -> dict[str, Any] | None:
        owner = {ALICES_JOB: "alice", BOBS_JOB: "bob"}.get(job_id)
        return None if owner is None else {"id": job_id, "status": "queued", "owner": owner}

    async def readable(self, job_id: str, reader: Any) -> dict[str, Any] | None:
        job = await self.status(job_id)
        return job if job is not None and reader.may_read(job["owner"]) else None

    recorded_status = status

    async def provenance(self, job_id: str) -> dict[str, Any] | None:
        return None  # nothing recorded yet: a stream starts with no steps


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestServer]:
    monkeypatch.setattr("upload.progress.DISCONNECT_CHECK_SECONDS", 0.05)
    guard = Guard(
        settings(
            upload_api_token_hashes=f"alice:{token_hash(ALICE_TOKEN)},bob:{token_hash(BOB_TOKEN)}"
        )
    )
    app = web.Application(middlewares=[error_middleware, guard_middleware(guard)])
    app[GUARD] = guard
    app[JOBS] = cast(Jobs, QueuedForever())
    app[LIVE] = LiveJobs()
    app[STREAMS] = stream_slots(total=3, per_principal=2)
    app.router.add_get("/api/v1/jobs/{job_id}/events", job_events)
    running = TestServer(app)
    async with running:
        yield running


async def open_stream(
    http: aiohttp.ClientSession, server: TestServer, token: str, job_id: str
) -> aiohttp.ClientResponse:
    response = await http.get(
        server.make_url(f"/api/v1/jobs/{job_id}/events"),
        headers={"Authorization": f"Bearer {token}"},
    )
    if response.status == 200:
        # Established: the first status came.
        while (line := await response.content.readline()) and line != b"event: status\n":
            pass
        assert line == b"event: status\n"
    return response


async def test_streams_are_capped_per_principal_and_in_all_and_freed_when_clients_leave(
    server: TestServer,
) -> None:
    slots = server.app[STREAMS]
    async with aiohttp.ClientSession() as http:
        first = await open_stream(http, server, ALICE_TOKEN, ALICES_JOB)
        second = await open_stream(http, server, ALICE_TOKEN, ALICES_JOB)
        assert (first.status, second.status) == (200, 200)
        assert slots.held_by("principal:alice") == 2
        third = await open_stream(http, server, ALICE_TOKEN, ALICES_JOB)
        assert third.status == 429
        assert (await third.json())["error"]["code"] == "too_many_streams"
        assert int(third.headers["Retry-After"]) > 0

        # Another principal's job is not found, and holds no slot after.
        foreign = await open_stream(http, server, BOB_TOKEN, ALICES_JOB)
        assert foreign.status == 404
        assert slots.held_by("principal:bob") == 0

        # Bob's own stream takes the last slot of the server; then the server is full.
        bobs = await open_stream(http, server, BOB_TOKEN, BOBS_JOB)
        assert bobs.status == 200
        full = await open_stream(http, server, BOB_TOKEN, BOBS_JOB)
        assert full.status == 429
        assert "this server" in (await full.json())["error"]["message"]
        assert slots.in_use == 3

        # A client that just leaves gives its slot back.
        first.close()
        await async_wait_for(lambda: slots.held_by("principal:alice") == 1, timeout=10)
        again = await open_stream(http, server, ALICE_TOKEN, ALICES_JOB)
        assert again.status == 200
        for response in (second, bobs, again):
            response.close()
        await async_wait_for(lambda: slots.in_use == 0, timeout=10)


def broken_stream(slots: Slots) -> Iterator[None]:
    with slots.hold("b"):
        assert slots.in_use == 2
        raise RuntimeError("the stream broke")
    yield


def test_slots_count_per_client_and_free_on_any_exit() -> None:
    slots = stream_slots(total=2, per_principal=1)
    with slots.hold("a"):
        assert slots.held_by("a") == 1
        with pytest.raises(ApiError, match="open for you"), slots.hold("a"):
            pass
        broken = broken_stream(slots)
        with pytest.raises(RuntimeError, match="broke"):
            next(broken)
        assert slots.held_by("b") == 0
    assert slots.in_use == 0
