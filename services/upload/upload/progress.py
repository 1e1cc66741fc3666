"""`GET /api/v1/jobs/{id}/events`: a job's progress as server-sent events.

    retry: 3000
    event: step        data: {"id", "type", "time", "service", "operations"?, "stored"?, ...}
    event: status      data: the job, as GET /api/v1/jobs/{id} shows it

First the steps already recorded (`steps.recorded_steps`: the intake is always over before
a client can open the stream, often the whole job; or, when this replica saw every event
of the job pass, those events, with no provenance read: `LiveJobs.history`), then the
job's current status; then each step as the mesh publishes it, and the status again
whenever it changes. Before a terminal status, any recorded step not sent yet: the stream
sends every step of the job once (named by its event `id`), the same steps as the job
page's timeline. The stream ends after a terminal status. A client that reconnects
(EventSource does, on its own) starts over, so nothing it missed matters; it tells the
steps it has by their `id`.

Streams are capped (`stream_slots`): each holds a connection, an inbox and provenance RPCs
for up to MAX_STREAM_SECONDS, so one principal may hold only so many at once, and the
replica only so many in all; beyond, 429 with Retry-After. A slot is freed when its
stream ends, however it ends (the job finished, the client left, the replica stops).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from messaging import Envelope
from messaging.events import Event, ImageReused
from messaging.jobs import EVENT_STATUS, FINAL_STATUSES, STATUS_RANK

from .errors import ApiError
from .guard import Principal
from .jobs import Jobs, public
from .live import Inbox, LiveJobs
from .slots import Scope, Slots
from .steps import recorded_steps, step, taken_step

log = structlog.get_logger("upload")

HEARTBEAT_SECONDS = 15.0
DISCONNECT_CHECK_SECONDS = 1.0
"""How often a quiet stream looks whether its client left (aiohttp does not cancel the
handler when it does), so that its slot is free again within about this long."""
MAX_STREAM_SECONDS = 3600.0
RECONNECT_MS = 3000
STATUS_SETTLE_SECONDS = 10.0
"""How long to wait for provenance to show a status an event implies."""
INTAKE_SETTLE_SECONDS = 2.0
"""How long a stream of a job just accepted waits for provenance to record its intake
(published before the 202), so that its first steps come first."""
QUIET_RECHECK_SECONDS = 10.0
"""How long a stream waits without news before it reads the job's status again (the live
queue may have lost the event it waits for)."""
CATCH_UP_SECONDS = 2.0
"""How long to wait for a finished job's last steps to reach the stream."""
STREAM_RETRY_AFTER = 5
"""Seconds a client refused a stream is told to wait (streams end as jobs finish)."""


def stream_slots(*, total: int, per_principal: int) -> Slots:
    """How many progress streams may be open, per principal (or address) and in all."""

    def refuse(scope: Scope, held: int, cap: int) -> ApiError:
        if scope == "client":
            return _too_many(f"{held} progress streams are open for you already")
        return _too_many("too many progress streams are open on this server")

    return Slots(total=total, per_client=per_principal, refuse=refuse)


def _too_many(message: str) -> ApiError:
    return ApiError(
        429,
        "too_many_streams",
        f"{message}; close one or retry after {STREAM_RETRY_AFTER} s",
        retry_after=STREAM_RETRY_AFTER,
    )


async def stream_progress(
    request: web.Request,
    jobs: Jobs,
    live: LiveJobs,
    job_id: str,
    *,
    principal: Principal,
    slots: Slots,
    client: str,
) -> web.StreamResponse | None:
    """Stream a job's progress; None when the job is unknown, or not the principal's to
    read (before anything is sent). `client`: whom the stream counts against in `slots`."""
    # The slot first: it bounds the provenance RPCs of streams being set up, too. Then
    # follow, then read the status: an event between the two is not lost.
    with (
        slots.hold(client),
        live.follow(job_id) as inbox,
        structlog.contextvars.bound_contextvars(job_id=job_id),
    ):
        job = await _first_status(jobs, live, job_id)
        if job is None or not principal.may_read(job.get("owner")):
            return None
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # proxies must not buffer the stream
            }
        )
        await response.prepare(request)
        stream = _Stream(response, closed=lambda: _gone(request))
        await stream.send(f"retry: {RECONNECT_MS}\n\n")
        try:
            await _history(stream, live.history(job_id))
            await _status(stream, jobs, job, first=True)
            await _follow(stream, jobs, live, inbox, job)
        except ConnectionResetError:
            # The client left; what was sent was a 200 (not an error to count or log).
            log.info("progress_stream_closed_by_client")
        except asyncio.CancelledError:
            log.info("progress_stream_closed_by_client")
            raise
        return response


