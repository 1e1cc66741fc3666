"""Waiting on a condition with a deadline: the one polling loop of the test suite.

Tests do not sleep to synchronise: they wait until what they expect can be observed, and
fail naming what they waited for when it does not come in time. `wait_for` is for plain
code (threads, subprocesses), `async_wait_for` for the event loop (its condition may be a
coroutine function), both on the same `Deadline`."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


class DeadlineExceeded(AssertionError):
    """What a test waited for did not happen in time (a failure, not an error)."""


class Deadline:
    """`seconds` from now on the monotonic clock (wall-clock steps do not move it)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()

    @property
    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    @property
    def expired(self) -> bool:
        return self.remaining <= 0

    def check(self, what: str) -> None:
        """Fail with `what` once the time is up."""
        if self.expired:
            raise DeadlineExceeded(f"{what}: not done within {self.seconds:g} s")


def _what(condition: Callable[[], Any], what: str | None) -> str:
    return what or str(getattr(condition, "__qualname__", None) or repr(condition))


def wait_for(
    condition: Callable[[], Any],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str | None = None,
) -> Any:
    """Call `condition` until it returns something truthy and return that; fail with
    DeadlineExceeded after `timeout` seconds."""
    deadline = Deadline(timeout)
    while True:
        result = condition()
        if result:
            return result
        deadline.check(_what(condition, what))
        time.sleep(min(interval, max(deadline.remaining, 0.0)))


async def async_wait_for(
    condition: Callable[[], Any],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str | None = None,
) -> Any:
    """`wait_for` on the event loop: other tasks run between two calls of `condition`,
    which may return an awaitable (then its result counts)."""
    deadline = Deadline(timeout)
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        deadline.check(_what(condition, what))
        await asyncio.sleep(min(interval, max(deadline.remaining, 0.0)))
