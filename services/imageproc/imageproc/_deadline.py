"""A wall-clock budget per pipeline that really stops libvips.

libvips computes lazily, mostly inside the final save; a Python-side check between
operations would not stop that. Instead the loaded image reports progress, and once the
budget is spent the progress callback sets libvips' kill flag: every computation derived
from that image then fails promptly with a pyvips.Error.

The deadline is per thread: each pipeline runs start to end in one thread of a worker
process. It stops libvips only; whatever else overruns (Pillow's decoder) is stopped by
killing the worker (``workers``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_local = threading.local()


class DeadlineExceeded(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"stopped after the {seconds:g} s time limit")
        self.seconds = seconds


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    _local.seconds = seconds
    _local.at = time.monotonic() + seconds if seconds else None
    _local.guarded = []
    try:
        yield
    finally:
        _local.at = _local.seconds = None
        _local.guarded = []


def expired() -> bool:
    at: float | None = getattr(_local, "at", None)
    return at is not None and time.monotonic() > at


def check() -> None:
    """Raise DeadlineExceeded if the budget is spent (between operations)."""
    if expired():
        raise DeadlineExceeded(_local.seconds)


def exceeded() -> DeadlineExceeded | None:
    return DeadlineExceeded(_local.seconds) if expired() else None


def guard(image: Any) -> Any:
    """Make `image` (and everything computed from it) stop once the deadline passes."""
    if getattr(_local, "at", None) is None:
        return image
    image.set_progress(True)

    def on_eval(target: Any, _progress: Any) -> None:
        if expired():
            target.set_kill(True)

    image.signal_connect("eval", on_eval)
    # pyvips frees the callback's handle with the Python wrapper; libvips may still emit
    # progress on the image after the wrapper is dropped (e.g. frames split from it), which
    # crashes the process. Keep the wrapper alive until the pipeline ends.
    _local.guarded.append(image)
    return image


def rebase(image: Any) -> Any:
    """Guard `image`, an image held in memory that nothing guarded is computed into any
    more, in place of the images guarded so far, and let those go: the decoder behind a
    loaded image (a progressive JPEG's ~72 MB of coefficients at 24 MP) is freed with
    them, before the rest of the pipeline holds its own buffers. Only once every image
    derived from them is gone (`operations._materialise`), or libvips would emit progress
    to a handle freed with them."""
    _local.guarded = []
    return guard(image)
