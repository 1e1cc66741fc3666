"""Live job progress: the mesh's events, as they pass, to whoever follows a job.

Each upload replica watches every event on a queue of its own (`Broker.watch`), so a
client may follow a job from any replica, whichever one accepted it. A follower gets the
events of its job in an inbox; a follower that falls behind loses the oldest ones and is
told so (`Inbox.overflowed`): it reads the job's state again.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from messaging import Envelope
from messaging.events import Event

INBOX_SIZE = 256


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

    def __init__(self) -> None:
        self._followers: dict[str, set[Inbox]] = defaultdict(set)

    def on_event(self, envelope: Envelope, event: Event) -> None:
        for inbox in self._followers.get(event.job_id, ()):
            inbox.put(envelope, event)

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
