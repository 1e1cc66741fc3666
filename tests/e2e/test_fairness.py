"""Fair sharing between principals, on a real mesh with API tokens.

- One principal's backlog does not delay another's job beyond the jobs already running:
  with 60 slow jobs of `alice` waiting, `bob`'s thumbnail finishes within 15 s.
- A principal's waiting jobs are capped: the (cap+1)th gets 429 `too_many_queued` with
  `Retry-After`, while another principal is still accepted.

The mesh runs one job at a time (RUNNER_CONCURRENCY=1, IMAGEPROC_CONCURRENCY=1) and each of
alice's jobs blurs a 12 MP photo with a large sigma (~1-2 s here), so her 60 jobs are a
backlog of a minute or more. With FIFO dispatch (what the runner did before: prefetch =
concurrency) bob's thumbnail waits behind all of it: run this module with
`IMAGEMESH_TEST_RUNNER_PREFETCH=1` to see the first test fail that way.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.conftest import Mesh, isolated_env, queue_counts, running_mesh
from tests.e2e.helpers import bearer_sessions, decode, photo, submit, wait_finished
from tests.waiting import async_wait_for
from upload.tokens import token_hash

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TOKENS = {name: f"{name}-fairness-test-token-0123456789" for name in ("alice", "bob", "carol")}
CAP = 64
"""UPLOAD_MAX_QUEUED_PER_PRINCIPAL here: alice's 60 waiting jobs fit under it."""
BACKLOG = 60
THUMBNAIL = json.dumps([{"op": "thumbnail", "width": 64, "height": 64}])
FINISHED_WITHIN = 15.0
RUNNER_QUEUE = "imageproc_runner.image-uploaded"


@pytest.fixture(scope="module")
def fair_mesh(
    stack_config: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    settings = {
        "UPLOAD_API_TOKEN_HASHES": ",".join(
            f"{name}:{token_hash(token)}" for name, token in TOKENS.items()
        ),
        "UPLOAD_SESSION_SECRET": "fairness-test-session-secret",
        "UPLOAD_MAX_QUEUED_PER_PRINCIPAL": str(CAP),
        "RUNNER_CONCURRENCY": "1",
        "RUNNER_PREFETCH": os.environ.get("IMAGEMESH_TEST_RUNNER_PREFETCH", "250"),
        "IMAGEPROC_CONCURRENCY": "1",
    }
    with (
        isolated_env(stack_config, "fair") as env,
        running_mesh({**env, **settings}, tmp_path_factory.mktemp("fair-logs")) as mesh,
    ):
        yield mesh


@pytest.fixture
async def sessions() -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    async with bearer_sessions(TOKENS) as opened:
        yield opened


async def _accepted(session: aiohttp.ClientSession, base: str, data: bytes, pipeline: str) -> str:
    response = await submit(session, base, data, pipeline)
    async with response:
        assert response.status == 202, await response.text()
        return str((await response.json())["id"])


async def _statuses(session: aiohttp.ClientSession, base: str, job_ids: list[str]) -> Counter[str]:
    async def one(job_id: str) -> str:
        async with session.get(f"{base}/api/v1/jobs/{job_id}") as response:
            assert response.status == 200, await response.text()
            return str((await response.json())["status"])

    return Counter(await asyncio.gather(*(one(job_id) for job_id in job_ids)))


async def test_another_principals_thumbnail_finishes_while_a_backlog_waits(
    fair_mesh: Mesh, sessions: dict[str, aiohttp.ClientSession]
) -> None:
    base = fair_mesh.upload_url
    alice, bob = sessions["alice"], sessions["bob"]
    big = photo(4000, 3000, quality=70)
    # Four at a time: upload's cap on one client's uploads in progress.
    limit = asyncio.Semaphore(4)

    async def slow(n: int) -> str:
        async with limit:  # a sigma of its own per job: 60 different jobs
            pipeline = json.dumps([{"op": "blur", "sigma": 90 + n / 10}])
            return await _accepted(alice, base, big, pipeline)

    backlog = await asyncio.gather(*(slow(n) for n in range(BACKLOG)))
    before = await _statuses(alice, base, backlog)
    assert before["queued"] >= BACKLOG // 2, f"the backlog ran too fast to test: {before}"

    started = time.monotonic()
    job_id = await _accepted(bob, base, photo(800, 600), THUMBNAIL)
    job = await wait_finished(bob, base, job_id, timeout=120)
    elapsed = time.monotonic() - started
    during = await _statuses(alice, base, backlog)
    print(f"bob's thumbnail: {elapsed:.1f} s; alice's backlog before {before}, after {during}")

    assert job["status"] == "succeeded", job
    assert elapsed < FINISHED_WITHIN, (
        f"bob's thumbnail took {elapsed:.1f} s behind alice's backlog ({during})"
    )
    assert during["queued"] >= BACKLOG // 3, f"most of alice's jobs should still wait: {during}"
    async with bob.get(f"{base}/api/v1/jobs/{job_id}/result") as response:
        assert response.status == 200
        assert max(decode(await response.read()).size) <= 64

    # Stopped gracefully, the runner hands the jobs it buffered back to the queue: every
    # job of alice's that is still waiting is in it, none lost, none left unacknowledged.
    assert fair_mesh.stop("imageproc_runner") == 0

    async def all_waiting_are_queued() -> bool:
        statuses = await _statuses(alice, base, backlog)
        counts = queue_counts(fair_mesh.env)
        return "processing" not in statuses and counts.get(RUNNER_QUEUE) == statuses["queued"]

    # Each look reads all of alice's statuses: once a second keeps it within the API's
    # rate limit (200 reads/s), however long the runner takes to hand its jobs back.
    await async_wait_for(all_waiting_are_queued, timeout=30, interval=1.0)


async def test_waiting_jobs_are_capped_per_principal(
    fair_mesh: Mesh, sessions: dict[str, aiohttp.ClientSession]
) -> None:
    base = fair_mesh.upload_url
    if "imageproc_runner" in fair_mesh.processes:  # nothing starts: every job stays waiting
        assert fair_mesh.stop("imageproc_runner") == 0
    carol, bob = sessions["carol"], sessions["bob"]
    small = photo(320, 240)
    for _ in range(CAP):
        await _accepted(carol, base, small, THUMBNAIL)

    response = await submit(carol, base, small, THUMBNAIL)
    async with response:
        assert response.status == 429, await response.text()
        assert (await response.json())["error"]["code"] == "too_many_queued"
        assert int(response.headers["Retry-After"]) > 0

    await _accepted(bob, base, small, THUMBNAIL)  # another principal is still accepted
