"""Every fuzz target, briefly: a few hundred examples each (fewer for the large streams).

A failure here is a crash the fuzzing found: Hypothesis prints the shrunk example. Known
bugs (`known.KNOWN`) are counted, not failed on; `test_regressions.py` holds them.
`python -m tests.fuzz --minutes 10` runs the same targets for as long as you like.
"""

from __future__ import annotations

import pytest

from . import known
from .engine import Stats, run
from .targets import TARGETS


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target(name: str) -> None:
    target = TARGETS[name]()
    stats = Stats(name)
    run(target, examples=target.suite_examples, stats=stats)
    assert stats.executions > 0


def test_every_known_bug_has_a_regression_test() -> None:
    from . import test_regressions

    reasons = {
        mark.kwargs["reason"]
        for test in vars(test_regressions).values()
        for mark in getattr(test, "pytestmark", [])
        if mark.name == "xfail"
    }
    assert {bug.summary for bug in known.KNOWN} <= reasons
