"""The four services: the environment each instance runs with, starting them under their
supervisors, waiting for them to be ready, and stopping them (they drain in parallel)."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Mapping, Sequence

from .components import (
    SERVICES,
    Component,
    check_port_free,
    failure,
    instance_port,
    known_instances,
    service_component,
    service_instances,
    service_of,
    service_ready_url,
    supervisor_log_path,
    supervisor_state_path,
)
from .config import Config
from .errors import StackError, say
from .httpclient import wait_http_ok
from .infra.couchdb import COUCH_ADMIN_ONLY, COUCH_AUDITOR_ONLY
from .infra.rabbitmq import service_rabbit_user
from .procs import read_pid, spawn, stop_pids
from .supervisor import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    BACKOFF_RESET_AFTER,
    STOP_MARGIN,
    Supervisor,
    read_supervisor_state,
)

SERVICE_TIMEOUT = 90.0
#: `up` stops waiting for a service whose supervisor restarted it this often meanwhile.
CRASH_LOOP_RESTARTS = 3


def service_env(config: Config, instance: str | None = None) -> dict[str, str]:
    """The environment a service instance (or an operator tool, `instance=None`) runs with.
    A service connects to the broker as its own user, with only its own permissions; a
    replica listens on its own port."""
    env = dict(os.environ)
    env.update(config.values)
    service = None if instance is None else service_of(instance)
    # CouchDB's admin provisions (provision_couchdb); only operator tools read as the auditor.
    drop = COUCH_ADMIN_ONLY + (COUCH_AUDITOR_ONLY if service in SERVICES else ())
    for name in drop:
        env.pop(name, None)
    if instance is not None and service in SERVICES:
        env[SERVICES[service]] = str(instance_port(config, instance))
        env["RABBITMQ_USER"], env["RABBITMQ_PASSWORD"] = service_rabbit_user(config, service)
        env["AMQP_DECLARE_EXCHANGES"] = "false"  # provisioned by the administrator
    env.setdefault("PYTHONUNBUFFERED", "1")
    # glibc's per-thread arenas let a pyvips worker's RSS double over many images.
    env.setdefault("MALLOC_ARENA_MAX", "2")
    return env


def service_stop_timeout(config: Config) -> float:
    """How long a supervisor lets its service drain after SIGTERM before SIGKILL."""
    return config.shutdown_timeout + STOP_MARGIN


def start_supervised(config: Config, name: str, env: Mapping[str, str]) -> int:
    """Start `tools/stack supervise NAME` detached (it runs the service); returns its PID."""
    paths = config.paths
    return spawn(
        [sys.executable, str(paths.entry), "supervise", name],
        {**env, "STACK_DIR": str(paths.stack_dir)},
        supervisor_log_path(paths, name),
        service_component(config, name).pid_path,
        cwd=paths.root,
    )


def _crash_looping(component: Component) -> bool:
    state = read_supervisor_state(supervisor_state_path(component.paths, component.name))
    return state is not None and state.restarts >= CRASH_LOOP_RESTARTS


def _starting(component: Component) -> bool:
    """Still worth waiting for: its supervisor runs and it has not crashed over and over."""
    return component.is_running() and not _crash_looping(component)


def ensure_services(config: Config, timeout: float = SERVICE_TIMEOUT) -> None:
    """Start every configured instance that is not running (stopping surplus replicas),
    then wait for all of them to be ready."""
    wanted = service_instances(config)
    surplus = [name for name in known_instances(config) if name not in wanted]
    if surplus:  # replicas of a bigger IMAGEPROC_REPLICAS than this one
        stop_instances(config, surplus)
    pending: list[Component] = []
    for name in wanted:
        component = service_component(config, name)
        if component.pid() is None:
            check_port_free(component, "127.0.0.1", instance_port(config, name))
            # The supervisor derives the instance's own settings (its port) from these.
            start_supervised(config, name, service_env(config, service_of(name)))
        pending.append(component)
    deadline = time.monotonic() + timeout
    for component in pending:
        _wait_ready(config, component, deadline)
        say(f"{component.name} ready")


def _wait_ready(config: Config, component: Component, deadline: float) -> None:
    try:
        wait_http_ok(
            service_ready_url(config, component.name),
            max(1.0, deadline - time.monotonic()),
            alive=functools.partial(_starting, component),
        )
    except StackError as exc:
        message = str(exc)
        if _crash_looping(component):
            message = (
                f"exited {CRASH_LOOP_RESTARTS + 1} times while starting; its supervisor "
                "keeps restarting it with back-off (`make down` stops it)"
            )
        raise failure(component, message) from None


def stop_services(config: Config) -> None:
    """SIGTERM every service instance's supervisor at once (they drain in parallel), then
    wait."""
    stop_instances(config, known_instances(config))


def stop_instances(config: Config, names: Sequence[str]) -> None:
    running: list[int] = []
    for name in names:
        pid = service_component(config, name).pid()
        if pid is not None:
            say(f"stopping {name} (pid {pid})")
            running.append(pid)
    # A supervisor gives its service SHUTDOWN_TIMEOUT_SECONDS + a margin, then SIGKILLs it.
    stop_pids(running, service_stop_timeout(config) + STOP_MARGIN)
    for name in names:
        service_component(config, name).pid_path.unlink(missing_ok=True)
        supervisor_state_path(config.paths, name).unlink(missing_ok=True)


def supervise(
    config: Config,
    name: str,
    command: Sequence[str] = (),
    *,
    backoff: float = BACKOFF_INITIAL,
    backoff_max: float = BACKOFF_MAX,
    reset_after: float = BACKOFF_RESET_AFTER,
    stop_timeout: float | None = None,
) -> int:
    """`supervise NAME`: run the service NAME (or `command`) under a Supervisor, in front.
    Its pid file names this process, as `status` and `down` expect."""
    component = service_component(config, name)
    other = component.pid()
    if other is not None and other != os.getpid():
        raise StackError(f"{name} is already supervised by pid {other}")
    config.paths.pid_dir.mkdir(parents=True, exist_ok=True)
    component.pid_path.write_text(f"{os.getpid()}\n", encoding="utf-8")
    try:
        return Supervisor(
            name=name,
            argv=list(command) or [str(config.paths.venv_python), "-m", service_of(name)],
            env=service_env(config, name),
            service_log=component.log_path,
            state_path=supervisor_state_path(config.paths, name),
            backoff=backoff,
            backoff_max=backoff_max,
            reset_after=reset_after,
            stop_timeout=service_stop_timeout(config) if stop_timeout is None else stop_timeout,
            cwd=config.paths.root,
        ).run()
    finally:
        if read_pid(component.pid_path) == os.getpid():
            component.pid_path.unlink(missing_ok=True)