async def _follow(
    stream: _Stream, jobs: Jobs, live: LiveJobs, inbox: Inbox, job: dict[str, Any]
) -> None:
    deadline = time.monotonic() + MAX_STREAM_SECONDS
    news = time.monotonic()
    while job["status"] not in FINAL_STATUSES and time.monotonic() < deadline:
        try:
            envelope, event = await asyncio.wait_for(inbox.queue.get(), DISCONNECT_CHECK_SECONDS)
        except TimeoutError:
            if stream.closed():
                raise ConnectionResetError("the client left") from None
            if time.monotonic() - stream.last_write >= HEARTBEAT_SECONDS:
                await stream.send(": keep-alive\n\n")
            if time.monotonic() - news >= QUIET_RECHECK_SECONDS:
                news = time.monotonic()
                job = await _recheck(stream, jobs, job)
            continue
        news = time.monotonic()
        implied = await _relay(stream, envelope, event)
        if inbox.overflowed:
            stream.from_live = False  # steps were lost: provenance says them at the end
        if inbox.overflowed or (implied and STATUS_RANK[implied] > STATUS_RANK[job["status"]]):
            inbox.overflowed = False
            fresh = await _current(jobs, live, job, implied or job["status"])
            if fresh["status"] in FINAL_STATUSES and implied not in FINAL_STATUSES:
                await _catch_up(stream, inbox)
            if fresh["status"] != job["status"]:
                await _status(stream, jobs, fresh)
            job = fresh


async def _recheck(stream: _Stream, jobs: Jobs, job: dict[str, Any]) -> dict[str, Any]:
    """The job's status after a quiet while, sent if it moved on (an event lost on the
    live queue must not hold the stream until its end)."""
    fresh = await jobs.recorded_status(job["id"])
    if fresh is None or STATUS_RANK[fresh["status"]] <= STATUS_RANK[job["status"]]:
        return job
    stream.from_live = False  # the live queue lost what moved it on: provenance says it
    await _status(stream, jobs, fresh)
    return fresh


async def _history(stream: _Stream, history: list[tuple[Envelope, Event]] | None) -> None:
    """Send the steps this replica saw pass before the stream opened, when it saw every
    one of them (`LiveJobs.history`): then no step is provenance's to say."""
    if history is None:
        return
    stream.from_live = True
    for envelope, event in history:
        await stream.relay(envelope, event)


async def _status(stream: _Stream, jobs: Jobs, job: dict[str, Any], *, first: bool = False) -> None:
    """Send the job's status, after the recorded steps not sent yet: all of them when the
    stream starts (what happened before it opened) and when the job ends (what the live
    queue lost or had not delivered), so that a client that stops at a terminal status
    has every step by then. A stream that had every step from this replica's live view
    (`_history`, no step lost since) reads none from provenance, nor does one of a job
    that reused an earlier output when its `image.reused` said the computation it took
    (`taken_step`); one that did not (an index entry written before) waits for provenance
    to record the reuse, and reads that computation from there."""
    final = job["status"] in FINAL_STATUSES
    reused = final and bool(job.get("reused_from")) and not stream.sent_taken
    if (first or final) and (reused or not stream.from_live):
        await _replay(stream, jobs, job, settle=first or reused)
    await stream.event("status", public(job))


async def _replay(stream: _Stream, jobs: Jobs, job: dict[str, Any], *, settle: bool) -> None:
    """Send the steps provenance has recorded that this stream has not sent. `settle`
    (the stream's start): once provenance shows the job as far as `job` (it records the
    events concurrently): for a job just accepted, its intake, which a client would
    otherwise see only at the end, out of order; for one that ended before the stream
    opened, its last steps, which this stream never saw live. A job that ended while
    followed had its last steps relayed live, and its intake recorded long before."""
    final = job["status"] in FINAL_STATUSES
    try:
        if settle:
            await _recorded(jobs, job, STATUS_SETTLE_SECONDS if final else INTAKE_SETTLE_SECONDS)
        document = await jobs.provenance(job["id"])
    except ApiError as exc:  # provenance is away: the live steps are all there is
        log.warning("progress_replay_unavailable", error=exc.message)
        return
    for shown in recorded_steps(document or {}):
        if shown["id"] not in stream.sent_ids:
            await stream.step(shown)


