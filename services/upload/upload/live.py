"""Live job progress: the mesh's events, as they pass, to whoever follows a job.

Each upload replica watches every event on a queue of its own (`Broker.watch`), so a
client may follow a job from any replica, whichever one accepted it. A follower gets the
events of its job in an inbox; a follower that falls behind loses the oldest ones and is
told so (`Inbox.overflowed`): it reads the job's state again.

The replica also keeps the status events of the most recent jobs it saw from their start
(`LiveJobs.status`): folded as provenance folds them (`messaging.jobs.fold_status`), they
give a job's status the moment its event passes, without waiting for provenance to
record it and answer a query. A job seen only from its middle has no live status. The
live queue may lose events (a reconnection, an overflow), so a live status that is not
final may be behind: callers trust a final one, one at least as far as the event they
just saw, or one whose last event passed moments ago (`status(fresh=...)`), and ask
provenance otherwise.

A finished job's events are kept `FINISHED_LINGER` seconds after its final one (a client
following it reads its final status then), not until 4096 newer jobs push them out: a
job's records are a few KB (each event carries the input and the pipeline), and a
replica that kept the last 4096 finished jobs grew by ~30 MB over its first 4096 jobs,
which a 20-minute soak saw as a slope. Provenance answers for them afterwards.

A job seen from its start also keeps every event of it that passed (`history`, up to
`HISTORY_PER_JOB`), so that a progress stream opened on this replica sends the steps that
came before it without asking provenance: each such question cost provenancedb and the
CouchDB-compatible server ~50 ms of CPU per followed job, and a stream of a job just
accepted waited for provenance's group commit (~100 ms) before its first step.

The replica that accepts a job remembers its intake at once (`remember`), before the
202, so the job's own replica never has to ask provenance about a job it just queued
(provenance records the intake from the broker, concurrently).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from messaging import Envelope
from messaging.events import Event, ImageUploaded, UploadReceived
from messaging.jobs import (
    EVENT_STATUS,
    FINAL_STATUSES,
    MARK_EVENTS,
    STATUS_EVENTS,
    annotate,
    fold_status,
    record,
)

INBOX_SIZE = 256
RECENT_JOBS = 4096
"""Jobs whose status events a replica keeps (a few KB each), finished or not."""
MARKED_JOBS = 4096
"""Jobs whose marks (retried, erased: `messaging.jobs.MARK_EVENTS`) a replica keeps."""
HISTORY_PER_JOB = 64
"""Events of one job a replica keeps for progress streams (a job has 4 to a dozen); past
that its streams read the steps from provenance."""
INTAKES_WAITING = 1024
"""`upload.received` events kept until their job's `image.uploaded` follows."""
MARKS_PER_JOB = 16
"""Marks kept per job: a job retried over and over keeps its first ones (provenance has
them all)."""
FINISHED_LINGER = 60.0
"""Seconds a finished job's events are kept after its final one."""


@dataclass(eq=False)
class Inbox:
    queue: asyncio.Queue[tuple[Envelope, Event]] = field(
        default_factory=lambda: asyncio.Queue(INBOX_SIZE)
    )
    overflowed: bool = False

    def put(self, envelope: Envelope, event: Event) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.overflowed = True
        self.queue.put_nowait((envelope, event))


@dataclass(eq=False)
class _Seen:
    """A job's status events seen live, by type and id (a redelivery is one record), when
    the last one passed, its owner, and whether it still waits (queued, not started)."""

    owner: str
    input_sha256: str = ""
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: dict[str, tuple[Envelope, Event]] = field(default_factory=dict)
    """Every event of the job seen live, by event id, in the order they passed."""
    history_whole: bool = True
    """False once `HISTORY_PER_JOB` was passed: the history is then not all there is."""
    last: float = 0.0
    waiting: bool = True
    finished: bool = False


