"""A worker process as the pool holds it, and the parent's side of one job over its pipe
(the wire format is in ``_worker``): the answer, or how the exchange was lost."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from ._jobs import Job

STOP_SECONDS = 5.0
"""How long a stopped or killed worker has to end (and an exchange with it)."""


@dataclass(eq=False)
class Worker:
    process: BaseProcess
    conn: Connection
    tasks: int = 0
    killed_for: str | None = None
    """Why the parent killed it mid-job ("timeout" or "memory_budget_exceeded")."""

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def kill(self, reason: str) -> None:
        if self.killed_for is None:
            self.killed_for = reason
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class Lost:
    """The exchange ended without an answer: the worker died (or was killed)."""

    how: str


Answer = tuple[str, Any, Any] | Lost


def exchange(worker: Worker, job: Job, data: bytes) -> Answer:
    """One job over the worker's pipe (blocking; runs in an I/O thread)."""
    conn = worker.conn
    try:
        conn.send(job)
        conn.send_bytes(data)
        answer = conn.recv()
        if answer[0] == "ok":
            size, thumbnail_size = answer[2]
            output = _recv_exactly(conn, size)
            thumbnail = _recv_exactly(conn, thumbnail_size) if thumbnail_size else b""
            return ("ok", answer[1], (output, thumbnail))
        return ("error", answer[1], answer[2])
    except (EOFError, OSError):
        worker.process.join(STOP_SECONDS)  # reap it, to say how it ended
        return Lost(_exit_of(worker.process))


def _recv_exactly(conn: Connection, size: int) -> bytes:
    """The output's ``size`` raw bytes, read straight into one buffer.

    ``Connection.recv_bytes`` reads a pipe's 64 KiB at a time into a fresh buffer of all
    that remains (each one mmapped and unmapped again past the mmap threshold) and joins
    them: ~1.5 ms of the parent's CPU for a 5 MB output."""
    buffer = bytearray(size)
    view, done, fd = memoryview(buffer), 0, conn.fileno()
    while done < size:
        count = os.readv(fd, [view[done:]])
        if not count:
            raise EOFError("the worker's pipe closed mid-output")
        done += count
    view.release()
    return bytes(buffer)


async def lost(pending: asyncio.Future[Answer]) -> Answer:
    """Once its worker is killed, the exchange ends promptly (EOF on the pipe)."""
    try:
        return await asyncio.wait_for(pending, STOP_SECONDS)
    except TimeoutError:
        return Lost("no end of the exchange after the kill")


def _exit_of(process: BaseProcess) -> str:
    code = process.exitcode
    if code is None:
        return "still running"
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"
