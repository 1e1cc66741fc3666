"""Running a target: Hypothesis generates, an event loop of the target's own runs each
example under a timeout, and the outcomes are counted.

A target's `check` returns a short label for the outcome (e.g. `413 too_large`), raises
`Violation` when a property fails without an exception of the product's own, and lets
any unexpected exception escape: that is the crash the fuzzing is looking for.
"""

from __future__ import annotations

import asyncio
import faulthandler
import time
import warnings
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import BadContentDispositionHeader, BadContentDispositionParam
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as with_seed
from hypothesis import strategies as st

from . import known


class Violation(AssertionError):
    """A property does not hold; `kind` names which one (known bugs match on it)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class Target(ABC):
    """One fuzz target: what to generate, and what must hold for each example."""

    name: ClassVar[str]
    summary: ClassVar[str]
    timeout: ClassVar[float] = 10.0
    """Seconds one example may take before it counts as a hang."""
    suite_examples: ClassVar[int] = 200
    """Examples in the test suite's short run."""

    @abstractmethod
    def strategy(self) -> st.SearchStrategy[Any]: ...

    @abstractmethod
    async def check(self, example: Any) -> str:
        """Run one example through the product code; return a label for its outcome."""

    async def start(self) -> None:  # noqa: B027  # an optional hook: most targets share nothing
        """Set up what every example shares (a server, say), on the target's loop."""

    async def stop(self) -> None:  # noqa: B027  # an optional hook, as `start`
        """Undo `start`."""

    def measures(self) -> dict[str, float]:
        """Figures worth reporting (the largest over all runs is kept)."""
        return {}


@dataclass
class Stats:
    """What a target did: executions, outcome labels, known bugs met, and failures."""

    target: str
    executions: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    known: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    peaks: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.executions / self.seconds if self.seconds else 0.0


def run(
    target: Target,
    *,
    examples: int,
    stats: Stats,
    seed: int | None = None,
    tolerate_known: bool = True,
    watchdog: float | None = None,
) -> None:
    """Run `examples` examples of `target`; a failure is raised as Hypothesis reports it
    (shrunk, with the falsifying example in its notes).

    `tolerate_known` counts a crash listed in `known.KNOWN` instead of failing on it.
    `watchdog` (seconds) aborts the whole process with every thread's traceback when one
    example takes that long: the timeout cannot interrupt code that never yields.
    """
    loop = asyncio.new_event_loop()
    started = time.monotonic()

    @settings(
        max_examples=examples,
        database=None,  # nothing written to .hypothesis/ in the working tree
        deadline=None,  # the per-example timeout below is the bound that matters
        suppress_health_check=list(HealthCheck),
        print_blob=seed is not None,
    )
    @given(target.strategy())
    def property_holds(example: Any) -> None:
        stats.executions += 1
        if watchdog is not None:
            faulthandler.dump_traceback_later(watchdog, exit=True)
        try:
            label = loop.run_until_complete(_bounded(target, example))
        except Exception as exc:
            bug = known.match(exc)
            if bug is None or not tolerate_known:
                raise
            stats.known[bug.id] += 1
            label = f"known bug {bug.id}"
        finally:
            if watchdog is not None:
                faulthandler.cancel_dump_traceback_later()
        stats.outcomes[label] += 1

    try:
        loop.run_until_complete(target.start())
        with warnings.catch_warnings():
            # aiohttp warns of every odd Content-Disposition: hostile forms are full of them.
            warnings.simplefilter("ignore", BadContentDispositionHeader)
            warnings.simplefilter("ignore", BadContentDispositionParam)
            (property_holds if seed is None else with_seed(seed)(property_holds))()
    finally:
        stats.seconds += time.monotonic() - started
        for name, value in target.measures().items():
            stats.peaks[name] = max(value, stats.peaks.get(name, value))
        loop.run_until_complete(target.stop())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


async def _bounded(target: Target, example: Any) -> str:
    try:
        return await asyncio.wait_for(target.check(example), target.timeout)
    except TimeoutError:
        raise Violation("hang", f"no outcome within {target.timeout:g} s") from None
