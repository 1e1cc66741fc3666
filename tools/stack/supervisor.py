"""The supervisor: runs a service as its child and restarts it, with exponential back-off,
whenever it exits by itself (as compose's `restart: unless-stopped`), logging each restart
as one JSON line and publishing its state in `<service>.supervisor.json` for `status`."""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procs import proc_ppid

#: Restart back-off: 1 s, 2 s, 4 s ... capped; back to 1 s once a run lasted `RESET_AFTER`.
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
BACKOFF_RESET_AFTER = 60.0
#: A supervisor's SIGTERM -> SIGKILL grace for its service, beyond the service's own
#: SHUTDOWN_TIMEOUT_SECONDS (how long it drains in-flight work).
STOP_MARGIN = 10.0
#: Signals that stop a supervisor (and, forwarded, its service) instead of a restart.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Delay before restart number `attempt` (1, 2, ...) of a run of quick failures."""
    return min(maximum, initial * 2.0 ** min(max(attempt - 1, 0), 64))


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


@dataclass
class SupervisorState:
    """What a supervisor publishes in `<service>.supervisor.json` for `status`."""

    supervisor_pid: int
    child_pid: int | None = None
    restarts: int = 0
    attempt: int = 0
    next_start: float | None = None  # epoch seconds, while waiting out a back-off
    last_exit: dict[str, Any] | None = None


def read_supervisor_state(path: Path) -> SupervisorState | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return SupervisorState(**data)
    except (FileNotFoundError, ValueError, TypeError):
        return None


def supervised_child(state: SupervisorState | None, supervisor_pid: int) -> int | None:
    """The supervisor's live service process, if `state` names one."""
    if state is None or state.supervisor_pid != supervisor_pid or state.child_pid is None:
        return None
    return state.child_pid if proc_ppid(state.child_pid) == supervisor_pid else None


