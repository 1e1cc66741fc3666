"""The jobs their owners asked to cancel, as this runner replica heard them.

Every replica follows `job.cancel-requested` on a live queue of its own
(`topology.CANCEL_REQUESTS`): a cancelled job may wait in the shared work queue for any
replica, or run on any of them. The runner looks here before it starts a job and after
imageproc answered (`Runner`): a cancelled job stores no output and ends `cancelled`.

Bounded: the most recent `MAX_REMEMBERED` requests are kept (a job waits in the queue
far less long than it takes that many cancellations to pass). A replica that was down
when a request passed never hears of it: the job then runs to its end, and its status
says what happened (the API answered 202: a request, not a promise).
"""

from __future__ import annotations

from collections import OrderedDict

import structlog

from messaging import Envelope
from messaging.events import CancelRequested, Event

log = structlog.get_logger("imageproc_runner")
MAX_REMEMBERED = 10_000
"""Cancellation requests kept (a job id and a principal each: ~1 MB at most)."""


class Cancellations:
    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self._asked: OrderedDict[str, str] = OrderedDict()
        self._limit = limit

    def on_event(self, envelope: Envelope, event: Event) -> None:
        """A watcher (`Broker.watch`): remember who asked to cancel which job."""
        if isinstance(event, CancelRequested):
            self.add(event.job_id, event.principal)

    def add(self, job_id: str, principal: str) -> None:
        self._asked[job_id] = principal
        self._asked.move_to_end(job_id)
        while len(self._asked) > self._limit:
            self._asked.popitem(last=False)
        log.info("cancel_requested", job_id=job_id, principal=principal)

    def asked_by(self, job_id: str) -> str | None:
        """Who asked to cancel the job, or None when nobody did (as far as this knows)."""
        return self._asked.get(job_id)
