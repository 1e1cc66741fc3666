"""Group commit: documents recorded while a write is in flight share the next write, and
each caller still learns its own document's outcome. (The store's real `_bulk_docs` runs
in the end-to-end and provenancedb suites; here the writes are counted.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from provenancedb.groupcommit import GroupCommit
from tests.waiting import async_wait_for


class Writes:
    """A `_bulk_docs` stand-in: records each request; the first one waits for `release`."""

    def __init__(self, statuses: dict[str, dict[str, Any]] | None = None) -> None:
        self.requests: list[list[str]] = []
        self.release = asyncio.Event()
        self.in_flight = asyncio.Event()
        self.statuses = statuses or {}
        self.fail_next: Exception | None = None

    async def __call__(self, docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        self.requests.append([doc["_id"] for doc in docs])
        self.in_flight.set()
        if len(self.requests) == 1:
            await self.release.wait()
            return {doc["_id"]: {"ok": True} for doc in docs}
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        return {doc["_id"]: self.statuses.get(doc["_id"], {"ok": True}) for doc in docs}


def record(group: GroupCommit, *ids: str) -> list[asyncio.Task[bool]]:
    return [asyncio.create_task(group.record({"_id": doc_id})) for doc_id in ids]


async def blocked(writes: Writes, group: GroupCommit) -> asyncio.Task[bool]:
    """A first document whose write is in flight (and waits for `writes.release`)."""
    [first] = record(group, "first")
    await asyncio.wait_for(writes.in_flight.wait(), 5)
    return first


async def queued(group: GroupCommit, *ids: str) -> list[asyncio.Task[bool]]:
    """Documents recorded while a write is in flight: they wait for the next one."""
    tasks = record(group, *ids)
    await async_wait_for(lambda: group.waiting == len(ids), timeout=5, interval=0.001)
    return tasks


async def test_documents_recorded_during_a_write_share_the_next_one() -> None:
    writes = Writes()
    group = GroupCommit(writes)
    first = await blocked(writes, group)
    rest = await queued(group, "b", "c", "d")
    writes.release.set()
    assert await asyncio.wait_for(asyncio.gather(first, *rest), 5) == [True] * 4
    assert writes.requests == [["first"], ["b", "c", "d"]]


async def test_each_caller_gets_its_own_outcome() -> None:
    writes = Writes({"old": {"error": "conflict"}, "bad": {"error": "forbidden"}})
    group = GroupCommit(writes)
    first = await blocked(writes, group)
    tasks = await queued(group, "new", "old", "bad", "new")
    writes.release.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert results[:2] == [True, False]  # created; already there (a redelivery)
    assert isinstance(results[2], RuntimeError)
    assert "could not store bad" in str(results[2])
    assert results[3] is False  # the same document twice in one batch: the second is a copy
    assert writes.requests[1] == ["new", "old", "bad"]
    assert await first is True


async def test_a_failed_write_fails_its_batch_only() -> None:
    writes = Writes()
    group = GroupCommit(writes, limit=2)
    first = await blocked(writes, group)
    tasks = await queued(group, "a", "b", "c")
    writes.fail_next = ConnectionError("couchdb down")
    writes.release.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert [type(result) for result in results] == [ConnectionError, ConnectionError, bool]
    assert writes.requests == [["first"], ["a", "b"], ["c"]]
    assert await first is True
    assert await group.record({"_id": "d"}) is True  # the next write goes ahead


async def test_a_cancelled_caller_does_not_stop_the_others() -> None:
    writes = Writes()
    group = GroupCommit(writes)
    first = await blocked(writes, group)
    gone, stays = await queued(group, "a", "b")
    gone.cancel()
    writes.release.set()
    assert await asyncio.wait_for(stays, 5) is True
    assert await first is True
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_a_stopped_writer_leaves_nobody_waiting() -> None:
    writes = Writes()
    group = GroupCommit(writes)
    first = await blocked(writes, group)
    later = await queued(group, "b")
    assert group._writer is not None
    group._writer.cancel()  # as at shutdown
    results = await asyncio.wait_for(asyncio.gather(first, *later, return_exceptions=True), 5)
    assert all(isinstance(result, asyncio.CancelledError) for result in results)
    assert group.waiting == 0
