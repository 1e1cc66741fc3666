"""The per-principal cap on waiting jobs (`UPLOAD_MAX_QUEUED_PER_PRINCIPAL`).

The global cap (`UPLOAD_MAX_QUEUED`, 503 `busy`) protects the mesh; this one protects the
other principals: one client may not fill the queue. Past it, a new job is refused 429
`too_many_queued` with `Retry-After`, before its body is read.

What counts is the principal's jobs that are `queued` (accepted, not started), as the
replica's live view of the mesh's events counts them (`LiveJobs.waiting`: every replica
sees every job start, whichever replica accepted it), or provenance
(`provenancedb.job-counts`) without one. A reading is reused for `interval` seconds,
counting the jobs this replica admitted meanwhile; with several upload replicas a
principal may overshoot by what the others admitted within that second. Jobs queued
before this replica started are not in its live count: after a restart the cap counts
from then on (the global cap, on the queue's depth, still holds).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .errors import ApiError

RETRY_AFTER_SECONDS = 10
"""A principal at its cap waits for one of its own jobs to start: seconds, not minutes."""
MAX_REMEMBERED = 4096
"""Principals whose reading is kept; older readings are dropped past this many."""


@dataclass
class _Reading:
    waiting: int
    checked: float


class WaitingCap:
    def __init__(
        self,
        limit: int,
        count: Callable[[str], Awaitable[int]],
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._count = count
        self._interval = interval
        self._clock = clock
        self._readings: dict[str, _Reading] = {}

    async def admit(self, principal: str) -> None:
        """Reserve a waiting slot for one more job of `principal`, or refuse it (429)."""
        now = self._clock()
        reading = self._readings.get(principal)
        if reading is None or now - reading.checked >= self._interval:
            fresh = await self._count(principal)
            # Requests of this principal that read the count meanwhile stored theirs and
            # counted their own jobs in it: keep that reading, or they would go uncounted.
            now = self._clock()
            reading = self._readings.get(principal)
            if reading is None or now - reading.checked >= self._interval:
                reading = _Reading(fresh, now)
                self._forget_old(now)
                self._readings[principal] = reading
        if reading.waiting >= self._limit:
            raise ApiError(
                429,
                "too_many_queued",
                f"{reading.waiting} of your jobs are waiting to be processed (at most "
                f"{self._limit}); try again once some have started",
                retry_after=RETRY_AFTER_SECONDS,
            )
        # Counted until the next reading; a job refused later (bad body) is over-counted
        # for at most `interval` seconds.
        reading.waiting += 1

    def _forget_old(self, now: float) -> None:
        if len(self._readings) < MAX_REMEMBERED:
            return
        for principal, reading in list(self._readings.items()):
            if now - reading.checked >= self._interval:
                del self._readings[principal]
