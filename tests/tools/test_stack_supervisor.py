"""tools/stack's supervisor, run for real (`tools/stack supervise NAME -- CMD`) against
tiny dummy children: fast back-off values, every wait polled with a deadline."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import stack

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
ENTRY = ROOT / "tools" / "stack"


def test_backoff_delay_doubles_up_to_the_cap() -> None:
    delays = [stack.backoff_delay(attempt, 1.0, 30.0) for attempt in range(1, 9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert stack.backoff_delay(10_000, 1.0, 30.0) == 30.0


DEADLINE = 15.0  # generous: the machine may be busy with other test suites
WAIT: dict[str, float] = {"timeout": DEADLINE, "interval": 0.02}
MARKER = "imagemesh-supervisor-test-child"


def events(path: Path, name: str | None = None) -> list[dict[str, Any]]:
    """The supervisor's JSON lines in a log (other lines are the child's output)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("logger") == "supervisor" and name in (None, record["event"]):
            found.append(record)
    return found


@dataclass
class Supervised:
    proc: subprocess.Popen[bytes]
    stack_dir: Path
    name: str = "dummy"

    @property
    def service_log(self) -> Path:
        return self.stack_dir / "logs" / f"{self.name}.log"

    @property
    def own_log(self) -> Path:
        return self.stack_dir / "supervisor.out"

    @property
    def state_path(self) -> Path:
        return self.stack_dir / "pids" / f"{self.name}.supervisor.json"

    @property
    def pid_path(self) -> Path:
        return self.stack_dir / "pids" / f"{self.name}.pid"

    def state(self) -> stack.SupervisorState | None:
        return stack.read_supervisor_state(self.state_path)

    def child_pid(self) -> int | None:
        return stack.supervised_child(self.state(), self.proc.pid)

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the supervisor did not exit within {timeout:.0f}s")


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., Supervised]]:
    """Start `tools/stack supervise dummy [options] -- python -c SCRIPT` in its own session."""
    started: list[Supervised] = []

    def start(script: str, *options: str, name: str = "dummy") -> Supervised:
        stack_dir = tmp_path / f"stack{len(started)}"
        stack_dir.mkdir()
        with (stack_dir / "supervisor.out").open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(ENTRY),
                    "supervise",
                    name,
                    *options,
                    "--",
                    sys.executable,
                    "-c",
                    f"# {MARKER}\n{script}",
                ],
                env={**os.environ, "STACK_DIR": str(stack_dir)},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(Supervised(proc, stack_dir, name))
        return started[-1]

    yield start
    for supervised in started:
        if supervised.proc.poll() is None:
            supervised.proc.kill()
            supervised.proc.wait()
        # Children that outlived a failed test (SIGKILL also ends their PDEATHSIG'd wait).
        for record in events(supervised.service_log):
            pid = record.get("pid")
            cmdline = stack.proc_cmdline(pid) if isinstance(pid, int) else None
            if pid and cmdline and any(MARKER in arg for arg in cmdline):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def gone(pid: int) -> bool:
    return stack.proc_ppid(pid) is None  # no such process, or a zombie (reaped by init)


def test_supervisor_restarts_a_crashing_child_with_backoff(
    supervise: Callable[..., Supervised],
) -> None:
    sup = supervise(
        "print('crashing', flush=True); raise SystemExit(3)",
        "--backoff",
        "0.05",
        "--backoff-max",
        "0.2",
        "--reset-after",
        "60",
    )
    restarts = wait_for(
        lambda: (found := events(sup.service_log, "service_restarted"))[3:] and found,
        what="4 restarts",
        **WAIT,
    )
    first = restarts[:4]
    assert [r["attempt"] for r in first] == [1, 2, 3, 4]
    assert [r["delay_seconds"] for r in first] == [0.05, 0.1, 0.2, 0.2]
    assert [r["restarts"] for r in first] == [1, 2, 3, 4]
    assert all(r["exit_code"] == 3 and r["signal"] is None for r in first)
    assert all(r["service"] == "dummy" and r["level"] == "warning" for r in first)
    assert len({r["pid"] for r in first}) == 4
    # The same lines on the supervisor's own log.
    assert events(sup.own_log, "service_restarted")[:4] == first
    assert sup.service_log.read_text().count("crashing\n") >= 4
    assert stack.read_pid(sup.pid_path) == sup.proc.pid

    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit() == 0
    assert events(sup.own_log)[-1]["event"] == "service_stopped"
    assert not sup.state_path.exists()
    assert not sup.pid_path.exists()


def test_supervisor_restarts_a_killed_child_and_forwards_sigterm(
    supervise: Callable[..., Supervised],
) -> None:
    sup = supervise("import time\ntime.sleep(120)", "--backoff", "0.05")
    first = wait_for(sup.child_pid, what="the child", **WAIT)
    os.kill(first, signal.SIGKILL)
    (restart,) = wait_for(
        lambda: events(sup.service_log, "service_restarted"), what="a restart", **WAIT
    )
    assert restart["signal"] == "SIGKILL"
    assert restart["exit_code"] is None
    assert restart["attempt"] == 1
    assert restart["delay_seconds"] == 0.05
    second = wait_for(sup.child_pid, what="the new child", **WAIT)
    assert second == restart["pid"] != first
    state = sup.state()
    assert state is not None
    assert state.restarts == 1

    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit() == 0
    wait_for(lambda: gone(second), what="the child to be gone", **WAIT)
    (stopped,) = events(sup.service_log, "service_stopped")
    assert stopped["signal"] == "SIGTERM"
    assert stopped["exit_code"] == -signal.SIGTERM  # the child died of the forwarded SIGTERM
    assert len(events(sup.service_log, "service_restarted")) == 1  # no restart after a stop


