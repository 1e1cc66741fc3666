"""Every fuzz target, briefly: a few hundred examples each (fewer for the large streams).

A failure here is a crash the fuzzing found: Hypothesis prints the shrunk example. Known
bugs (`known.KNOWN`) are counted, not failed on; `test_regressions.py` holds them.
`python -m tests.fuzz --minutes 10` runs the same targets for as long as you like.
"""

from __future__ import annotations

import pytest

from tests.quick import examples

from . import known
from .engine import Stats, run
from .targets import TARGETS

# A target run this long meets more than one outcome (accepted and refused, handled and
# parked...): one label alone means the strategies no longer reach one side.
VARIED_FROM = 20


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target(name: str) -> None:
    target = TARGETS[name]()
    stats = Stats(name)
    count = examples(target.suite_examples)
    run(target, examples=count, stats=stats)
    assert stats.executions >= count // 2, "Hypothesis gave up early"
    assert sum(stats.outcomes.values()) == stats.executions, "an example without an outcome"
    assert set(stats.known) <= {bug.id for bug in known.KNOWN}
    if count >= VARIED_FROM:
        assert len(stats.outcomes) >= 2, f"only one outcome: {dict(stats.outcomes)}"


def test_known_bugs_and_xfailed_regression_tests_are_the_same_list() -> None:
    """Each entry of `known.KNOWN` has its strict xfail in test_regressions.py (same
    sentence), and no xfail there outlives its entry."""
    from . import test_regressions

    tests = [test for name, test in vars(test_regressions).items() if name.startswith("test_")]
    assert len(tests) >= 10, "the regression tests were not found"
    xfails = [mark for test in tests for mark in getattr(test, "pytestmark", [])]
    xfails = [mark for mark in xfails if mark.name == "xfail"]
    assert all(mark.kwargs.get("strict") is True for mark in xfails), "an xfail not strict"
    reasons = sorted(mark.kwargs["reason"] for mark in xfails)
    assert reasons == sorted(bug.summary for bug in known.KNOWN)
