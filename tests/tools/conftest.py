"""Fixtures of the stack tool's tests: its settings (from .env.example alone, whatever a
developer's .env says) on a private stack folder, so no test touches `.stack/`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import stack  # noqa: E402


@pytest.fixture
def paths(tmp_path: Path) -> stack.Paths:
    """The repository's programs, with the state under a temporary folder."""
    return stack.Paths(root=ROOT, stack_dir=tmp_path / "stack")


@pytest.fixture
def config(paths: stack.Paths) -> stack.Config:
    """.env.example's defaults, without the environment."""
    return stack.load_config(paths, env_file=paths.env_example, environ={})
