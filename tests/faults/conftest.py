"""Fixtures for the fault-injection suite: a fresh mesh per test, with fast retry settings.

Every test gets its own vhost, database and buckets (like the session-wide `test_env` of
`tests/conftest.py`, but per test), so the faults one test injects, and the messages it
parks, never leak into the next. The infrastructure itself (RabbitMQ, PouchDB Server, moto)
is the shared local stack: the tests that restart or freeze it put it back in `finally`.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import stack

from tests.conftest import SERVICES, Mesh, isolated_env, queue_counts, running_mesh

FAST_SETTINGS = {
    "AMQP_RETRY_DELAYS": "0.5,1,2,4,8",
    "AMQP_MAX_ATTEMPTS": "12",
    "IMAGEPROC_TIMEOUT_SECONDS": "10",
    "RPC_TIMEOUT_SECONDS": "5",
    "S3_TIMEOUT_SECONDS": "5",
    "SHUTDOWN_TIMEOUT_SECONDS": "10",
    "LOG_FORMAT": "json",
}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember each phase's report on the item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def fault_env(stack_config: dict[str, str]) -> Iterator[dict[str, str]]:
    """A vhost, a database and two buckets of this test's own, deleted afterwards."""
    with isolated_env(stack_config, "fault") as env:
        try:
            yield env
        finally:
            restore_infra(stack_config)


def restore_infra(config: dict[str, str]) -> None:
    """Safety net for the shared servers, should a fault not have undone itself (a test
    timeout interrupts the event loop, skipping the fault's `finally`): S3 thawed
    (SIGCONT), RabbitMQ and CouchDB running again."""
    pid = stack.s3_component(stack.Config.of(config)).pid()
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    stack.ensure_infra(stack.Config.of(config))


@pytest.fixture
def mesh_overrides() -> dict[str, str]:
    """Extra settings for this test's mesh; a test module overrides this fixture."""
    return {}


@pytest.fixture
def fault_mesh(
    request: pytest.FixtureRequest,
    fault_env: dict[str, str],
    mesh_overrides: dict[str, str],
    tmp_path: Any,
) -> Iterator[Mesh]:
    """The four services as real processes on free ports, against this test's vhost."""
    logs = tmp_path / "mesh-logs"
    logs.mkdir()
    with running_mesh({**fault_env, **FAST_SETTINGS, **mesh_overrides}, logs) as running:
        try:
            yield running
        finally:
            failed = any(
                getattr(getattr(request.node, f"report_{when}", None), "failed", False)
                for when in ("setup", "call")
            )
            if failed:
                print(diagnostics(running))


def diagnostics(mesh: Mesh, lines: int = 60) -> str:
    """What to look at when a fault test fails: queue depths and each service's last lines."""
    parts = [f"=== mesh logs in {mesh.logs}"]
    try:
        counts = queue_counts(mesh.env)
        parts.append("=== queue counts (ready + unacked)")
        parts.extend(f"  {name}: {count}" for name, count in sorted(counts.items()))
    except Exception as exc:
        parts.append(f"=== queue counts unavailable: {exc}")
    for name in SERVICES:
        process = mesh.processes.get(name)
        state = "not running" if process is None else f"pid {process.pid}, rc {process.poll()}"
        parts.append(f"=== {name} ({state}), last {lines} lines")
        parts.append(mesh.log_tail(name, lines))
    return "\n".join(parts)
