"""tools/stack's process handling: which PID is ours (/proc command lines and
environments), pid files, log tails, waiting with a deadline, the stack lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import stack

DEADLINE = 15.0


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (["/repo/.venv/bin/python", "/repo/tools/stack", "supervise", "upload"], True),
        (["python3", "tools/stack", "--env-file", ".env", "supervise", "upload"], True),
        # Supervisors started by the stack tool before it was a package: still ours.
        (["/repo/.venv/bin/python", "/repo/tools/stack.py", "supervise", "upload"], True),
        (["python3", "tools/stack.py", "--env-file", ".env", "supervise", "upload"], True),
        (["python3", "/repo/tools/stack", "supervise", "upload_other"], False),
        (["python3", "/repo/tools/stack", "supervise", "imageproc"], False),
        (["python3", "/repo/tools/other.py", "supervise", "upload"], False),
        (["/repo/.venv/bin/python", "-m", "upload"], False),  # an alternative, see below
        ([], False),
    ],
)
def test_cmdline_matches_service_supervisor(
    config: stack.Config, cmdline: list[str], expected: bool
) -> None:
    signature = stack.service_component(config, "upload").signature
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
def test_cmdline_matches_unsupervised_service(
    config: stack.Config, cmdline: list[str], expected: bool
) -> None:
    # A service started by an older stack tool (no supervisor) is still ours, for `down`.
    (legacy,) = stack.service_component(config, "upload").alternatives
    assert stack.cmdline_matches(cmdline, legacy) is expected


def test_cmdline_matches_pouchdb(config: stack.Config) -> None:
    signature = stack.couch_component(config).signature
    data = str(config.paths.couch_dir / "data")
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


def test_one_start_or_stop_at_a_time(paths: stack.Paths) -> None:
    other = (
        "import fcntl, sys\n"
        "handle = open(sys.argv[1], 'a')\n"
        "try:\n"
        "    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    sys.exit(3)\n"
    )

    def another_process_may_lock() -> bool:
        argv = [sys.executable, "-c", other, str(paths.lock_file)]
        return subprocess.run(argv, timeout=DEADLINE).returncode == 0

    with stack.stack_lock(paths):
        with stack.stack_lock(paths):  # reentrant: `up` holds it around ensure_infra's own
            assert not another_process_may_lock()
        assert not another_process_may_lock()  # still held by the outer one
    assert another_process_may_lock()
