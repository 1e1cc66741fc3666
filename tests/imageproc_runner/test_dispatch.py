"""Fair dispatch: the round-robin buffer (pure logic) and the dispatcher that runs it, with
deliveries as test doubles (the real broker path is tests/e2e/test_fairness.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from imageproc_runner.dispatch import MAX_REMEMBERED, FairDispatcher, RoundRobin
from tests.waiting import async_wait_for

# --------------------------------------------------------------------------- RoundRobin


def _order(buffer: RoundRobin[str, str]) -> list[str]:
    taken = []
    while (item := buffer.take()) is not None:
        taken.append(item)
    return taken


def test_one_key_is_fifo() -> None:
    buffer: RoundRobin[str, str] = RoundRobin()
    for n in range(5):
        buffer.put("a", f"a{n}")
    assert _order(buffer) == ["a0", "a1", "a2", "a3", "a4"]
    assert len(buffer) == 0
    assert buffer.take() is None


def test_keys_take_turns() -> None:
    buffer: RoundRobin[str, str] = RoundRobin()
    for n in range(4):
        buffer.put("a", f"a{n}")
    buffer.put("b", "b0")
    buffer.put("c", "c0")
    buffer.put("b", "b1")
    assert _order(buffer) == ["a0", "b0", "c0", "a1", "b1", "a2", "a3"]


def test_a_new_key_is_next() -> None:
    """60 of one principal buffered, one taken (running); another principal's job is the
    very next one taken, not the 61st (FIFO) nor the 3rd (plain rotation)."""
    buffer: RoundRobin[str, str] = RoundRobin()
    for n in range(60):
        buffer.put("heavy", f"h{n}")
    assert buffer.take() == "h0"
    buffer.put("light", "thumbnail")
    assert buffer.take() == "thumbnail"
    assert buffer.take() == "h1"
    assert len(buffer) == 58


def test_a_key_that_keeps_coming_back_gets_every_other_turn() -> None:
    buffer: RoundRobin[str, str] = RoundRobin()
    for n in range(10):
        buffer.put("heavy", f"h{n}")
    taken = []
    for n in range(4):
        buffer.put("light", f"l{n}")  # one at a time, each time it had none
        taken += [buffer.take(), buffer.take()]
    # Neither was served before l0 arrived: heavy came first. Then they alternate.
    assert taken == ["h0", "l0", "h1", "l1", "h2", "l2", "h3", "l3"]


def test_least_recently_served_first_among_returning_keys() -> None:
    buffer: RoundRobin[str, str] = RoundRobin()
    for key in "abc":
        buffer.put(key, f"{key}0")
    assert [buffer.take() for _ in range(3)] == ["a0", "b0", "c0"]
    buffer.put("c", "c1")
    buffer.put("a", "a1")  # served before c: ahead of it
    buffer.put("b", "b1")
    assert _order(buffer) == ["a1", "b1", "c1"]


def test_forgotten_keys_still_rank_first() -> None:
    buffer: RoundRobin[int, str] = RoundRobin()
    for key in range(MAX_REMEMBERED + 10):
        buffer.put(key, "x")
        assert buffer.take() == "x"
    for n in range(3):
        buffer.put(-1, f"busy{n}")
    assert buffer.take() == "busy0"
    buffer.put(0, "early")  # served long ago (and forgotten): before the busy key
    assert buffer.take() == "early"


def test_a_key_that_emptied_rejoins_at_the_end() -> None:
    buffer: RoundRobin[str, str] = RoundRobin()
    buffer.put("a", "a0")
    buffer.put("b", "b0")
    buffer.put("b", "b1")
    assert buffer.take() == "a0"
    buffer.put("a", "a1")  # a had nothing: it queues behind b's turn
    assert _order(buffer) == ["b0", "a1", "b1"]


def test_remove_if_keeps_order_and_turns() -> None:
    buffer: RoundRobin[str, str] = RoundRobin()
    for item in ("a0", "a1x", "a2", "b0x", "c0", "c1x"):
        buffer.put(item[0], item)
    removed = buffer.remove_if(lambda item: item.endswith("x"))
    assert removed == ["a1x", "b0x", "c1x"]
    assert len(buffer) == 3
    assert buffer.keys == 2
    assert _order(buffer) == ["a0", "c0", "a2"]


def test_drain_empties() -> None:
    buffer: RoundRobin[str, str] = RoundRobin()
    for item in ("a0", "b0", "a1"):
        buffer.put(item[0], item)
    assert sorted(buffer.drain()) == ["a0", "a1", "b0"]
    assert len(buffer) == 0
    assert buffer.keys == 0
    assert buffer.take() is None


# --------------------------------------------------------------------------- FairDispatcher


@dataclass(eq=False)
class FakeDelivery:
    """What the dispatcher uses of a messaging.Delivery."""

    principal: str
    name: str
    received: float = 0.0
    stale: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    log: list[str] = field(default_factory=list)
    released: str | None = None

    @property
    def event(self) -> Any:
        return SimpleNamespace(principal=self.principal, job_id=self.name)

    async def handle(self) -> None:
        self.log.append(f"start {self.name}")
        await self.done.wait()
        self.log.append(f"end {self.name}")

    async def release(self, reason: str) -> None:
        self.released = reason


def _started(log: list[str]) -> list[str]:
    return [entry.removeprefix("start ") for entry in log if entry.startswith("start ")]


async def test_another_principal_runs_next_despite_a_backlog() -> None:
    log: list[str] = []
    dispatcher = FairDispatcher(concurrency=2, max_hold=900)
    heavy = [FakeDelivery("heavy", f"h{n}", log=log) for n in range(60)]
    for delivery in heavy:
        dispatcher.put(delivery)
    await async_wait_for(lambda: len(_started(log)) == 2, timeout=5)
    assert _started(log) == ["h0", "h1"]
    light = FakeDelivery("light", "thumb", log=log)
    dispatcher.put(light)
    heavy[0].done.set()
    await async_wait_for(lambda: len(_started(log)) == 3, timeout=5)
    # The first free worker takes it: on FIFO dispatch it would be the 61st job started.
    assert _started(log) == ["h0", "h1", "thumb"]
    heavy[1].done.set()
    await async_wait_for(lambda: len(_started(log)) == 4, timeout=5)
    assert _started(log) == ["h0", "h1", "thumb", "h2"]
    assert dispatcher.buffered == 57
    for delivery in [*heavy, light]:
        delivery.done.set()
    await dispatcher.stop(timeout=5)


async def test_concurrency_is_the_limit() -> None:
    log: list[str] = []
    dispatcher = FairDispatcher(concurrency=3, max_hold=900)
    deliveries = [FakeDelivery(f"p{n % 2}", f"j{n}", log=log) for n in range(10)]
    for delivery in deliveries:
        dispatcher.put(delivery)
    assert dispatcher.running == 3
    assert dispatcher.buffered == 7
    for delivery in deliveries:
        delivery.done.set()
    await async_wait_for(lambda: dispatcher.running == 0 and dispatcher.buffered == 0)
    assert sorted(_started(log)) == sorted(d.name for d in deliveries)


async def test_sweep_hands_back_what_was_held_too_long_and_drops_stale() -> None:
    now = [1000.0]
    dispatcher = FairDispatcher(concurrency=1, max_hold=60, clock=lambda: now[0])
    running = FakeDelivery("a", "running", received=1000.0)
    old = FakeDelivery("a", "old", received=1000.0)
    stale = FakeDelivery("b", "stale", received=1050.0, stale=True)
    young = FakeDelivery("b", "young", received=1050.0)
    for delivery in (running, old, stale, young):
        dispatcher.put(delivery)
    now[0] = 1061.0
    await dispatcher.sweep()
    assert old.released == "held_too_long"
    assert stale.released is None  # the broker redelivers it on the new channel
    assert young.released is None
    assert running.released is None
    assert dispatcher.buffered == 1
    running.done.set()
    young.done.set()
    await async_wait_for(lambda: young.log == ["start young", "end young"], timeout=5)
    assert stale.log == []
    await dispatcher.stop(timeout=5)


async def test_stale_deliveries_are_never_started() -> None:
    dispatcher = FairDispatcher(concurrency=4, max_hold=900)
    stale = FakeDelivery("a", "stale", stale=True)
    fresh = FakeDelivery("a", "fresh")
    dispatcher.put(stale)
    dispatcher.put(fresh)
    fresh.done.set()
    await async_wait_for(lambda: fresh.log == ["start fresh", "end fresh"], timeout=5)
    assert stale.log == []
    await dispatcher.stop(timeout=5)


async def test_stop_hands_back_the_buffer_and_waits_for_running_jobs() -> None:
    log: list[str] = []
    dispatcher = FairDispatcher(concurrency=1, max_hold=900)
    dispatcher.start()
    first, second, third = (FakeDelivery("a", name, log=log) for name in ("1", "2", "3"))
    for delivery in (first, second, third):
        dispatcher.put(delivery)
    stopping = asyncio.create_task(dispatcher.stop(timeout=5))
    await async_wait_for(lambda: second.released and third.released, timeout=5)
    assert not stopping.done()  # the running job is still going
    first.done.set()
    await asyncio.wait_for(stopping, 5)
    assert log == ["start 1", "end 1"]
    assert (second.released, third.released) == ("shutdown", "shutdown")
    late = FakeDelivery("b", "late")
    dispatcher.put(late)  # arrived while cancelling
    await async_wait_for(lambda: late.released == "shutdown", timeout=5)
    assert late.log == []
