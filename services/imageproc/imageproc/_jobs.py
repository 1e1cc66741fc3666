"""What the pool sends its worker processes (``Setup`` once, a ``Job`` each time) and
the entry point it starts them with: plain data and a trampoline, so that the service
process imports neither libvips nor the pipelines (``_worker`` does, in each worker; the
forkserver preloads it, so a new worker starts with it already imported)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection

from pipeline import ImageLimits, Operation

__all__ = ["Job", "Setup", "serve"]


@dataclass(frozen=True, slots=True)
class Setup:
    """What each worker process applies to itself before its first job."""

    vips_threads: int
    """libvips threads per pipeline (ignored when VIPS_CONCURRENCY is set)."""
    address_space_bytes: int
    """RLIMIT_AS backstop (0 = none): past it allocations fail and the job fails with
    ``memory_budget_exceeded`` even between two RSS samples of the parent's watchdog."""


@dataclass(frozen=True, slots=True)
class Job:
    ops: Sequence[Operation]
    limits: ImageLimits
    timeout: float
    thumbnail: Sequence[Operation] = ()
    """The operations making the output's thumbnail; none: no thumbnail."""


def serve(conn: Connection, setup: Setup) -> None:
    """A worker process's target: ``_worker.serve``, imported in the worker only."""
    from ._worker import serve as run

    run(conn, setup)
