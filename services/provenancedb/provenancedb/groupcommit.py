"""Group commit: the event documents recorded while a write is in flight, or within a short
linger, go together in the next `_bulk_docs` request (`ProvenanceStore.record`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

GROUP_COMMIT_LIMIT = 64
"""Most documents one group-commit write carries."""


class GroupCommit:
    """Documents recorded while a write is in flight go together in the next `_bulk_docs`
    request: under load one request carries many, and the database does a fraction of the
    work. A write waits at most `linger` seconds for more documents to join it (never for a
    batch to fill): a request costs the CouchDB-compatible server several times what one
    more document in it does (PouchDB Server: ~4 ms per request, ~0.7 ms per document),
    and a job's events arrive within milliseconds of each other, so its documents and its
    summary updates mostly share one request. Each caller still learns its own document's
    outcome: created, already there (False), or its own error."""

    def __init__(
        self,
        write: Callable[[list[dict[str, Any]]], Awaitable[dict[str, dict[str, Any]]]],
        limit: int = GROUP_COMMIT_LIMIT,
        linger: float = 0.0,
    ) -> None:
        self._write = write
        self._limit = limit
        self._linger = linger
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Documents waiting for the next write."""
        return len(self._waiting)

    async def record(self, doc: dict[str, Any]) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((doc, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            if self._linger > 0 and len(self._waiting) < self._limit:
                await asyncio.sleep(self._linger)  # let more documents join this write
            batch = self._waiting[: self._limit]
            del self._waiting[: self._limit]
            first: dict[str, dict[str, Any]] = {}
            for doc, _ in batch:
                first.setdefault(doc["_id"], doc)  # a redelivery in the same batch
            try:
                statuses = await self._write(list(first.values()))
            except asyncio.CancelledError:
                # Stopped (shutdown): nobody may wait forever for a write that never comes.
                for _, future in batch + self._waiting:
                    future.cancel()
                self._waiting.clear()
                raise
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for doc, future in batch:
                if future.done():  # its caller gave up (cancelled)
                    continue
                status = statuses.get(doc["_id"], {})
                if "ok" in status:
                    future.set_result(first[doc["_id"]] is doc)
                elif status.get("error") == "conflict":
                    future.set_result(False)
                else:
                    future.set_exception(
                        RuntimeError(f"could not store {doc['_id']}: {status or 'no answer'}")
                    )
