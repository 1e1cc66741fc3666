"""Fair dispatch across principals: one principal's backlog does not hold back another's job.

All uploads share one quorum work queue, which is FIFO: with plain prefetch = concurrency,
a principal that queued 60 slow jobs makes everyone's next job wait behind all 60. So the
runner takes up to `RUNNER_PREFETCH` deliveries off the queue at once (unacknowledged; the
broker stops sending at that many) into one FIFO buffer per principal (the job's owner,
`ImageUploaded.principal`), and its `RUNNER_CONCURRENCY` workers take the next job
round-robin across the principals with buffered work, least recently served first. A
principal with nothing running or buffered that submits a job is therefore next: its job
starts as soon as a worker is free, after the jobs already running, never after another's
whole backlog.

Why in the runner, not one queue per principal: queues per principal would need upload
to declare queues (or the broker's permissions to let it), runners to discover and
consume a changing set of queues, and clean-up of idle ones; the buffer needs none of
that, and with upload's per-principal cap on waiting jobs (`UPLOAD_MAX_QUEUED_PER_PRINCIPAL`)
below the prefetch, one principal at its cap cannot fill the buffer and hide another's job
in the queue behind its own. Round-robin by job, not weighted by cost: a slow job and a
fast one take one turn each; the per-job deadline (imageproc's PIPELINE_TIMEOUT_SECONDS)
bounds what one turn costs.

What keeps working:
- Ack after work: a buffered delivery is unacknowledged until its handler finished
  (`messaging.Delivery.handle`: retries, parking and idempotency as with `subscribe`).
- The broker's `consumer_timeout` (RabbitMQ's default: 30 min) closes a channel whose
  delivery stays unacknowledged longer, which would hand back the whole buffer and count a
  delivery against each message's delivery limit. A delivery held `RUNNER_MAX_HOLD_SECONDS`
  (default 15 min, leaving room for the attempt itself) is handed back unhandled to the
  tail of the queue instead (`Delivery.release`: a copy, then an ack; not counted as an
  attempt or a delivery) and comes back as a fresh delivery.
- Graceful shutdown: stop consuming, hand back every buffered delivery, let the running
  jobs finish (within the shutdown timeout).
- A reconnect: deliveries of the closed channel are stale (the broker sends them again on
  the new one) and are dropped from the buffer, never handled twice from here.
- Several runner replicas: each buffers its own share of the queue and is fair within it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, Protocol, TypeVar

import structlog
from prometheus_client import Gauge

from messaging.events import ImageUploaded

log = structlog.get_logger("imageproc_runner")

MAX_REMEMBERED = 10_000
"""Keys whose last service is remembered before the oldest are forgotten."""
K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

BUFFERED = Gauge(
    "imagemesh_runner_buffered_jobs",
    "Jobs taken off the work queue and waiting in this runner's per-principal buffers.",
)
BUFFERED_PRINCIPALS = Gauge(
    "imagemesh_runner_buffered_principals",
    "Principals with at least one job waiting in this runner's buffers.",
)


class Held(Protocol):
    """What the dispatcher uses of a held `messaging.Delivery` of `image.uploaded` (a
    test may hold anything else that has it)."""

    @property
    def event(self) -> ImageUploaded: ...

    @property
    def received(self) -> float: ...

    @property
    def stale(self) -> bool: ...

    async def handle(self) -> None: ...

    async def release(self, reason: str) -> None: ...


class RoundRobin(Generic[K, T]):
    """One FIFO per key; `take` serves the keys with items in turn, one item per turn,
    least recently served first.

    A key that gets an item after having none joins the rotation ahead of every key served
    since it was last served: a key never served (or not for long) is next, so another
    principal's job starts right after the jobs already running, however long someone
    else's backlog; a key that alternates with a busy one gets every other turn, no more.
    Pure logic: no I/O, no clock (turns are counted, not timed)."""

    def __init__(self) -> None:
        self._queues: dict[K, deque[T]] = {}
        self._turns: deque[K] = deque()
        """The keys with items, least recently served first."""
        self._served: dict[K, int] = {}
        """When (in takes) each key was last served; forgotten once older than every key
        in the rotation, where it would rank first anyway."""
        self._takes = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def keys(self) -> int:
        """How many keys have items."""
        return len(self._queues)

    def put(self, key: K, item: T) -> None:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            self._join(key)
        queue.append(item)
        self._size += 1

    def _join(self, key: K) -> None:
        served = self._served.get(key, -1)
        # Behind the keys served before it (and the new ones that came first), ahead of
        # the keys served since: the rotation stays ordered by last service.
        place = len(self._turns)
        for index, other in enumerate(self._turns):
            if self._served.get(other, -1) > served:
                place = index
                break
        self._turns.insert(place, key)

    def take(self) -> T | None:
        """The next item of the key whose turn it is; None when empty."""
        if not self._turns:
            return None
        key = self._turns.popleft()
        queue = self._queues[key]
        item = queue.popleft()
        self._size -= 1
        self._takes += 1
        self._served[key] = self._takes
        if queue:
            self._turns.append(key)
        else:
            del self._queues[key]
            self._forget()
        return item

    def _forget(self) -> None:
        if len(self._served) <= MAX_REMEMBERED:
            return
        oldest = min((self._served.get(key, -1) for key in self._turns), default=self._takes)
        for key, served in list(self._served.items()):
            if served < oldest and key not in self._queues:
                del self._served[key]

    def remove_if(self, condition: Callable[[T], bool]) -> list[T]:
        """Take out every item for which `condition` holds (in each key's order); the
        keys keep their places in the rotation."""
        removed: list[T] = []
        for key in list(self._turns):
            kept: deque[T] = deque()
            for item in self._queues[key]:
                (removed if condition(item) else kept).append(item)
            if kept:
                self._queues[key] = kept
            else:
                del self._queues[key]
                self._turns.remove(key)
        self._size -= len(removed)
        return removed

    def drain(self) -> list[T]:
        """Take out everything (in rotation order)."""
        return self.remove_if(lambda _item: True)

    def __iter__(self) -> Iterator[T]:
        for key in self._turns:
            yield from self._queues[key]


class FairDispatcher:
    """Runs buffered deliveries of `image.uploaded`, `concurrency` at once, round-robin by
    principal. `put` is the subscription's `dispatch`; `stop` hands back what is left."""

    def __init__(
        self,
        *,
        concurrency: int,
        max_hold: float,
        sweep_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._concurrency = concurrency
        self._max_hold = max_hold
        self._sweep_interval = sweep_interval or min(30.0, max_hold / 4)
        self._clock = clock
        self._buffer: RoundRobin[str, Held] = RoundRobin()
        self._running: set[asyncio.Task[None]] = set()
        self._releasing: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def running(self) -> int:
        return len(self._running)

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever())

    def put(self, delivery: Held) -> None:
        """A delivery arrived: buffer it under its principal and start what may start."""
        if self._stopping:  # arrived while the consumer was being cancelled
            self._release_soon(delivery, "shutdown")
            return
        self._buffer.put(delivery.event.principal, delivery)
        self._pump()

    def _pump(self) -> None:
        while not self._stopping and len(self._running) < self._concurrency:
            delivery = self._buffer.take()
            if delivery is None:
                break
            if delivery.stale:
                log.info("stale_delivery_dropped", job_id=delivery.event.job_id)
                continue
            task = asyncio.create_task(self._handle(delivery))
            self._running.add(task)
            task.add_done_callback(self._finished)
        self._observe()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._pump()

    async def _handle(self, delivery: Held) -> None:
        try:
            await delivery.handle()
        except Exception:  # handle() settles every outcome; this is a bug, not a job's
            log.exception("dispatch_failed", job_id=delivery.event.job_id)

    def _observe(self) -> None:
        BUFFERED.set(len(self._buffer))
        BUFFERED_PRINCIPALS.set(self._buffer.keys)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            await self.sweep()

    async def sweep(self) -> None:
        """Hand back deliveries held for `max_hold` seconds; drop stale ones."""
        now = self._clock()
        removed = self._buffer.remove_if(lambda d: d.stale or now - d.received >= self._max_hold)
        self._observe()
        for delivery in removed:
            if delivery.stale:
                log.info("stale_delivery_dropped", job_id=delivery.event.job_id)
            else:
                await self._release(delivery, "held_too_long")

    def _release_soon(self, delivery: Held, reason: str) -> None:
        task = asyncio.create_task(self._release(delivery, reason))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release(self, delivery: Held, reason: str) -> None:
        with structlog.contextvars.bound_contextvars(job_id=delivery.event.job_id):
            try:
                await delivery.release(reason)
            except Exception:  # the broker redelivers it once the channel closes
                log.exception("release_failed", reason=reason)

    async def stop(self, timeout: float) -> None:
        """After the consumer was cancelled: hand back every buffered delivery, then wait
        (at most `timeout` seconds) for the running jobs."""
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        left = self._buffer.drain()
        self._observe()
        if left:
            log.info("handing_back_buffered", jobs=len(left))
        for delivery in left:
            if not delivery.stale:
                await self._release(delivery, "shutdown")
        if self._releasing:
            await asyncio.wait(self._releasing, timeout=timeout)
        if self._running:
            _, pending = await asyncio.wait(self._running, timeout=timeout)
            if pending:
                log.warning("dispatch_drain_timeout", running=len(pending))