class LiveJobs:
    """Routes each passing event to the inboxes following its job."""

    def __init__(
        self,
        recent_jobs: int = RECENT_JOBS,
        clock: Callable[[], float] = time.monotonic,
        *,
        linger: float = FINISHED_LINGER,
    ) -> None:
        self._followers: dict[str, set[Inbox]] = defaultdict(set)
        self._recent: OrderedDict[str, _Seen] = OrderedDict()
        self._recent_jobs = recent_jobs
        self._clock = clock
        self._linger = linger
        self._finished: deque[tuple[float, str]] = deque()
        """(when to forget, job id) of the finished jobs, oldest first."""
        self._arrivals: dict[str, asyncio.Event] = {}
        self._waiting: Counter[str] = Counter()
        self._marks: OrderedDict[str, dict[str, dict[str, Any]]] = OrderedDict()
        """Each job's marks seen live, by type and id, most recently marked last."""
        self._intakes: OrderedDict[str, tuple[Envelope, Event]] = OrderedDict()
        """`upload.received` of jobs whose `image.uploaded` has not passed yet."""

    def on_event(self, envelope: Envelope, event: Event) -> None:
        if envelope.type in STATUS_EVENTS:
            self.remember(envelope, event)
        else:
            if envelope.type in MARK_EVENTS:
                self.mark(envelope, event)
            self.note(envelope, event)
        for inbox in self._followers.get(event.job_id, ()):
            inbox.put(envelope, event)

    def remember(self, envelope: Envelope, event: Event) -> None:
        """Keep a status event of a job seen from its start (its `image.uploaded`)."""
        seen = self._recent.get(event.job_id)
        if seen is None:
            if not isinstance(event, ImageUploaded):
                return  # seen from its middle: its status could miss what came before
            seen = self._recent[event.job_id] = _Seen(
                owner=event.principal, input_sha256=event.input.sha256
            )
            self._waiting[seen.owner] += 1
            while len(self._recent) > self._recent_jobs:
                self._forget(self._recent.popitem(last=False)[1])
            arrival = self._arrivals.pop(event.job_id, None)
            if arrival is not None:
                arrival.set()
            intake = self._intakes.pop(event.job_id, None)
            if intake is not None:
                _keep(seen, *intake)
        seen.records[f"{envelope.type} {envelope.id}"] = record(envelope, event)
        _keep(seen, envelope, event)
        seen.last = self._clock()
        if seen.waiting and envelope.type != ImageUploaded.type:
            self._forget(seen)  # started, or ended: no longer waiting
        if not seen.finished and EVENT_STATUS[envelope.type] in FINAL_STATUSES:
            seen.finished = True
            self._finished.append((seen.last + self._linger, event.job_id))
        self._expire(seen.last)

    def note(self, envelope: Envelope, event: Event) -> None:
        """Keep an event that does not change a job's status in its history (a job seen
        from its start), or, for an `upload.received`, until its job's start passes."""
        seen = self._recent.get(event.job_id)
        if seen is not None:
            _keep(seen, envelope, event)
        elif isinstance(event, UploadReceived):
            self._intakes[event.job_id] = (envelope, event)
            while len(self._intakes) > INTAKES_WAITING:
                self._intakes.popitem(last=False)

    def history(self, job_id: str) -> list[tuple[Envelope, Event]] | None:
        """Every event of the job as it passed, if this replica saw it from its start and
        kept them all; else None (its steps are provenance's to say)."""
        seen = self._recent.get(job_id)
        if seen is None or not seen.history_whole:
            return None
        return list(seen.history.values())

    def mark(self, envelope: Envelope, event: Event) -> None:
        """Keep a mark of a job (retried, erased), whether or not this replica saw the job
        from its start: a finished job's status comes from provenance, which may record
        the mark after a client already reads the job again (`annotated`)."""
        marks = self._marks.get(event.job_id)
        if marks is None:
            marks = self._marks[event.job_id] = {}
            while len(self._marks) > MARKED_JOBS:
                self._marks.popitem(last=False)
        else:
            self._marks.move_to_end(event.job_id)
        if len(marks) < MARKS_PER_JOB:
            marks[f"{envelope.type} {envelope.id}"] = record(envelope, event)

    def annotated(self, job: dict[str, Any]) -> dict[str, Any]:
        """`job` (a status from here or from provenance) with the marks seen live."""
        marks = self._marks.get(job["id"])
        return job if not marks else annotate(job, list(marks.values()))

    def _expire(self, now: float) -> None:
        """Forget the finished jobs whose linger is over."""
        while self._finished and self._finished[0][0] <= now:
            _, job_id = self._finished.popleft()
            seen = self._recent.pop(job_id, None)
            if seen is not None:
                self._forget(seen)

    def _forget(self, seen: _Seen) -> None:
        if seen.waiting:
            seen.waiting = False
            self._waiting[seen.owner] -= 1
            if self._waiting[seen.owner] <= 0:
                del self._waiting[seen.owner]

    def waiting(self, owner: str) -> int:
        """How many of `owner`'s jobs wait to start, of those seen from their start (every
        replica sees every job's events: the count covers all replicas' jobs, except jobs
        queued before this replica started, or past the RECENT_JOBS it remembers)."""
        return self._waiting.get(owner, 0)

    def status(self, job_id: str, *, fresh: float | None = None) -> dict[str, Any] | None:
        """The job's status from the events seen live, if this replica saw it from its
        start; else None (ask provenance). With `fresh`, an unfinished status only if its
        last event passed at most `fresh` seconds ago: a lost event cannot keep it behind
        for longer than that."""
        seen = self._recent.get(job_id)
        if seen is None:
            return None
        job = fold_status(job_id, list(seen.records.values()))
        if job is not None:
            job = self.annotated(job)
        if job is None or fresh is None or job["status"] in FINAL_STATUSES:
            return job
        return job if self._clock() - seen.last <= fresh else None

    def taking(self, sha256: str, owner: str | None) -> list[str]:
        """The jobs seen from their start whose input is the image `sha256`, of `owner`
        (None: anyone's), oldest first: an image's lineage before provenance records it."""
        return [
            job_id
            for job_id, seen in self._recent.items()
            if seen.input_sha256 == sha256 and owner in (None, seen.owner)
        ]

    def starting_with(self, prefix: str, owner: str | None) -> list[str]:
        """The jobs seen live whose id starts with `prefix`, of `owner` (None: anyone's),
        newest first: a short id resolves before provenance has indexed the job."""
        return [
            job_id
            for job_id, seen in reversed(self._recent.items())
            if job_id.startswith(prefix) and owner in (None, seen.owner)
        ]

    async def wait_seen(self, job_id: str, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the job's start to pass; whether it did."""
        if job_id in self._recent:
            return True
        arrival = self._arrivals.setdefault(job_id, asyncio.Event())
        try:
            async with asyncio.timeout(timeout):
                await arrival.wait()
        except TimeoutError:
            return job_id in self._recent
        finally:
            if not arrival.is_set() and self._arrivals.get(job_id) is arrival:
                del self._arrivals[job_id]
        return True

    @contextmanager
    def follow(self, job_id: str) -> Iterator[Inbox]:
        inbox = Inbox()
        self._followers[job_id].add(inbox)
        try:
            yield inbox
        finally:
            followers = self._followers[job_id]
            followers.discard(inbox)
            if not followers:
                del self._followers[job_id]

    @property
    def remembered(self) -> int:
        """How many jobs' status events this replica keeps."""
        return len(self._recent)

    @property
    def following(self) -> int:
        """How many jobs someone follows right now."""
        return len(self._followers)


def _keep(seen: _Seen, envelope: Envelope, event: Event) -> None:
    if envelope.id in seen.history:
        return
    if len(seen.history) >= HISTORY_PER_JOB:
        seen.history_whole = False
        return
    seen.history[envelope.id] = (envelope, event)
