"""The suite's one polling helper: it returns what the condition found, and fails (an
AssertionError naming what it waited for) at its deadline, not before and not never."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tests.waiting import Deadline, DeadlineExceeded, async_wait_for, wait_for


def test_wait_for_returns_the_first_truthy_result() -> None:
    calls = itertools.count()
    assert wait_for(lambda: next(calls) >= 3 and "found", interval=0.001) == "found"
    assert next(calls) == 4, "one call per poll, none after the condition held"


def test_wait_for_fails_at_the_deadline_naming_what_it_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"the pony: not done within 0\.1 s"):
        wait_for(lambda: None, timeout=0.1, interval=0.01, what="the pony")
    assert 0.1 <= time.monotonic() - started < 2
    assert issubclass(DeadlineExceeded, AssertionError), "a test failure, not an error"


async def test_async_wait_for_lets_other_tasks_run_and_awaits_a_coroutine_condition() -> None:
    ready = asyncio.Event()

    async def is_ready() -> bool:
        return ready.is_set()

    asyncio.get_running_loop().call_later(0.05, ready.set)
    assert await async_wait_for(is_ready, timeout=5, interval=0.01) is True


async def test_async_wait_for_fails_at_the_deadline() -> None:
    with pytest.raises(DeadlineExceeded, match="test_async_wait_for_fails"):
        await async_wait_for(lambda: [], timeout=0.05, interval=0.01)


def test_a_deadline_counts_down_on_the_monotonic_clock() -> None:
    deadline = Deadline(60)
    assert 59 < deadline.remaining <= 60
    assert not deadline.expired
    deadline.check("nothing")  # in time: no failure
    assert Deadline(0).expired
