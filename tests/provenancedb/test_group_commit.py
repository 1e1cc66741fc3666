"""Group commit: documents recorded while a write is in flight share the next write, and
each caller still learns its own document's outcome. (The store's real `_bulk_docs` runs
in the end-to-end and provenancedb suites; here the writes are counted.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from provenancedb.store import GroupCommit


class Writes:
    """A `_bulk_docs` stand-in: records each request; the first one waits for `release`."""

    def __init__(self, statuses: dict[str, dict[str, Any]] | None = None) -> None:
        self.requests: list[list[str]] = []
        self.release = asyncio.Event()
        self.statuses = statuses or {}
        self.fail_next: Exception | None = None

    async def __call__(self, docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        self.requests.append([doc["_id"] for doc in docs])
        if len(self.requests) == 1:
            await self.release.wait()
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        return {doc["_id"]: self.statuses.get(doc["_id"], {"ok": True}) for doc in docs}


async def started(group: GroupCommit, *ids: str) -> list[asyncio.Task[bool]]:
    tasks = [asyncio.create_task(group.record({"_id": doc_id})) for doc_id in ids]
    await asyncio.sleep(0)  # let them queue (and the first write start)
    return tasks


async def test_documents_recorded_during_a_write_share_the_next_one() -> None:
    writes = Writes()
    group = GroupCommit(writes)
    first = await started(group, "a")
    rest = await started(group, "b", "c", "d")
    writes.release.set()
    assert await asyncio.gather(*first, *rest) == [True, True, True, True]
    assert writes.requests == [["a"], ["b", "c", "d"]]


async def test_each_caller_gets_its_own_outcome() -> None:
    writes = Writes({"old": {"error": "conflict"}, "bad": {"error": "forbidden"}})
    writes.release.set()
    group = GroupCommit(writes)
    tasks = await started(group, "new", "old", "bad", "new")
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[:2] == [True, False]  # created; already there (a redelivery)
    assert isinstance(results[2], RuntimeError)
    assert "could not store bad" in str(results[2])
    assert results[3] is False  # the same document twice in one batch: the second is a copy
    assert writes.requests == [["new", "old", "bad"]]


async def test_a_failed_write_fails_its_batch_only() -> None:
    writes = Writes()
    writes.fail_next = ConnectionError("couchdb down")
    group = GroupCommit(writes, limit=2)
    first = await started(group, "a", "b", "c")
    writes.release.set()
    results = await asyncio.gather(*first, return_exceptions=True)
    assert [type(result) for result in results] == [ConnectionError, ConnectionError, bool]
    assert writes.requests == [["a", "b"], ["c"]]
    assert await group.record({"_id": "d"}) is True  # the next write goes ahead


async def test_a_cancelled_caller_does_not_stop_the_others() -> None:
    writes = Writes()
    group = GroupCommit(writes)
    gone, stays = await started(group, "a", "b")
    gone.cancel()
    writes.release.set()
    assert await stays is True
    with pytest.raises(asyncio.CancelledError):
        await gone
