"""The jobs their owners asked to cancel, as one replica heard them.

Upload publishes `job.cancel-requested`; every replica of the runner and of imageproc
follows it on a live queue of its own (`topology.CANCEL_REQUESTS`): a cancelled job may
wait in the shared work queue for any runner, or run on any imageproc. The runner looks
before it starts a job and after imageproc answered (a cancelled job stores no output and
ends `cancelled`); imageproc stops the job's pipeline if it runs one, or refuses it when
it arrives (`stopped`), answering the RPC error `cancelled`.

Bounded: the most recent `MAX_REMEMBERED` requests are kept (a job waits in the queue
far less long than it takes that many cancellations to pass). A replica that was down
when a request passed never hears of it: the job then runs to its end, and its status
says what happened (the API answered 202: a request, not a promise).
"""

from __future__ import annotations

import re
from collections import OrderedDict

import structlog

from ._envelope import Envelope
from .events import PRINCIPAL_PATTERN, CancelRequested, Event
from .rpc import RpcError

log = structlog.get_logger("messaging.cancels")
MAX_REMEMBERED = 10_000
"""Cancellation requests kept (a job id and a principal each: ~1 MB at most)."""
STOPPED = "cancelled"
"""The RPC error code of work stopped because its job was cancelled."""
_STOPPED_BY = "cancelled by "


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


def stopped(principal: str) -> RpcError:
    """The error a server answers for work it stopped (or never started) because
    `principal` cancelled its job."""
    return RpcError(STOPPED, f"{_STOPPED_BY}{principal}")


def stopped_by(error: RpcError) -> str | None:
    """Who cancelled the job whose work a server stopped (`stopped`), or None for any other
    error: a caller that missed the request itself learns it from the answer."""
    if error.code != STOPPED or not error.message.startswith(_STOPPED_BY):
        return None
    principal = error.message.removeprefix(_STOPPED_BY)
    return principal if re.match(PRINCIPAL_PATTERN, principal) else None
