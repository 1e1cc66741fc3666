"""The whole stack at once: `infra` (start, wait for and provision the servers), `up`
(and the services), `down` (everything the pid files name)."""

from __future__ import annotations

import time

from .components import Component, infra_components, prometheus_component
from .config import Config
from .errors import say
from .infra.couchdb import provision_couchdb, start_couch, wait_couch
from .infra.rabbitmq import provision_rabbitmq, provision_service_users, start_rabbit, wait_rabbit
from .infra.s3 import provision_s3, start_s3, wait_s3
from .lock import stack_lock
from .procs import STOP_TIMEOUT, stop_pid
from .services import ensure_services, stop_services


def ensure_infra(config: Config) -> None:
    """Start RabbitMQ, PouchDB Server and moto unless running, wait, and provision them."""
    with stack_lock(config.paths):
        _ensure_infra(config)


def _ensure_infra(config: Config) -> None:
    paths = config.paths
    for directory in (paths.log_dir, paths.pid_dir, paths.rabbit_dir, paths.couch_dir):
        directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # Start all three, then wait: their start-ups overlap.
    new = {
        "rabbitmq": start_rabbit(config),
        "couchdb": start_couch(config),
        "s3": start_s3(config),
    }
    wait_s3(config)
    provision_s3(config)
    wait_couch(config)
    provision_couchdb(config)
    wait_rabbit(config)
    provision_rabbitmq(config)
    provision_service_users(config)
    begun = [name for name, was_started in new.items() if was_started]
    detail = f"started {', '.join(begun)}" if begun else "already running"
    say(f"infrastructure ready in {time.monotonic() - started:.1f}s ({detail})")


def up(config: Config, services: bool = True) -> None:
    """The servers, then (with `services`) the services; no `down` in between."""
    with stack_lock(config.paths):
        ensure_infra(config)
        if services:
            ensure_services(config)


def stop_component(component: Component, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the process the pid file names (if it is ours); remove the pid file."""
    pid = component.pid()
    if pid is not None:
        say(f"stopping {component.name} (pid {pid})")
        stop_pid(pid, timeout)
    component.pid_path.unlink(missing_ok=True)
    return pid is not None


def down(config: Config) -> None:
    """The services (in parallel), Prometheus, then the servers; epmd last (RabbitMQ needs
    it to shut down cleanly)."""
    with stack_lock(config.paths):
        stop_services(config)
        stop_component(prometheus_component(config))
        components = infra_components(config)
        for component in components[1:] + components[:1]:
            stop_component(component)