CHILD_COUNTING_SIGTERMS = """
import signal, sys, time
got = []
signal.signal(signal.SIGTERM, lambda *_: got.append(1))
print("child ready", flush=True)
while not got:
    time.sleep(0.01)
time.sleep(0.3)  # "draining": a second SIGTERM would arrive meanwhile
print(f"child got {len(got)} SIGTERM", flush=True)
sys.exit(0)
"""


def test_sigterm_to_the_supervisors_group_reaches_the_child_once(
    supervise: Callable[..., Supervised],
) -> None:
    sup = supervise(CHILD_COUNTING_SIGTERMS)
    child = wait_for(sup.child_pid, what="the child", **WAIT)
    wait_for(
        lambda: "child ready" in sup.service_log.read_text(), what="the child's handler", **WAIT
    )
    os.killpg(sup.proc.pid, signal.SIGTERM)  # as `make down` does: the supervisor's group
    assert sup.wait_exit() == 0
    assert gone(child)
    log = sup.service_log.read_text()
    assert "child got 1 SIGTERM" in log
    (stopping,) = events(sup.service_log, "service_stopping")
    assert stopping["forwarded"] == "SIGTERM"
    assert stopping["pid"] == child
    (stopped,) = events(sup.service_log, "service_stopped")
    assert stopped["exit_code"] == 0
    assert not events(sup.service_log, "service_restarted")
    assert log.index('"service_stopping"') < log.index("child got") < log.index('"service_stopped"')


def test_supervisor_kills_a_child_that_ignores_sigterm(
    supervise: Callable[..., Supervised],
) -> None:
    script = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('child ready', flush=True)\ntime.sleep(120)"
    )
    sup = supervise(script, "--stop-timeout", "0.3")
    child = wait_for(sup.child_pid, what="the child", **WAIT)
    wait_for(
        lambda: "child ready" in sup.service_log.read_text(), what="the child's handler", **WAIT
    )
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit() == 0
    assert gone(child)
    (killed,) = events(sup.service_log, "service_killed")
    assert killed["pid"] == child
    (stopped,) = events(sup.service_log, "service_stopped")
    assert stopped["exit_code"] == -signal.SIGKILL


def test_backoff_resets_after_a_long_enough_run(supervise: Callable[..., Supervised]) -> None:
    sup = supervise(
        "import time\ntime.sleep(0.3)\nraise SystemExit(1)",
        "--backoff",
        "0.05",
        "--reset-after",
        "0.2",
    )
    restarts = wait_for(
        lambda: (found := events(sup.service_log, "service_restarted"))[2:] and found,
        what="3 restarts",
        **WAIT,
    )
    assert [(r["attempt"], r["delay_seconds"]) for r in restarts[:3]] == [(1, 0.05)] * 3
    assert all(r["uptime_seconds"] >= 0.3 for r in restarts[:3])


def test_a_second_supervisor_for_the_same_service_refuses(
    supervise: Callable[..., Supervised],
) -> None:
    sup = supervise("import time\ntime.sleep(120)")
    wait_for(sup.child_pid, what="the child", **WAIT)
    second = subprocess.run(
        [sys.executable, str(ENTRY), "supervise", "dummy", "--", "true"],
        env={**os.environ, "STACK_DIR": str(sup.stack_dir)},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert second.returncode == 1
    assert f"already supervised by pid {sup.proc.pid}" in second.stderr
    assert stack.read_pid(sup.pid_path) == sup.proc.pid
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit() == 0


NOT_READY_SERVER = """
import http.server, json, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "unavailable", "checks": {"rabbitmq": True, "s3": False}})
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def test_status_row_of_a_supervised_service(supervise: Callable[..., Supervised]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = NOT_READY_SERVER.replace("int(sys.argv[1])", str(port))
    sup = supervise(script, name="imageproc")
    paths = stack.Paths(root=ROOT, stack_dir=sup.stack_dir)
    config = stack.load_config(paths, env_file=paths.env_example, environ={})
    config = config.replace(IMAGEPROC_OPS_PORT=str(port))
    child = wait_for(sup.child_pid, what="the child", **WAIT)
    row = wait_for(
        lambda: (r := stack.service_row(config, "imageproc")).state != "down" and r,
        what="the 503",
        **WAIT,
    )
    assert row.pid == str(sup.proc.pid)
    assert row.child == str(child)
    assert row.restarts == "0"
    assert row.state == "not ready (s3 failing)"
    assert not row.ok
    # `up` leaves it alone: the supervisor is recognised as this service's
    assert stack.service_component(config, "imageproc").pid() == sup.proc.pid

    os.kill(child, signal.SIGKILL)
    wait_for(
        lambda: stack.service_row(config, "imageproc").restarts == "1", what="the restart", **WAIT
    )
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit() == 0
    row = stack.service_row(config, "imageproc")
    assert (row.pid, row.child, row.state) == ("-", "-", "down")
