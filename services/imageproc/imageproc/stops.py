"""Stopping a cancelled job's pipeline.

Each imageproc replica follows `job.cancel-requested` (`messaging.cancels`). A pipeline
of a job its owner cancelled is stopped where it runs: the task running it is cancelled,
so the worker pool kills its worker process (`workers.WorkerPool`: a worker whose job was
abandoned is never reused) and a fresh one takes the slot; a pipeline that waits for a
slot or for memory stops waiting. A request for a job cancelled before it arrived is
refused at once. Either way the runner gets the RPC error `cancelled` naming who asked,
and records the job `cancelled` (its output never existed).

The runner, which drops the output of a job cancelled while imageproc worked, did that
before; this frees the slot and the CPU for the next job at once instead of after the
whole pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog

from messaging import Envelope
from messaging.cancels import Cancellations, stopped
from messaging.events import CancelRequested, Event

log = structlog.get_logger("imageproc")
T = TypeVar("T")


class Stops:
    """The pipelines running here by job, to stop those whose job is cancelled."""

    def __init__(self, cancellations: Cancellations | None = None) -> None:
        self.cancellations = cancellations or Cancellations()
        self._running: dict[str, set[asyncio.Future[Any]]] = {}

    def on_event(self, envelope: Envelope, event: Event) -> None:
        """A watcher (`Broker.watch`): remember the request; stop the job's pipelines."""
        if not isinstance(event, CancelRequested):
            return
        self.cancellations.add(event.job_id, event.principal)
        for task in self._running.get(event.job_id, ()):
            log.info("pipeline_stopping", job_id=event.job_id, principal=event.principal)
            task.cancel()

    @property
    def running(self) -> int:
        """How many jobs' pipelines run (or wait for a slot) here."""
        return len(self._running)

    async def run(self, job_id: str | None, work: Coroutine[Any, Any, T]) -> T:
        """`work`'s result, unless the job is cancelled before or while it runs: then
        RpcError `cancelled` (`messaging.cancels.stopped`). Without a job id (an
        operator's request), just `work`."""
        if job_id is None:
            return await work
        principal = self.cancellations.asked_by(job_id)
        if principal is not None:
            work.close()
            log.info("pipeline_refused_cancelled", principal=principal)
            raise stopped(principal)
        # Its own task: a cancellation stops the work, never this request's reply.
        task = asyncio.ensure_future(work)
        self._running.setdefault(job_id, set()).add(task)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            principal = self.cancellations.asked_by(job_id)
            if principal is None or not task.cancelled() or (current and current.cancelling()):
                raise  # not a cancelled job: this server is stopping
            log.info("pipeline_stopped", principal=principal)
            raise stopped(principal) from None
        finally:
            running = self._running[job_id]
            running.discard(task)
            if not running:
                del self._running[job_id]
