"""imageproc's `timeout`, `memory_budget_exceeded` and `worker_crashed` are properties of
the input: the runner tries such a job once more, then fails it with that code (bounded
work per image). The runner on in-memory brokers, S3 a test double; end to end in
tests/faults/test_deadline.py."""

from __future__ import annotations

import pytest

from messaging import RpcError
from messaging.events import JobFailed
from tests.imageproc_runner.test_metrics import _jobs, _mesh, _raise


@pytest.mark.parametrize("code", ["timeout", "memory_budget_exceeded", "worker_crashed"])
async def test_retried_once_then_failed_with_its_code(code: str) -> None:
    retried, failed = _jobs("retried", code), _jobs("failed", code)
    async with _mesh(_raise(code)) as mesh:
        with pytest.raises(RpcError):  # back to the retry queue
            await mesh.runner.on_uploaded(*mesh.job(attempt=1))
        await mesh.runner.on_uploaded(*mesh.job(attempt=2))  # handled: no third attempt
    (job_failed,) = [e for e in mesh.recorded if isinstance(e, JobFailed)]
    assert (job_failed.error.code, job_failed.attempt) == (code, 2)
    assert (_jobs("retried", code), _jobs("failed", code)) == (retried + 1, failed + 1)


async def test_not_retried_when_an_earlier_attempt_failed_otherwise() -> None:
    """Attempt 2 after an imageproc outage: the deadline already had its one try."""
    async with _mesh(_raise("timeout")) as mesh:
        await mesh.runner.on_uploaded(*mesh.job(attempt=2))
    assert [e.error.code for e in mesh.recorded if isinstance(e, JobFailed)] == ["timeout"]