@dataclass
class Supervisor:
    """Runs `argv` as a child and restarts it, with back-off, whenever it exits by itself.

    SIGTERM/SIGINT (SIGHUP as SIGTERM) are forwarded to the child once; the supervisor then
    waits up to `stop_timeout` for it, SIGKILLs it if need be, and returns. The child runs in
    its own process group (so a signal to the supervisor's group reaches it only through the
    supervisor, exactly once) and gets SIGTERM if the supervisor dies (PR_SET_PDEATHSIG).
    Signals are blocked and taken with sigtimedwait: no handler runs at a random point.
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    service_log: Path
    state_path: Path
    backoff: float = BACKOFF_INITIAL
    backoff_max: float = BACKOFF_MAX
    reset_after: float = BACKOFF_RESET_AFTER
    stop_timeout: float = STOP_MARGIN + 30.0
    cwd: Path | None = None
    out: Any = None  # a text stream for the supervisor's own log (default: stdout)
    state: SupervisorState = field(init=False)

    def __post_init__(self) -> None:
        self.state = SupervisorState(supervisor_pid=os.getpid())

    # --- logging and state

    def log(self, level: str, event: str, *, to_service_log: bool = True, **fields: Any) -> None:
        record = {
            "timestamp": _utc_now(),
            "level": level,
            "logger": "supervisor",
            "service": self.name,
            "event": event,
            **fields,
        }
        line = json.dumps(record) + "\n"
        out = self.out if self.out is not None else sys.stdout
        out.write(line)
        out.flush()
        if to_service_log:
            with self.service_log.open("a", encoding="utf-8") as log:
                log.write(line)

    def save_state(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(self.state.__dict__) + "\n", encoding="utf-8")
        os.replace(tmp, self.state_path)

    # --- the child

    def _start(self) -> subprocess.Popen[bytes] | None:
        self.service_log.parent.mkdir(parents=True, exist_ok=True)
        libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork, used after it
        parent = os.getpid()

        def in_child() -> None:  # between fork and exec: async-signal-safe calls only
            os.setpgid(0, 0)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [*STOP_SIGNALS, signal.SIGCHLD])
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
            if os.getppid() != parent:  # the supervisor died before prctl
                os._exit(1)

        try:
            with self.service_log.open("ab") as log:
                return subprocess.Popen(
                    list(self.argv),
                    cwd=self.cwd,
                    env=dict(self.env),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=in_child,
                )
        except (OSError, subprocess.SubprocessError) as exc:
            self.log("error", "service_start_failed", error=str(exc), argv=list(self.argv))
            return None

    def _watch(self, child: subprocess.Popen[bytes]) -> signal.Signals | None:
        """Wait for the child to exit; the stop signal if one came meanwhile."""
        stop: signal.Signals | None = None
        kill_at: float | None = None
        while child.poll() is None:
            wait = 1.0 if kill_at is None else max(0.0, min(1.0, kill_at - time.monotonic()))
            info = signal.sigtimedwait([*STOP_SIGNALS, signal.SIGCHLD], wait)
            if info is not None and info.si_signo in STOP_SIGNALS and stop is None:
                stop = signal.Signals(info.si_signo)
                forward = stop if stop in (signal.SIGTERM, signal.SIGINT) else signal.SIGTERM
                self.log(
                    "info",
                    "service_stopping",
                    signal=stop.name,
                    forwarded=forward.name,
                    pid=child.pid,
                    timeout_seconds=self.stop_timeout,
                )
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(forward)
                kill_at = time.monotonic() + self.stop_timeout
            if kill_at is not None and time.monotonic() >= kill_at and child.poll() is None:
                self.log(
                    "warning", "service_killed", pid=child.pid, after_seconds=self.stop_timeout
                )
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                child.wait()
        return stop

    def _sleep(self, seconds: float) -> signal.Signals | None:
        """Wait out a back-off; the stop signal if one ends it early."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            info = signal.sigtimedwait(list(STOP_SIGNALS), remaining)
            if info is not None:
                return signal.Signals(info.si_signo)
        return None

    def run(self) -> int:
        """Run the child, restarting it, until a stop signal; 0 then."""
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, [*STOP_SIGNALS, signal.SIGCHLD])
        self.log(
            "info",
            "supervisor_started",
            to_service_log=False,
            pid=os.getpid(),
            argv=list(self.argv),
            backoff_seconds=self.backoff,
            backoff_max_seconds=self.backoff_max,
            reset_after_seconds=self.reset_after,
        )
        restart: dict[str, Any] | None = None  # the exit that the next start restarts from
        try:
            while True:
                started = time.monotonic()
                exit_info = self._run_child(restart)
                if exit_info is None:
                    return 0
                restart = self._plan_restart(exit_info, time.monotonic() - started)
                stop = self._sleep(restart["delay_seconds"])
                if stop is not None:
                    self.log("info", "service_stopped", signal=stop.name, during="back-off")
                    return 0
        finally:
            self.state_path.unlink(missing_ok=True)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _run_child(self, restart: dict[str, Any] | None) -> dict[str, Any] | None:
        """Start the child (a restart after `restart`) and wait for it: how it exited, or
        None when a stop signal ended it."""
        child = self._start()
        self.state.child_pid = child.pid if child is not None else None
        self.state.next_start = None
        self.save_state()
        if child is None:
            return {"exit_code": None, "signal": None, "start_failed": True}
        if restart is None:
            self.log("info", "service_started", pid=child.pid)
        else:
            self.state.restarts += 1
            self.save_state()
            self.log(
                "warning",
                "service_restarted",
                pid=child.pid,
                restarts=self.state.restarts,
                **restart,
            )
        stop = self._watch(child)
        code = child.returncode
        if stop is not None:
            self.log("info", "service_stopped", exit_code=code, signal=stop.name)
            return None
        return {
            "exit_code": code if code >= 0 else None,
            "signal": _signal_name(-code) if code < 0 else None,
        }

    def _plan_restart(self, exit_info: dict[str, Any], uptime: float) -> dict[str, Any]:
        """Publish the exit and the back-off before the next start; what that start logs."""
        if uptime >= self.reset_after:
            self.state.attempt = 0
        self.state.attempt += 1
        delay = backoff_delay(self.state.attempt, self.backoff, self.backoff_max)
        restart = {
            **exit_info,
            "attempt": self.state.attempt,
            "delay_seconds": delay,
            "uptime_seconds": round(uptime, 3),
        }
        self.state.child_pid = None
        self.state.next_start = time.time() + delay
        self.state.last_exit = restart
        self.save_state()
        self.log("warning", "service_exited", restart_in_seconds=delay, **exit_info)
        return restart
