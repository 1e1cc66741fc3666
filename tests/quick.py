"""How many examples the property and fuzz tests draw: all of them in `make test`, a fifth
in `make check` (which sets IMAGEMESH_TESTS_QUICK), the inner loop that must stay under two
minutes. Drawing examples is most of those tests' time; the full count still runs in CI."""

from __future__ import annotations

import os

QUICK = bool(os.environ.get("IMAGEMESH_TESTS_QUICK"))
FLOOR = 10
"""Fewest examples a quick run draws (unless the full count is smaller)."""


def examples(full: int) -> int:
    """`full`, or a fifth of it (at least FLOOR) in a quick run."""
    return min(full, max(FLOOR, full // 5)) if QUICK else full
