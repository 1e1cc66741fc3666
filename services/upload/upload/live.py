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
final may be behind: callers trust a final one, or one at least as far as the event
they just saw, and ask provenance otherwise.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from messaging import Envelope
from messaging.events import Event, ImageUploaded
from messaging.jobs import STATUS_EVENTS, fold_status, record

INBOX_SIZE = 256
RECENT_JOBS = 4096
"""Jobs whose status events a replica keeps (a few KB each)."""


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


class LiveJobs:
    """Routes each passing event to the inboxes following its job."""

    def __init__(self, recent_jobs: int = RECENT_JOBS) -> None:
        self._followers: dict[str, set[Inbox]] = defaultdict(set)
        self._recent: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._recent_jobs = recent_jobs

    def on_event(self, envelope: Envelope, event: Event) -> None:
        if envelope.type in STATUS_EVENTS:
            self._remember(envelope, event)
        for inbox in self._followers.get(event.job_id, ()):
            inbox.put(envelope, event)

    def _remember(self, envelope: Envelope, event: Event) -> None:
        records = self._recent.get(event.job_id)
        if records is None:
            if envelope.type != ImageUploaded.type:
                return  # seen from its middle: its status could miss what came before
            records = self._recent[event.job_id] = []
            while len(self._recent) > self._recent_jobs:
                self._recent.popitem(last=False)
        records.append(record(envelope, event))

    def status(self, job_id: str) -> dict[str, Any] | None:
        """The job's status from the events seen live, if this replica saw it from its
        start; else None (ask provenance)."""
        records = self._recent.get(job_id)
        return None if records is None else fold_status(job_id, records)

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
    def following(self) -> int:
        """How many jobs someone follows right now."""
        return len(self._followers)
