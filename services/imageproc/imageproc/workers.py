"""Pipelines in worker processes that are killed and replaced at the deadline or over
their memory ceiling, so that no decoder can hold a slot past either.

libvips' kill flag (``_deadline``) stops libvips mid-work, but not Pillow's JPEG decoder,
nor any C code added later; an allocation failure is not reliably survivable in every C
library either. A process can always be killed. Each slot of the pool is one worker
process (``_worker``), doing one pipeline at a time:

- the deadline: a job not answered within ``timeout`` + ``_GRACE`` seconds (the worker's
  own libvips deadline usually answers first) has its worker killed; the job fails with
  ``timeout``, and a replacement worker takes the slot at once;
- memory: the parent samples each busy worker's resident memory every
  ``_SAMPLE_SECONDS``; over ``memory_bytes`` the worker is killed and the job fails with
  ``memory_budget_exceeded``, so that a runaway job stops early. A sample can miss a
  short peak (a loaded machine), so after every job the parent also reads the worker's
  peak resident memory (``VmHWM``, kept by the kernel): past ``memory_bytes`` the job
  fails with the same code, its result discarded, and the worker is replaced (the peak
  is per process, so every worker's peak is that of its current job: any earlier one
  over the ceiling would have replaced it). An RLIMIT_AS a little above the ceiling
  bounds what a job can allocate meanwhile (the allocation fails inside the worker,
  with the same code);
- a worker that dies on its own mid-job (a crash in a decoder) fails its job with
  ``worker_crashed``, and is replaced;
- a worker is recycled between jobs after ``_MAX_TASKS`` jobs or once its idle resident
  memory passes half its ceiling (allocator fragmentation), so growth never fails a job.

Before a job takes a slot it is admitted against ``admission_bytes`` by what its header
says the decode will hold (``admission``): big jobs run one at a time, small ones beside
them. Between jobs each worker gives what a job freed back to the kernel
(``_worker._Heap``), since an idle worker's memory counts in the service's while the
others run.

Workers are forked from a forkserver that has already imported the engine (~10 ms per
replacement instead of ~0.7 s of imports), and hold no threads when forked.

Bytes cross the process boundary raw over each worker's pipe (``send_bytes``, never
pickled): one write and one read of the input and of the output per job; only the small
job description and result metadata are pickled. One job's exchange over a pipe is
``_pipe``'s; the memory readings (``/proc``) are ``_procmem``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing.context import ForkServerContext

import structlog

from pipeline import ImageLimits, Operation

from ._jobs import Job, Setup, serve
from ._pipe import STOP_SECONDS, Answer, Lost, Worker, exchange, lost
from ._procmem import peak_private_resident, private_resident
from .admission import Budget, estimate
from .results import PipelineResult, ProcessingError

log = structlog.get_logger("imageproc.workers")

_GRACE = 2.0
"""Seconds past the pipeline's deadline before its worker is killed: the worker's own
deadline answers first whenever the work is in libvips, with a cleaner message."""
_SAMPLE_SECONDS = 0.05
_MAX_TASKS = 500
_ADDRESS_SPACE_HEADROOM = 768 * 1024 * 1024
"""Address space a worker reserves beyond what it touches (thread stacks, malloc arenas,
shared libraries: ~300 MB measured), on top of the ceiling for its RLIMIT_AS backstop."""
_SPAWN_ATTEMPTS = 3
_HELLO_SECONDS = 30.0
"""How long a new worker may take to say it started (~0.1 s: its imports are preloaded)."""
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 4 * 2**20


@dataclass(frozen=True, slots=True)
class PoolConfig:
    workers: int
    """Slots: pipelines at once, one worker process each."""
    timeout: float
    """The pipeline deadline, in seconds."""
    memory_bytes: int
    """Resident-memory ceiling of each worker (0 = none)."""
    vips_threads: int = 1
    admission_bytes: int = 0
    """What the jobs running may hold together by their headers' estimate (``admission``;
    0 = no admission: every slot runs at once)."""


class WorkerPool:
    """A fixed number of slots, each a killable worker process. ``run`` is the only
    entry point; a job waits for a free slot (the RPC prefetch equals the slots, so in
    practice it never waits)."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self._context: ForkServerContext = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["imageproc._worker"])
        self._setup = Setup(
            vips_threads=config.vips_threads,
            address_space_bytes=(
                config.memory_bytes + _ADDRESS_SPACE_HEADROOM if config.memory_bytes else 0
            ),
        )
        self.budget = Budget(config.admission_bytes)
        self._idle: asyncio.Queue[Worker] = asyncio.Queue()
        self._busy: set[Worker] = set()
        self._workers: set[Worker] = set()
        # One thread per slot does the blocking pipe I/O, so the event loop never does.
        self._io = ThreadPoolExecutor(config.workers + 1, "pipeline-io")
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False
        self.engine = ""
        """What the workers compute with (`_version.engine_version`, as each says when it
        starts): the service process itself never loads libvips."""
        self.jobs_started = 0
        """Jobs given a slot so far (for tests and diagnostics)."""
        self.kills: Counter[str] = Counter()
        """Workers the parent killed or replaced mid-job, by reason ("timeout",
        "memory_budget_exceeded", "cancelled"), for tests and diagnostics."""

    async def start(self) -> None:
        for _ in range(self.config.workers):
            self._idle.put_nowait(await self._spawn())
        self._watchdog = asyncio.create_task(self._watch_memory())

    async def close(self) -> None:
        """Stop every worker (callers have drained the jobs first)."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        for worker in list(self._workers):
            await self._retire(worker)
        self._io.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        """The worker processes' ids (for tests and diagnostics)."""
        return sorted(worker.pid for worker in self._workers)

    def busy_pids(self) -> list[int]:
        """The ids of the workers running a pipeline now."""
        return sorted(worker.pid for worker in self._busy)

    async def run(
        self,
        data: bytes,
        ops: Sequence[Operation],
        *,
        limits: ImageLimits,
        thumbnail: Sequence[Operation] = (),
    ) -> PipelineResult:
        """The pipeline's result (with the output's thumbnail made by `thumbnail`'s
        operations, if given and it could be had: ``_worker``), or ProcessingError (the
        worker's codes, plus ``timeout``, ``memory_budget_exceeded`` and
        ``worker_crashed`` when the worker was lost)."""
        share = self.config.admission_bytes // self.config.workers
        amount = estimate(data, ops, unknown=share) if self.config.admission_bytes else 0
        await self.budget.acquire(amount)
        job = Job(ops=tuple(ops), limits=limits, timeout=self.config.timeout, thumbnail=thumbnail)
        try:
            return await self._run(data, job)
        finally:
            self.budget.release(amount)

    async def _run(self, data: bytes, job: Job) -> PipelineResult:
        worker = await self._idle.get()
        self._busy.add(worker)
        self.jobs_started += 1
        loop = asyncio.get_running_loop()
        pending = loop.run_in_executor(self._io, exchange, worker, job, data)
        try:
            try:
                answer = await asyncio.wait_for(
                    asyncio.shield(pending), self.config.timeout + _GRACE
                )
            except TimeoutError:
                worker.kill("timeout")
                answer = await lost(pending)
            except asyncio.CancelledError:
                # The caller gave up (shutdown): the worker's state is unknown, replace it.
                worker.kill("cancelled")
                await lost(pending)
                raise
            if self._over_memory(worker, answer):
                # Its peak passed the share between two samples: the job fails all the
                # same, and the worker (its peak counter included) is replaced.
                worker.kill("memory_budget_exceeded")
        finally:
            self._busy.discard(worker)
            if worker.killed_for is not None:
                self.kills[worker.killed_for] += 1
            await self._release(worker)
        return self._result(worker, answer)

    def _over_memory(self, worker: Worker, answer: Answer) -> bool:
        """Whether the job passed the worker's share at any moment: sampled, or at its
        peak (read once the worker answered, while it waits for the next job)."""
        if worker.killed_for is not None:
            return worker.killed_for == "memory_budget_exceeded"
        memory = self.config.memory_bytes
        if not memory or isinstance(answer, Lost):
            return False
        peak = peak_private_resident(worker.pid)
        if peak <= memory:
            return False
        log.warning("worker_peak_over_memory", pid=worker.pid, peak=peak, limit=memory)
        return True

    def _result(self, worker: Worker, answer: Answer) -> PipelineResult:
        if worker.killed_for == "memory_budget_exceeded":
            # Over the share at some moment, whatever it answered: never a result.
            raise ProcessingError(
                "memory_budget_exceeded",
                f"the worker used more than {self.config.memory_bytes // 2**20} MiB",
            )
        # A whole answer counts even if the worker was killed just after sending it.
        if isinstance(answer, Lost):
            if worker.killed_for == "timeout":
                raise ProcessingError(
                    "timeout", f"stopped after the {self.config.timeout:g} s time limit"
                )
            raise ProcessingError("worker_crashed", f"the worker process died ({answer.how})")
        if answer[0] == "error":
            raise ProcessingError(answer[1], answer[2])
        result: PipelineResult = answer[1]
        output, thumbnail = answer[2]
        return replace(result, data=output, thumbnail=thumbnail)

    async def _release(self, worker: Worker) -> None:
        """Give the slot back: the same worker, or a fresh one in its place."""
        worker.tasks += 1
        if worker.killed_for is None and worker.process.is_alive() and not self._worn(worker):
            self._idle.put_nowait(worker)
            return
        await self._retire(worker)
        for attempt in range(1, _SPAWN_ATTEMPTS + 1):
            if self._closed:
                return
            try:
                self._idle.put_nowait(await self._spawn())
                return
            except OSError as exc:  # fork refused (memory, process limit): try again
                log.error("worker_not_started", attempt=attempt, error=repr(exc))
                await asyncio.sleep(attempt)

    def _worn(self, worker: Worker) -> bool:
        if worker.tasks >= _MAX_TASKS:
            return True
        memory = self.config.memory_bytes
        return bool(memory) and private_resident(worker.pid) > memory // 2

    async def _spawn(self) -> Worker:
        def start() -> Worker:
            parent, child = self._context.Pipe(duplex=True)
            process = self._context.Process(
                target=serve, args=(child, self._setup), name="imageproc-worker", daemon=True
            )
            process.start()
            child.close()
            worker = Worker(process, parent)
            try:
                # Its first word: started (libvips loaded, limits set), and its engine.
                if not parent.poll(_HELLO_SECONDS):
                    raise OSError(f"no word from the new worker in {_HELLO_SECONDS:.0f} s")
                _, self.engine = parent.recv()
            except (OSError, EOFError) as exc:
                worker.kill("not_started")
                process.join(STOP_SECONDS)
                parent.close()
                raise OSError(f"the worker did not start: {exc!r}") from exc
            return worker

        worker = await asyncio.get_running_loop().run_in_executor(self._io, start)
        self._workers.add(worker)
        log.debug("worker_started", pid=worker.pid)
        return worker

    async def _retire(self, worker: Worker) -> None:
        """Ask an idle worker to exit (kill a lost one), and reap it."""

        def stop() -> None:
            if worker.killed_for is None and worker.process.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    worker.conn.send(None)
                worker.process.join(STOP_SECONDS)
            if worker.process.is_alive():
                worker.kill("stopped")
            worker.process.join(STOP_SECONDS)
            worker.conn.close()
            with contextlib.suppress(ValueError):  # not reaped yet: left to the OS
                worker.process.close()

        pid = worker.pid
        self._workers.discard(worker)
        await asyncio.get_running_loop().run_in_executor(self._io, stop)
        log.debug("worker_stopped", pid=pid, reason=worker.killed_for or "recycled")

    async def _watch_memory(self) -> None:
        memory = self.config.memory_bytes
        if not memory:
            return
        while not self._closed:
            for worker in list(self._busy):
                if worker.killed_for is None and private_resident(worker.pid) > memory:
                    log.warning("worker_over_memory", pid=worker.pid, limit=memory)
                    worker.kill("memory_budget_exceeded")
            await asyncio.sleep(_SAMPLE_SECONDS)


def return_large_blocks() -> None:
    """Make this process (the service's parent) give freed memory back to the kernel.

    Every input and output passes through it whole (the message, the pipe). glibc's
    default raises its mmap threshold to the size of each large block freed (up to
    32 MiB) and its trim threshold to twice that, so the heap keeps up to 64 MiB free:
    the parent grew from ~46 to ~75 MB PSS over 500 mixed jobs. A fixed 4 MiB threshold
    keeps large blocks out of the heap and the trim threshold at 128 KiB: ~48 MB after
    the same jobs, for ~0.9 ms more of the parent's CPU per job (the pages of each large
    block fault in afresh; 8 MiB for both thresholds: ~60 MB, ~0.4 ms;
    ``benchmarks/results/pool-memory.md``). The workers tune their own heaps
    (``_worker._Heap``)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
