"""The per-principal cap on waiting jobs (pure logic: the count and the clock are doubles;
the real mesh is tests/e2e/test_fairness.py)."""

from __future__ import annotations

import json

import pytest

from tests.waiting import async_wait_for
from upload.errors import ApiError
from upload.waiting import RETRY_AFTER_SECONDS, WaitingCap


class Counts:
    """provenancedb.job-counts as a dict of queued jobs per principal; counts the reads."""

    def __init__(self, **queued: int) -> None:
        self.queued = queued
        self.reads: list[str] = []

    async def __call__(self, principal: str) -> int:
        self.reads.append(principal)
        return self.queued.get(principal, 0)


async def test_the_job_past_the_cap_is_refused_429_with_retry_after() -> None:
    counts = Counts(alice=98)
    cap = WaitingCap(100, counts, clock=lambda: 0.0)
    await cap.admit("alice")  # the 99th waiting
    await cap.admit("alice")  # the 100th
    with pytest.raises(ApiError) as refused:
        await cap.admit("alice")  # the 101st
    assert refused.value.status == 429
    assert refused.value.code == "too_many_queued"
    response = refused.value.response()
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert isinstance(response.body, bytes)
    assert json.loads(response.body)["error"]["code"] == "too_many_queued"


async def test_another_principal_is_still_admitted() -> None:
    counts = Counts(alice=100)
    cap = WaitingCap(100, counts, clock=lambda: 0.0)
    with pytest.raises(ApiError):
        await cap.admit("alice")
    await cap.admit("bob")
    assert counts.reads == ["alice", "bob"]


async def test_one_read_per_interval_counting_what_was_admitted_meanwhile() -> None:
    now = [0.0]
    counts = Counts(alice=0)
    cap = WaitingCap(3, counts, interval=1.0, clock=lambda: now[0])
    for _ in range(3):
        await cap.admit("alice")
    with pytest.raises(ApiError):
        await cap.admit("alice")  # 3 admitted within the second: at the cap, no new read
    assert counts.reads == ["alice"]
    now[0] = 1.5
    counts.queued["alice"] = 1  # two of them started meanwhile
    await cap.admit("alice")
    await cap.admit("alice")
    with pytest.raises(ApiError):
        await cap.admit("alice")
    assert counts.reads == ["alice", "alice"]


async def test_a_failed_count_is_not_an_admission() -> None:
    async def broken(principal: str) -> int:
        raise ApiError(503, "unavailable", "the provenance service is unavailable")

    cap = WaitingCap(3, broken, clock=lambda: 0.0)
    with pytest.raises(ApiError) as refused:
        await cap.admit("alice")
    assert refused.value.status == 503


async def test_a_burst_during_one_count_is_counted_whole() -> None:
    """Requests that all find no fresh reading, and read the count at once, must not each
    start from it: the first reading stored counts them all."""
    import asyncio

    release, reading = asyncio.Event(), []

    async def slow_count(principal: str) -> int:
        reading.append(principal)
        await release.wait()
        return 0

    cap = WaitingCap(3, slow_count, clock=lambda: 0.0)
    burst = [asyncio.create_task(cap.admit("alice")) for _ in range(6)]
    await async_wait_for(lambda: len(reading) == 6, timeout=5)
    release.set()
    outcomes = await asyncio.gather(*burst, return_exceptions=True)
    assert sum(outcome is None for outcome in outcomes) == 3
    assert all(isinstance(o, ApiError) and o.status == 429 for o in outcomes if o is not None)
