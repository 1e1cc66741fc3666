"""Tests of tools/stack.py without servers: its pure parts, and the supervisor run against
tiny dummy children (fast back-off values, every wait polled with a deadline)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import stack

STACK_PY = Path(stack.__file__).resolve()


def test_parse_dotenv_basics() -> None:
    text = """
# a comment
RABBITMQ_HOST=127.0.0.1
export S3_URL = http://127.0.0.1:9000
QUOTED="two words # not a comment"
SINGLE='it''s'
INLINE=value # a comment
EMPTY=
ESCAPED="line\\nnext \\"q\\""
not a line
=novalue
1BAD=x
URL=http://h/x?a=b=c
"""
    assert stack.parse_dotenv(text) == {
        "RABBITMQ_HOST": "127.0.0.1",
        "S3_URL": "http://127.0.0.1:9000",
        "QUOTED": "two words # not a comment",
        "SINGLE": "it''s",
        "INLINE": "value",
        "EMPTY": "",
        "ESCAPED": 'line\nnext "q"',
        "URL": "http://h/x?a=b=c",
    }


def test_parse_dotenv_hash_inside_unquoted_value_is_kept() -> None:
    assert stack.parse_dotenv("PASSWORD=abc#def") == {"PASSWORD": "abc#def"}


def test_load_config_precedence(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RABBITMQ_VHOST=from-file\nCOUCHDB_DB=from-file\nEXTRA=x\n")
    config = stack.load_config(env_file, environ={"COUCHDB_DB": "from-env", "UNRELATED": "y"})
    assert config["RABBITMQ_VHOST"] == "from-file"
    assert config["COUCHDB_DB"] == "from-env"
    assert config["EXTRA"] == "x"
    assert config["S3_INPUT_BUCKET"] == stack.DEFAULTS["S3_INPUT_BUCKET"]
    assert "UNRELATED" not in config


def test_load_config_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert stack.load_config(tmp_path / "absent", environ={}) == stack.DEFAULTS


def test_default_env_file_prefers_dotenv(tmp_path: Path) -> None:
    assert stack.default_env_file(tmp_path) is None
    (tmp_path / ".env.example").write_text("A=1\n")
    assert stack.default_env_file(tmp_path) == tmp_path / ".env.example"
    (tmp_path / ".env").write_text("A=2\n")
    assert stack.default_env_file(tmp_path) == tmp_path / ".env"


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (["/repo/.venv/bin/python", "/repo/tools/stack.py", "supervise", "upload"], True),
        (["python3", "tools/stack.py", "--env-file", ".env", "supervise", "upload"], True),
        (["python3", "/repo/tools/stack.py", "supervise", "upload_other"], False),
        (["python3", "/repo/tools/stack.py", "supervise", "imageproc"], False),
        (["python3", "/repo/tools/other.py", "supervise", "upload"], False),
        (["/repo/.venv/bin/python", "-m", "upload"], False),  # an alternative, see below
        ([], False),
    ],
)
def test_cmdline_matches_service_supervisor(cmdline: list[str], expected: bool) -> None:
    signature = stack.service_component("upload").signature
    assert stack.cmdline_matches(cmdline, signature) is expected


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (["/repo/.venv/bin/python", "-m", "upload"], True),
        (["/repo/.venv/bin/python", "-m", "upload", "--x"], True),
        (["/repo/.venv/bin/python", "-m", "upload_other"], False),
        (["/repo/.venv/bin/python", "-m", "imageproc"], False),
        (["/usr/bin/python3", "-c", "-m upload"], False),
        (["/usr/bin/bash", "-m", "upload"], False),
    ],
)
def test_cmdline_matches_unsupervised_service(cmdline: list[str], expected: bool) -> None:
    # A service started by an older stack.py (no supervisor) is still ours, for `down`.
    (legacy,) = stack.service_component("upload").alternatives
    assert stack.cmdline_matches(cmdline, legacy) is expected


def test_cmdline_matches_pouchdb() -> None:
    signature = stack.couch_component(stack.DEFAULTS).signature
    data = str(stack.COUCH_DIR / "data")
    ours = ["node", "/r/tools/node_modules/.bin/pouchdb-server", "--dir", data, "--port", "5984"]
    assert stack.cmdline_matches(ours, signature)
    assert not stack.cmdline_matches(["node", "pouchdb-server", "--dir", "/elsewhere"], signature)
    assert not stack.cmdline_matches(["node", "other.js", "--dir", data], signature)


def test_environ_matches() -> None:
    signature = stack.Signature(environ=(("RABBITMQ_NODENAME", "imagemesh@localhost"),))
    assert stack.environ_matches({"RABBITMQ_NODENAME": "imagemesh@localhost"}, signature)
    assert not stack.environ_matches({"RABBITMQ_NODENAME": "rabbit@host"}, signature)
    assert not stack.environ_matches({}, signature)
    assert stack.environ_matches(None, signature)  # unreadable: command line decides


def test_running_pid_checks_pid_file_and_cmdline(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    assert stack.running_pid(pid_file, stack.Signature()) is None  # no file
    pid_file.write_text("garbage\n")
    assert stack.read_pid(pid_file) is None
    pid_file.write_text(f"{os.getpid()}\n")
    me = stack.proc_cmdline(os.getpid())
    assert me is not None
    assert stack.running_pid(pid_file, stack.Signature(contains=(Path(me[0]).name,))) == os.getpid()
    # A live PID whose command line is something else is not ours (PID reuse).
    assert stack.running_pid(pid_file, stack.Signature(args=("-m", "no-such-module"))) is None


def test_proc_cmdline_of_missing_process() -> None:
    assert stack.proc_cmdline(2**22 + 12345) is None


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert stack.tail(log, 3) == "line 97\nline 98\nline 99"
    assert "no log" in stack.tail(tmp_path / "absent.log")


def test_wait_until_deadline_and_death() -> None:
    with pytest.raises(stack.StackError, match="not ready"):
        stack.wait_until("never", lambda: False, 0.05, interval=0.01)
    with pytest.raises(stack.StackError, match="exited"):
        stack.wait_until("dead", lambda: False, 5, alive=lambda: False, interval=0.01)
    stack.wait_until("now", lambda: True, 0)


def test_service_ports_come_from_config() -> None:
    config = dict(stack.DEFAULTS, UPLOAD_PORT="18000")
    assert stack.service_ready_url("upload", config) == "http://127.0.0.1:18000/readyz"
    with pytest.raises(stack.StackError, match="UPLOAD_PORT"):
        stack.service_ready_url("upload", dict(config, UPLOAD_PORT="x"))


def test_replicas_get_their_own_names_and_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack, "PID_DIR", tmp_path)
    config = dict(stack.DEFAULTS, IMAGEPROC_REPLICAS="3")
    assert stack.service_instances(config) == [
        "provenancedb",
        "imageproc",
        "imageproc-2",
        "imageproc-3",
        "imageproc_runner",
        "imageproc_runner-2",
        "imageproc_runner-3",
        "upload",
    ]
    assert stack.service_ready_url("imageproc-3", config) == "http://127.0.0.1:8122/readyz"
    env = stack.service_env(config, "imageproc_runner-2")
    assert env["RUNNER_OPS_PORT"] == "8111"
    assert env["RABBITMQ_USER"] == "imageproc_runner"  # the service's own broker user
    assert stack.service_component("imageproc-2").alternatives[0].args == ("-m", "imageproc")
    # The runner may scale on its own; the count is checked.
    fewer = dict(config, RUNNER_REPLICAS="1")
    assert "imageproc_runner-2" not in stack.service_instances(fewer)
    with pytest.raises(stack.StackError, match="IMAGEPROC_REPLICAS=0"):
        stack.service_instances(dict(stack.DEFAULTS, IMAGEPROC_REPLICAS="0"))


def test_replicas_left_from_a_bigger_count_are_still_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack, "PID_DIR", tmp_path)
    for name in ("imageproc-2", "imageproc-4", "imageproc-notes", "upload-2"):
        (tmp_path / f"{name}.pid").write_text("1\n")
    known = stack.known_instances(dict(stack.DEFAULTS))
    assert known[-2:] == ["imageproc-2", "imageproc-4"]  # what `up` stops and `down` too
    assert "imageproc-notes" not in known
    assert "upload-2" not in known


def test_one_start_or_stop_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack, "STACK_DIR", tmp_path)
    other = (
        "import fcntl, sys\n"
        "handle = open(sys.argv[1], 'a')\n"
        "try:\n"
        "    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    sys.exit(3)\n"
    )
    lock_file = str(tmp_path / "stack.lock")

    def another_process_may_lock() -> bool:
        run = subprocess.run([sys.executable, "-c", other, lock_file], timeout=DEADLINE)
        return run.returncode == 0

    with stack.stack_lock():
        with stack.stack_lock():  # reentrant: `up` holds it around ensure_infra's own
            assert not another_process_may_lock()
        assert not another_process_may_lock()  # still held by the outer one
    assert another_process_may_lock()


def test_stack_dir_comes_from_the_environment(tmp_path: Path) -> None:
    code = "import stack; print(stack.PID_DIR); print(stack.LOG_DIR)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=STACK_PY.parent,
        env={**os.environ, "STACK_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == [str(tmp_path / "pids"), str(tmp_path / "logs")]


# --------------------------------------------------------------------------- readiness


def test_readiness_reports_the_failing_checks() -> None:
    def answer(status: int, body: object) -> stack.HttpAnswer:
        return stack.HttpAnswer(status, json.dumps(body).encode())

    ready = {"status": "ready", "checks": {"broker": True, "s3": True}}
    assert stack.readiness(answer(200, ready)) == (True, "up")
    failing = {"status": "unavailable", "checks": {"broker": True, "s3": False, "couchdb": False}}
    assert stack.readiness(answer(503, failing)) == (False, "not ready (s3, couchdb failing)")
    assert stack.readiness(stack.HttpAnswer(503, b"<html>")) == (False, "not ready")
    assert stack.readiness(answer(500, {})) == (False, "HTTP 500")
    assert stack.readiness(None) == (False, "down")


# --------------------------------------------------------------------------- parking


def test_audit_runs_the_completeness_check_with_the_services_settings() -> None:
    config = dict(stack.DEFAULTS, COUCHDB_DB="from-config")
    argv, env = stack.tool_command("audit", ["--json"], config)
    assert argv == [str(stack.VENV_PYTHON), "-m", "provenancedb.audit", "--json"]
    assert env["COUCHDB_DB"] == "from-config"
    assert env["S3_OUTPUT_BUCKET"] == stack.DEFAULTS["S3_OUTPUT_BUCKET"]


def test_parking_runs_the_cli_with_the_services_settings() -> None:
    config = dict(stack.DEFAULTS, RABBITMQ_VHOST="from-config")
    argv, env = stack.tool_command("parking", ["republish", "--all", "--queue", "q"], config)
    assert argv == [
        str(stack.VENV_PYTHON),
        "-m",
        "messaging.parking",
        "republish",
        "--all",
        "--queue",
        "q",
    ]
    assert env["RABBITMQ_VHOST"] == "from-config"
    assert env["RABBITMQ_PASSWORD"] == stack.DEFAULTS["RABBITMQ_PASSWORD"]


@pytest.mark.parametrize(
    ("argv", "own", "passthrough"),
    [
        (["parking", "--queue", "q", "list"], ["parking"], ["--queue", "q", "list"]),
        (
            ["--env-file", "x", "parking", "show", "1"],
            ["--env-file", "x", "parking"],
            ["show", "1"],
        ),
        (["parking", "--", "-x"], ["parking"], ["--", "-x"]),
        (["audit", "--grace", "60"], ["audit"], ["--grace", "60"]),
        (
            ["supervise", "n", "--backoff", "1", "--", "sh", "--", "-c"],
            ["supervise", "n", "--backoff", "1"],
            ["sh", "--", "-c"],
        ),
        (["status"], ["status"], []),
    ],
)
def test_split_passthrough(argv: list[str], own: list[str], passthrough: list[str]) -> None:
    assert stack.split_passthrough(argv) == (own, passthrough)


# --------------------------------------------------------------------------- supervision


def test_backoff_delay_doubles_up_to_the_cap() -> None:
    delays = [stack.backoff_delay(attempt, 1.0, 30.0) for attempt in range(1, 9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert stack.backoff_delay(10_000, 1.0, 30.0) == 30.0


def test_service_stop_timeout_follows_the_drain_setting() -> None:
    assert stack.service_stop_timeout({"SHUTDOWN_TIMEOUT_SECONDS": "30"}) == 40.0
    assert stack.service_stop_timeout({"SHUTDOWN_TIMEOUT_SECONDS": "5"}) == 15.0
    assert stack.service_stop_timeout({}) == 40.0


DEADLINE = 15.0  # generous: the machine may be busy with other test suites
MARKER = "imagemesh-supervisor-test-child"


def wait_for(what: str, check: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """Poll `check` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


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
    """Start `stack.py supervise dummy [options] -- python -c SCRIPT` in its own session."""
    started: list[Supervised] = []

    def start(script: str, *options: str, name: str = "dummy") -> Supervised:
        stack_dir = tmp_path / f"stack{len(started)}"
        stack_dir.mkdir()
        with (stack_dir / "supervisor.out").open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(STACK_PY),
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
        "4 restarts",
        lambda: (found := events(sup.service_log, "service_restarted"))[3:] and found,
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
    first = wait_for("the child", sup.child_pid)
    os.kill(first, signal.SIGKILL)
    (restart,) = wait_for("a restart", lambda: events(sup.service_log, "service_restarted"))
    assert restart["signal"] == "SIGKILL"
    assert restart["exit_code"] is None
    assert restart["attempt"] == 1
    assert restart["delay_seconds"] == 0.05
    second = wait_for("the new child", sup.child_pid)
    assert second == restart["pid"] != first
    state = sup.state()
    assert state is not None
    assert state.restarts == 1

    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit() == 0
    wait_for("the child to be gone", lambda: gone(second))
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
    child = wait_for("the child", sup.child_pid)
    wait_for("the child's handler", lambda: "child ready" in sup.service_log.read_text())
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
    child = wait_for("the child", sup.child_pid)
    wait_for("the child's handler", lambda: "child ready" in sup.service_log.read_text())
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
        "3 restarts",
        lambda: (found := events(sup.service_log, "service_restarted"))[2:] and found,
    )
    assert [(r["attempt"], r["delay_seconds"]) for r in restarts[:3]] == [(1, 0.05)] * 3
    assert all(r["uptime_seconds"] >= 0.3 for r in restarts[:3])


