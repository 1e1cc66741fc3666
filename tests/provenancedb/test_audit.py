"""`python -m provenancedb.audit` when it cannot run: it waits for CouchDB to index the
view it reads, and when it gives up it says which step failed and why (a timeout's own
message is empty: the soak's audit once printed "could not run: " and nothing else)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from provenancedb import audit


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def reads(clock: FakeClock, outcomes: list[BaseException | None], step: float = 30.0) -> Any:
    """A view read that takes `step` seconds and ends as `outcomes` says, in turn."""
    pending: Iterator[BaseException | None] = iter(outcomes)

    async def read() -> None:
        clock.now += step
        outcome = next(pending)
        if outcome is not None:
            raise outcome

    return read


def test_describe_is_never_empty() -> None:
    assert audit.describe(TimeoutError()) == "timed out"
    assert audit.describe(ConnectionResetError()) == "ConnectionResetError"
    assert audit.describe(OSError("no route")) == "OSError: no route"


async def test_a_read_timing_out_while_the_server_indexes_is_asked_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = FakeClock()
    read = reads(clock, [TimeoutError(), TimeoutError(), None])
    await audit.wait_indexed(read, deadline=600, clock=clock)
    assert clock.now == 90  # three reads: two timed out, the third answered
    said = capsys.readouterr()
    assert said.out == ""  # stdout is the report (--json is parsed)
    assert "waiting for CouchDB to index view by_job (60 s so far)" in said.err


async def test_past_the_deadline_it_says_the_view_is_not_indexed() -> None:
    clock = FakeClock()
    read = reads(clock, [TimeoutError()] * 10)
    with pytest.raises(audit.AuditFailed) as failed:
        await audit.wait_indexed(read, deadline=100, clock=clock)
    message = str(failed.value)
    assert "by_job not indexed after 120 s (4 reads timed out)" in message
    assert "--index-deadline" in message


async def test_another_error_fails_at_once_naming_the_view() -> None:
    clock = FakeClock()
    read = reads(clock, [ConnectionRefusedError(111, "Connect call failed")])
    with pytest.raises(audit.AuditFailed, match="reading CouchDB view by_job: Connection"):
        await audit.wait_indexed(read, deadline=600, clock=clock)
    assert clock.now == 30


def test_a_step_names_what_it_was_doing() -> None:
    with (
        pytest.raises(audit.AuditFailed, match=r"^listing s3://out: timed out$"),
        audit.step("listing s3://out"),
    ):
        raise TimeoutError


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (TimeoutError(), "could not run: timed out"),
        (
            audit.AuditFailed("listing s3://x: timed out"),
            "could not run: listing s3://x: timed out",
        ),
        (RuntimeError("set COUCHDB_AUDITOR_PASSWORD"), "RuntimeError: set COUCHDB_AUDITOR"),
    ],
)
def test_the_command_exits_2_saying_what_failed(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    said: str,
) -> None:
    async def failing(grace: float, as_json: bool, index_deadline: float) -> int:
        assert index_deadline == 42
        raise error

    monkeypatch.setattr(audit, "_main", failing)
    assert audit.main(["--index-deadline", "42"]) == 2
    err = capsys.readouterr().err
    assert said in err
    assert not err.rstrip().endswith("could not run:")