async def _relay(stream: _Stream, envelope: Envelope, event: Event) -> str | None:
    """Send one step (unless sent already, replayed from provenance); the status it
    implies, if any."""
    await stream.relay(envelope, event)
    return EVENT_STATUS.get(event.type)


async def _catch_up(stream: _Stream, inbox: Inbox) -> None:
    """Provenance shows the job finished before its last steps reached this stream (the
    two follow the mesh's events on separate queues): relay those steps first, up to the
    terminal event, which the live queue delivers after them, or for CATCH_UP_SECONDS."""
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        try:
            envelope, event = await asyncio.wait_for(inbox.queue.get(), left)
        except TimeoutError:
            return
        if await _relay(stream, envelope, event) in FINAL_STATUSES:
            return


async def _first_status(jobs: Jobs, live: LiveJobs, job_id: str) -> dict[str, Any] | None:
    """Where a stream starts. A finished job's live status is final; an unfinished one may
    be behind (the live queue can lose events), and the stream would then wait for an end
    already past: provenance says where the job is."""
    seen = live.status(job_id)
    if seen is not None and seen["status"] in FINAL_STATUSES:
        return seen
    return await jobs.status(job_id)


async def _current(
    jobs: Jobs, live: LiveJobs, current: dict[str, Any], wanted: str
) -> dict[str, Any]:
    """The job's status once it shows what an event says happened: from the events this
    replica saw live when it saw the job start (the fold provenance makes of the same
    events), else from provenance."""
    job_id = current["id"]
    seen = live.status(job_id)
    if seen is not None and STATUS_RANK[seen["status"]] >= STATUS_RANK[wanted]:
        return seen
    return await _status_at_least(jobs, job_id, wanted, fallback=seen or current)


async def _recorded(jobs: Jobs, job: dict[str, Any], within: float) -> None:
    """Wait until provenance has recorded the job as far as `job` says (its documents
    then hold those steps), for up to `within` seconds."""
    deadline = time.monotonic() + within
    pause = 0.02
    while True:
        recorded = await jobs.recorded_status(job["id"])
        if recorded is not None and STATUS_RANK[recorded["status"]] >= STATUS_RANK[job["status"]]:
            return
        if time.monotonic() > deadline:
            log.info("progress_replay_not_recorded_yet", status=job["status"])
            return
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


async def _status_at_least(
    jobs: Jobs, job_id: str, wanted: str, *, fallback: dict[str, Any]
) -> dict[str, Any]:
    """The job's status once provenance has recorded what an event says happened (it
    records the same event concurrently), or whatever it shows after a while (`fallback`
    while it shows nothing yet: the intake is recorded concurrently too)."""
    deadline = time.monotonic() + STATUS_SETTLE_SECONDS
    pause = 0.05
    while True:
        job = await jobs.recorded_status(job_id) or fallback
        if STATUS_RANK[job["status"]] >= STATUS_RANK[wanted] or time.monotonic() > deadline:
            return job
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class _Stream:
    def __init__(
        self, response: web.StreamResponse, *, closed: Callable[[], bool] = lambda: False
    ) -> None:
        self._response = response
        self._sent = 0
        self.sent_ids: set[str] = set()
        """The event ids of the steps sent (each step is sent once)."""
        self.closed = closed
        """Whether the client has gone (the connection is closed or closing)."""
        self.last_write = time.monotonic()
        self.from_live = False
        """Whether every step came from this replica's live view: those before the stream
        opened (`_history`), and each since (no inbox overflow)."""
        self.sent_taken = False
        """Whether a reuse's taken computation was sent from its `image.reused`."""

    async def send(self, text: str) -> None:
        await self._response.write(text.encode())
        self.last_write = time.monotonic()

    async def step(self, shown: dict[str, Any]) -> None:
        self.sent_ids.add(shown["id"])
        await self.event("step", shown, event_id=shown["id"])

    async def relay(self, envelope: Envelope, event: Event) -> None:
        """Send an event's step (and a reuse's taken computation), unless sent already."""
        shown = [step(envelope, event)]
        if isinstance(event, ImageReused) and (taken := taken_step(envelope, event)):
            shown.append(taken)
            self.sent_taken = True
        for one in shown:
            if one["id"] not in self.sent_ids:
                await self.step(one)

    async def event(self, name: str, data: dict[str, Any], *, event_id: str | None = None) -> None:
        self._sent += 1
        lines = [f"event: {name}", f"id: {event_id or self._sent}"]
        lines += [f"data: {line}" for line in json.dumps(data).splitlines()]
        await self.send("\n".join(lines) + "\n\n")
