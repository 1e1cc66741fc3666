"""`status` (one row per component: pid, the supervised child, restarts, readiness),
the URLs `up` prints, and the log files `logs` follows."""

from __future__ import annotations

import contextlib
import time
import urllib.error
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .components import (
    Component,
    infra_components,
    known_instances,
    prometheus_component,
    service_component,
    service_ready_url,
    supervisor_state_path,
)
from .config import Config
from .httpclient import HttpAnswer, answered, http, http_ok
from .observability import prometheus_url
from .procs import cmdline_matches, port_open, proc_cmdline
from .supervisor import read_supervisor_state, supervised_child


@dataclass(frozen=True)
class StatusRow:
    component: str
    pid: str
    child: str
    restarts: str
    state: str
    probe: str
    ok: bool


def _check_passed(value: Any) -> bool:
    if isinstance(value, dict):
        value = value.get("ok", value.get("status"))
    return value is True or value in ("ok", "ready", "up")


def readiness(answer: HttpAnswer | None) -> tuple[bool, str]:
    """(ready, state) from a /readyz answer (None: nothing answered)."""
    if answer is None:
        return False, "down"
    if answer.status == 200:
        return True, "up"
    failing: list[str] = []
    with contextlib.suppress(ValueError, AttributeError):
        checks = answer.json().get("checks") or {}
        failing = [name for name, value in checks.items() if not _check_passed(value)]
    if answer.status == 503:
        return False, f"not ready ({', '.join(failing)} failing)" if failing else "not ready"
    return False, f"HTTP {answer.status}"


def probe_readiness(url: str, timeout: float = 6.0) -> tuple[bool, str]:
    """GET /readyz; a service gives each check up to 3 s (servicekit CHECK_TIMEOUT)."""
    try:
        return readiness(http("GET", url, timeout=timeout))
    except OSError as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):
            return False, f"no answer in {timeout:.0f}s"
        return readiness(None)


def service_row(config: Config, name: str) -> StatusRow:
    """An instance's row: its supervisor's pid, the service process, restarts, readiness."""
    component = service_component(config, name)
    url = service_ready_url(config, name)
    pid = component.pid()
    ready, state = probe_readiness(url)
    child = restarts = "-"
    if pid is not None:
        supervisor = read_supervisor_state(supervisor_state_path(config.paths, name))
        if supervisor is not None and supervisor.supervisor_pid == pid:
            restarts = str(supervisor.restarts)
            child_pid = supervised_child(supervisor, pid)
            if child_pid is not None:
                child = str(child_pid)
            elif supervisor.next_start is not None:
                wait = max(0.0, supervisor.next_start - time.time())
                ready, state = False, f"restarting (attempt {supervisor.attempt}, in {wait:.0f}s)"
            else:
                ready, state = False, "starting"
        elif cmdline_matches(proc_cmdline(pid) or [], component.signature):
            ready, state = False, "starting"  # the supervisor has not started the service yet
        else:
            state += " (unsupervised)"  # started by an older stack tool, without a supervisor
    pid_text = str(pid) if pid is not None else "-"
    return StatusRow(name, pid_text, child, restarts, state, url, ready)


def _server_row(component: Component, probe: str, ok: bool) -> StatusRow:
    pid = component.pid()
    pid_text = str(pid) if pid is not None else "-"
    return StatusRow(component.name, pid_text, "-", "-", "up" if ok else "down", probe, ok)


def _infra_rows(config: Config) -> list[StatusRow]:
    probes: dict[str, str] = {
        "epmd": "tcp://127.0.0.1:4369",
        "rabbitmq": f"http://127.0.0.1:{config.rabbitmq_management_port}/",
        "couchdb": f"{config.couchdb_url}/",
        "s3": config.s3_url.rstrip("/") + "/",
    }
    rows: list[StatusRow] = []
    for component in infra_components(config):
        probe = probes[component.name]
        if probe.startswith("tcp://"):
            ok = port_open("127.0.0.1", 4369)
        elif component.name == "s3":
            ok = answered(probe)
        else:
            ok = http_ok(probe)
        rows.append(_server_row(component, probe, ok))
    return rows


def observability_rows(config: Config) -> list[StatusRow]:
    """Prometheus' status row, once `up-observability` started it (it is optional)."""
    component = prometheus_component(config)
    if not component.pid_path.exists():
        return []
    probe = f"{prometheus_url(config)}/-/ready"
    return [_server_row(component, probe, http_ok(probe))]


def status_rows(config: Config) -> list[StatusRow]:
    rows = _infra_rows(config)
    rows.extend(service_row(config, name) for name in known_instances(config))
    rows.extend(observability_rows(config))
    return rows


def print_status(config: Config) -> bool:
    """The table; True if every component is ours (has a pid) and up."""
    rows = status_rows(config)
    header = ("component", "pid", "child", "restarts", "state", "probe")
    cells = [header] + [(r.component, r.pid, r.child, r.restarts, r.state, r.probe) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return all(r.pid != "-" and r.ok for r in rows)


def print_urls(config: Config) -> None:
    couch = urllib.parse.urlsplit(config["COUCHDB_URL"])
    s3 = urllib.parse.urlsplit(config.s3_url)
    auditor, admin = config.couchdb_auditor, config.couchdb_admin
    print(
        "\nimagemesh is up:\n"
        f"  upload form      http://localhost:{config.port('UPLOAD_PORT')}\n"
        f"  RabbitMQ console http://localhost:{config.rabbitmq_management_port}  "
        f"({config['RABBITMQ_USER']} / {config['RABBITMQ_PASSWORD']})\n"
        f"  Fauxton          http://localhost:{couch.port or 5984}/_utils  "
        f"({auditor[0]} / {auditor[1]} reads; admin {admin[0]} / {admin[1]})\n"
        f"  S3 (moto)        http://localhost:{s3.port or 9000}  "
        f"(buckets {config['S3_INPUT_BUCKET']}, {config['S3_OUTPUT_BUCKET']})\n"
        f"  logs             {config.paths.log_dir}  (make logs)\n",
        flush=True,
    )


def log_files(config: Config, name: str | None = None) -> Iterator[Path]:
    log_dir = config.paths.log_dir
    if name is not None:
        yield log_dir / f"{name}.log"
        return
    yield from sorted(log_dir.glob("*.log"))
