"""The worker process's side of the pool (see ``workers``): receive a job, run the pure
pipeline, send the answer back, until told to stop or the parent goes away.

Wire format on the worker's duplex pipe: once started, the worker says
``("hello", engine)`` (``_version.engine_version``: the service process, which never loads
libvips, learns from it what it computes with). Then per job: the parent sends a small
pickled ``Job`` and then the input bytes with ``send_bytes`` (raw, never pickled); the
worker answers a pickled ``("ok", PipelineResult without its bytes, (size, thumbnail size))``
followed by the output's ``size`` bytes and the thumbnail's (raw, unframed), or
``("error", code, message)``. ``None`` instead of a job asks the worker to exit.

A job may ask for its output's history thumbnail (``Job.thumbnail``, the operations of
``messaging.thumbnails.THUMBNAIL_PIPELINE``): made here from the encoded output, in the
same process and exchange, instead of a second request with the output's bytes through
the broker and back. Best effort and within the job's deadline: a thumbnail that fails,
or would not fit in the time left, is left out; the job's own answer never changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import time
from dataclasses import replace
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from typing import Any

import pyvips

from pipeline import harden_vips

from ._jobs import Job, Setup
from ._procmem import private_resident
from ._version import engine_version
from .operations import ProcessingError, run_pipeline

_PR_SET_PDEATHSIG = 1
ENGINE = engine_version()
"""Read once, where this module is imported: in the forkserver, so workers share it."""
_M_MMAP_THRESHOLD = -3


IDLE_SECONDS = 0.2
"""A worker whose next job has not come this long after its last one is idle: only then
does it trim its heap (``_Heap``), so that back-to-back jobs never pay for it."""
THUMBNAIL_MIN_SECONDS = 1.0
"""Time the deadline must still leave for a thumbnail to be tried (it takes milliseconds;
the parent kills the worker at the deadline, which must never fail the job for it)."""
THUMBNAIL_MAX_INPUT_BYTES = 32 * 1024 * 1024
"""Outputs larger than this get no thumbnail: a history placeholder costs less."""
THUMBNAIL_MAX_BYTES = 16 * 1024
"""A thumbnail larger than this (a 96 px WebP is a few KB) is left out."""


def serve(conn: Connection, setup: Setup) -> None:
    """The worker's main loop (the process target)."""
    _prepare(setup)
    heap = _Heap()
    conn.send(("hello", ENGINE))  # started: and what it computes with
    while True:
        try:
            if not conn.poll(IDLE_SECONDS):
                heap.tidy()  # no job waiting: give back what the last ones left
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if job is None:
            return
        _answer(conn, job, conn.recv_bytes())
        heap.used()


def _answer(conn: Connection, job: Job, data: bytes) -> None:
    started = time.monotonic()
    try:
        result = run_pipeline(data, job.ops, limits=job.limits, timeout=job.timeout)
    except ProcessingError as exc:
        conn.send(("error", exc.code, exc.message))
        return
    except Exception as exc:  # an engine bug: say so, keep serving
        conn.send(("error", "internal", f"{type(exc).__name__}: {exc}"))
        return
    del data
    left = job.timeout - (time.monotonic() - started)
    thumbnail = _thumbnail(result.data, job, left) if job.thumbnail else b""
    conn.send(("ok", replace(result, data=b""), (len(result.data), len(thumbnail))))
    _send_raw(conn, result.data)
    _send_raw(conn, thumbnail)


def _thumbnail(output: bytes, job: Job, left: float) -> bytes:
    """The output's thumbnail, or nothing when it cannot be had in the time `left`."""
    if left < THUMBNAIL_MIN_SECONDS or len(output) > THUMBNAIL_MAX_INPUT_BYTES:
        return b""
    try:
        made = run_pipeline(
            output, job.thumbnail, limits=job.limits, timeout=left - THUMBNAIL_MIN_SECONDS / 2
        )
    except Exception:  # any failure: the job goes on without a thumbnail
        return b""
    return made.data if len(made.data) <= THUMBNAIL_MAX_BYTES else b""


def _send_raw(conn: Connection, data: bytes) -> None:
    """The bytes themselves, unframed: the parent reads exactly the size it was sent
    (``_pipe._recv_exactly``), into one buffer."""
    view, fd = memoryview(data), conn.fileno()
    while view:
        view = view[os.write(fd, view) :]


class _Heap:
    """Keeps an idle worker near its baseline, since its memory counts in the service's
    while the other workers run (``benchmarks/results/pool-memory.md``).

    glibc's default raises its mmap threshold to the size of each large block freed (up
    to 32 MiB) and its trim threshold to twice that: a job's image buffers then come from
    the heap and stay there after it (an idle worker at ~45-60 MB PSS after a few photos
    instead of ~20). A fixed threshold gives blocks of 4 MiB and more back on free and
    keeps the trim threshold at 128 KiB; what smaller blocks leave inside the heap is
    trimmed (``malloc_trim``) once the worker goes idle (``IDLE_SECONDS``), if its jobs grew
    it by ``TRIM_SLACK``. Not after every job, as the trimmed pages fault in again on the
    next one: that cost a fit-in-512 job ~6 ms of system CPU (9 100 page faults instead
    of 5 500), and the pool did 15.7 mixed jobs/s instead of 17.4.
    The price: 26 MB more at the pool's peak (292 MB PSS instead of 266,
    ``benchmarks.pool_memory``, admission 128 MB), as busy workers keep their heaps
    between back-to-back jobs. Trimming only past 48 MB of growth changed neither."""

    MMAP_THRESHOLD = 4 * 2**20
    TRIM_SLACK = 8 * 2**20

    def __init__(self) -> None:
        try:
            self._libc: Any = ctypes.CDLL(None)
            self._libc.mallopt(_M_MMAP_THRESHOLD, self.MMAP_THRESHOLD)
        except (OSError, AttributeError):  # not glibc
            self._libc = None
        self._baseline = private_resident()
        self._untidy = False

    def used(self) -> None:
        """A job ran: the heap may have grown."""
        self._untidy = True

    def tidy(self) -> None:
        if not self._untidy:
            return  # nothing ran since the last look: an idle worker waits without waking
        self._untidy = False
        if self._libc is None or private_resident() <= self._baseline + self.TRIM_SLACK:
            return
        self._libc.malloc_trim(0)
        # What the trim could not return is in use (modules loaded by the first jobs,
        # libvips' per-thread state): count it in, not to trim in vain after every job.
        self._baseline = max(self._baseline, private_resident())


def _prepare(setup: Setup) -> None:
    # Ctrl-C reaches the whole process group: the parent drains, its workers finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    harden_vips()
    if "VIPS_CONCURRENCY" not in os.environ:
        pyvips.concurrency_set(setup.vips_threads)
    if setup.address_space_bytes:
        limit = setup.address_space_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _die_with_parent() -> None:
    """A worker stuck in a decoder does not read its pipe: if the service is killed
    outright, the kernel kills the worker too (Linux; elsewhere the EOF on the pipe does
    it once the job ends). The worker's parent is the forkserver, which exits once no
    process holds its "alive" descriptor: every worker inherits one, and closes it here so
    that only the service's own copy keeps the forkserver (and so the workers) alive."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    server: Any = forkserver._forkserver  # CPython's private singleton (3.11-3.13)
    alive = getattr(server, "_forkserver_alive_fd", None)
    if alive is not None:
        with contextlib.suppress(OSError):
            os.close(alive)
        server._forkserver_alive_fd = None
    if os.getppid() == 1:  # the forkserver was already gone
        os._exit(1)
