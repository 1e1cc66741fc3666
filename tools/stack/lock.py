"""One start or stop at a time per stack folder."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from typing import IO

from .config import Paths

_held_locks: list[IO[str]] = []


@contextlib.contextmanager
def stack_lock(paths: Paths) -> Iterator[None]:
    """One start or stop at a time per stack folder: two at once (two terminals, a test
    run beside `make up`) would both start the same server, and the second would remove
    the pid file the first one's server wrote. Reentrant within a process."""
    if _held_locks:
        yield
        return
    paths.stack_dir.mkdir(parents=True, exist_ok=True)
    with paths.lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _held_locks.append(handle)
        try:
            yield
        finally:
            _held_locks.pop()
            fcntl.flock(handle, fcntl.LOCK_UN)