def test_a_second_supervisor_for_the_same_service_refuses(
    supervise: Callable[..., Supervised],
) -> None:
    sup = supervise("import time\ntime.sleep(120)")
    wait_for("the child", sup.child_pid)
    second = subprocess.run(
        [sys.executable, str(STACK_PY), "supervise", "dummy", "--", "true"],
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


def test_status_row_of_a_supervised_service(
    supervise: Callable[..., Supervised], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = dict(stack.DEFAULTS, IMAGEPROC_OPS_PORT=str(port))
    script = NOT_READY_SERVER.replace("int(sys.argv[1])", str(port))
    sup = supervise(script, name="imageproc")
    monkeypatch.setattr(stack, "PID_DIR", sup.stack_dir / "pids")
    child = wait_for("the child", sup.child_pid)
    row = wait_for(
        "the 503",
        lambda: (r := stack._service_row("imageproc", config)).state != "down" and r,
    )
    assert row.pid == str(sup.proc.pid)
    assert row.child == str(child)
    assert row.restarts == "0"
    assert row.state == "not ready (s3 failing)"
    assert not row.ok
    assert stack.service_component("imageproc").pid() == sup.proc.pid  # `up` leaves it alone

    os.kill(child, signal.SIGKILL)
    wait_for("the restart", lambda: stack._service_row("imageproc", config).restarts == "1")
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit() == 0
    row = stack._service_row("imageproc", config)
    assert (row.pid, row.child, row.state) == ("-", "-", "down")
