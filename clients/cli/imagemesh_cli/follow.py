"""Following a job until it finishes: its event stream, else polling.

The stream (`GET /api/v1/jobs/{id}/events`) sends the job's status first and on every
change, and its steps as they happen; it is reconnected when it drops (the server sends a
fresh status first). A server without the stream answers 404 for a job that exists: then
the job is polled. Either way the caller sees each status once and each step once, and
each operation applied as a step of its own: from the `image.processed` step's list of
operations (a server before it sent an `operation.applied` step for each).

The stream sends the steps already recorded first, so a job followed late (the second of
three files is sent while the first is followed) still shows all of them; and each status
the job went through, from its steps, so every job reads the same: `queued` (its
`image.uploaded` step), `processing`, then how it ended. A step is told by its event `id`
(a reconnection sends the recorded steps again)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from .api import ApiClient, ApiError, Disconnected, Unavailable, Unreachable
from .statuses import FINAL_STATUSES, JOB_STATUSES, PROCESSING, QUEUED, SUCCEEDED

__all__ = ["StatusChanged", "StepRecorded", "Update", "follow"]

OPERATION_APPLIED = "operation.applied"
IMAGE_PROCESSED = "image.processed"
STEP_STATUS = {"image.uploaded": QUEUED, "job.processing-started": PROCESSING}
"""The status a step shows the job reached (the server's own status comes after it)."""
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)
POLL_DELAYS = (0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


@dataclass(frozen=True, slots=True)
class StatusChanged:
    job: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.job.get("status", "unknown"))

    @property
    def terminal(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class StepRecorded:
    step: dict[str, Any]


Update = StatusChanged | StepRecorded


class EventsUnsupported(Exception):
    """The server has no event stream for jobs (it predates it)."""


async def follow(
    client: ApiClient, job_id: str, *, retry_for: float | None = None
) -> AsyncGenerator[Update, None]:
    """The job's status changes and steps, until (and including) its final status.

    Connection losses are retried for `retry_for` seconds in a row (default: the client's),
    then raised as Unavailable."""
    seen = _Seen(job_id)
    outage = _Outage(client.retry_for if retry_for is None else retry_for)
    try:
        async with aclosing(_stream(client, job_id, outage)) as updates:
            async for update in updates:
                for new in seen.filter(update):
                    yield new
        return
    except EventsUnsupported:
        pass
    async with aclosing(_poll(client, job_id, outage)) as updates:
        async for update in updates:
            for new in seen.filter(update):
                yield new


async def _stream(client: ApiClient, job_id: str, outage: _Outage) -> AsyncGenerator[Update, None]:
    last_id: str | None = None
    server_delay: float | None = None
    while True:
        try:
            async with aclosing(client.events(job_id, last_event_id=last_id)) as events:
                async for event in events:
                    outage.clear()
                    last_id = event.id or last_id
                    if event.retry is not None:
                        server_delay = event.retry / 1000
                    update = _decode(event.event, event.data)
                    if update is None:
                        continue
                    yield update
                    if isinstance(update, StatusChanged) and update.terminal:
                        return
        except ApiError as exc:
            if exc.status != 404:
                raise
            await client.job(job_id)  # raises 404 itself when there is no such job
            raise EventsUnsupported from exc
        except (Unreachable, Disconnected) as exc:
            outage.failed(exc)
        # Closed before the job finished, or dropped: reconnect.
        await asyncio.sleep(server_delay if server_delay is not None else outage.delay())


async def _poll(client: ApiClient, job_id: str, outage: _Outage) -> AsyncGenerator[Update, None]:
    attempt = 0
    while True:
        try:
            job = await client.job(job_id)
        except (Unreachable, Disconnected) as exc:
            outage.failed(exc)
            await asyncio.sleep(outage.delay())
            continue
        outage.clear()
        update = StatusChanged(job)
        yield update
        if update.terminal:
            return
        await asyncio.sleep(POLL_DELAYS[min(attempt, len(POLL_DELAYS) - 1)])
        attempt += 1


def _decode(kind: str, data: str) -> Update | None:
    """A stream event as an update; None for kinds this client does not know (or bad data)."""
    if kind not in {"status", "step"}:
        return None
    try:
        payload = json.loads(data)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    return StatusChanged(payload) if kind == "status" else StepRecorded(payload)


@dataclass
class _Seen:
    """Each status once, in order (a reconnection repeats it; a step may show it first),
    and each step once."""

    job_id: str
    status: str | None = None
    steps: set[str] = field(default_factory=set)
    operations: int = 0

    def filter(self, update: Update) -> list[Update]:
        if isinstance(update, StepRecorded):
            return self._step(update)
        if not self._advances(update.status):
            return []
        self.status = update.status
        if update.status == SUCCEEDED and not self.operations:
            # Polled, or the stream opened after the job ended: its steps are in the job.
            return [*_steps_of(update.job), update]
        return [update]

    def _step(self, update: StepRecorded) -> list[Update]:
        step = update.step
        key = str(step["id"]) if step.get("id") else json.dumps(step, sort_keys=True, default=str)
        if key in self.steps:
            return []
        self.steps.add(key)
        applied = _operations_of(step)
        if step.get("type") == OPERATION_APPLIED:
            self.operations += 1
        self.operations += len(applied)
        reached = STEP_STATUS.get(str(step.get("type")))
        if reached is None or not self._advances(reached):
            return [*applied, update]
        self.status = reached
        return [*applied, update, StatusChanged({"id": self.job_id, "status": reached})]

    def _advances(self, status: str) -> bool:
        """Whether `status` is past the last one shown (a status never goes back)."""
        if self.status is None:
            return True
        rank = JOB_STATUSES.index
        known = status in JOB_STATUSES and self.status in JOB_STATUSES
        return rank(status) > rank(self.status) if known else status != self.status


def _operations_of(step: dict[str, Any]) -> list[Update]:
    """The operations an `image.processed` step lists, each as a step of its own."""
    operations = step.get("operations") if step.get("type") == IMAGE_PROCESSED else None
    if not isinstance(operations, list):
        return []
    shown: list[Update] = []
    for operation in operations:
        if isinstance(operation, dict):
            applied = {"type": OPERATION_APPLIED, **operation, "service": "imageproc"}
            if isinstance(step.get("attempt"), int):
                applied["attempt"] = step["attempt"]
            if step.get("reused_from"):  # the earlier job's computation, taken by a reuse
                applied["reused_from"] = step["reused_from"]
            shown.append(StepRecorded(applied))
    return shown


def _steps_of(job: dict[str, Any]) -> list[Update]:
    return [
        StepRecorded(
            {
                "type": OPERATION_APPLIED,
                "operation": step.get("op"),
                "index": index,
                "duration_ms": step.get("duration_ms"),
            }
        )
        for index, step in enumerate(job.get("steps") or [])
        if isinstance(step, dict)
    ]


class _Outage:
    """How long the connection has been failing in a row, and the pause before the next try."""

    def __init__(self, limit: float) -> None:
        self._limit = limit
        self._since: float | None = None
        self._failures = 0

    def failed(self, exc: Unavailable) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        self._failures += 1
        if now - self._since > self._limit:
            raise Unavailable(f"{exc} (for {now - self._since:.0f} s)") from exc

    def delay(self) -> float:
        return RECONNECT_DELAYS[min(self._failures, len(RECONNECT_DELAYS) - 1)]

    def clear(self) -> None:
        self._since, self._failures = None, 0
