"""Processes the stack starts: which PID is ours (/proc), starting them detached, stopping
them, and waiting on a condition with a deadline."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import StackError, say

STOP_TIMEOUT = 30.0
POLL = 0.2


#: The processes this process started: their PIDs are ours without a /proc check.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Signature:
    """What /proc/<pid>/cmdline must look like for a PID to be one we started.

    Every string of `contains` is a substring of some argument, and `args` (if given) occurs
    as a contiguous run of whole arguments. `environ` pairs must be in /proc/<pid>/environ
    (checked when that is readable; it is for our own processes).
    """

    contains: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    environ: tuple[tuple[str, str], ...] = ()


def environ_matches(environ: Mapping[str, str] | None, signature: Signature) -> bool:
    if environ is None:  # not readable: rely on the command line alone
        return True
    return all(environ.get(key) == value for key, value in signature.environ)


def cmdline_matches(cmdline: Sequence[str], signature: Signature) -> bool:
    if not cmdline:
        return False
    for needle in signature.contains:
        if not any(needle in arg for arg in cmdline):
            return False
    run = list(signature.args)
    if run:
        width = len(run)
        return any(list(cmdline[i : i + width]) == run for i in range(len(cmdline) - width + 1))
    return True


def proc_cmdline(pid: int) -> list[str] | None:
    """The argv of a live process, or None (no such process, or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw:
        return None  # zombie or kernel thread
    return [part.decode("utf-8", "replace") for part in raw.rstrip(b"\0").split(b"\0")]


def proc_environ(pid: int) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    pairs = (part.decode("utf-8", "replace").partition("=") for part in raw.split(b"\0"))
    return {key: value for key, _, value in pairs if key}


def read_pid(pid_path: Path) -> int | None:
    try:
        text = pid_path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    try:
        pid = int(text.split()[0]) if text else 0
    except ValueError:
        return None
    return pid if pid > 0 else None


def running_pid(pid_path: Path, signature: Signature) -> int | None:
    """The PID in `pid_path` if that process is alive and is the one we started."""
    pid = read_pid(pid_path)
    if pid is None:
        return None
    child = _children.get(pid)
    if child is not None:
        # Started by this process: between fork and exec its cmdline is still ours.
        return pid if child.poll() is None else None
    cmdline = proc_cmdline(pid)
    if cmdline is None or not cmdline_matches(cmdline, signature):
        return None
    if signature.environ and not environ_matches(proc_environ(pid), signature):
        return None
    return pid


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    pid_path: Path,
    cwd: Path,
) -> int:
    """Start a detached process (new session), output appended to `log_path`, PID written."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%F %T')} start: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    pid_path.write_text(f"{proc.pid}\n", encoding="utf-8")
    return proc.pid


def pid_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    return proc_cmdline(pid) is not None


def proc_ppid(pid: int) -> int | None:
    """The parent PID of a live, non-zombie process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the command name may contain spaces
    if len(fields) < 2 or fields[0] in ("Z", "X"):
        return None
    return int(fields[1])


def send_signal(pid: int, sig: signal.Signals) -> None:
    """Signal `pid`'s process group if it leads one (a process we spawned), else `pid`."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop_pids(pids: Sequence[int], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM all of `pids` at once, wait for them, then SIGKILL what is left."""
    for pid in pids:
        send_signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            for pid in pids:
                if pid_alive(pid):
                    say(f"pid {pid} ignored SIGTERM for {timeout:.0f}s, sending SIGKILL")
                    send_signal(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 10
            while any(pid_alive(pid) for pid in pids) and time.monotonic() < kill_deadline:
                time.sleep(POLL)
            break
        time.sleep(POLL)
    for pid in pids:
        child = _children.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)


def stop_pid(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM (to the process group if the process leads one), wait, then SIGKILL."""
    stop_pids([pid], timeout)


def tail(path: Path, lines: int = 30) -> str:
    try:
        content = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(content[-lines:])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    *,
    alive: Callable[[], bool] | None = None,
    interval: float = POLL,
) -> None:
    """Poll `check` until true; StackError at the deadline or when `alive` turns false."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if alive is not None and not alive():
            raise StackError(f"{what}: the process exited")
        if time.monotonic() > deadline:
            raise StackError(f"{what}: not ready after {timeout:.0f}s")
        time.sleep(interval)
