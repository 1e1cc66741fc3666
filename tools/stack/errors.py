"""What every part of the stack tool shares: its one error type and its one voice."""

from __future__ import annotations


class StackError(RuntimeError):
    """A component could not be installed, started, provisioned or stopped."""


def say(message: str) -> None:
    """One line of progress on stdout (flushed: `make up` pipes it)."""
    print(f"stack: {message}", flush=True)
