#!/usr/bin/env python3
"""imagemesh local stack: RabbitMQ, a CouchDB-compatible server, an S3 server and the services.

Everything runs on loopback, without containers, and keeps its state under `.stack/`
(or the directory STACK_DIR names, e.g. for a second, private set of services):

    .stack/rabbitmq/   node data (mnesia), logs, generated rabbitmq.conf, enabled_plugins
    .stack/couchdb/    PouchDB Server data, its config.json and log
    .stack/prometheus/ generated prometheus.yml and its data (optional: up-observability)
    .stack/logs/       one <component>.log per process we start (+ <service>.supervisor.log)
    .stack/pids/       one <component>.pid per process we start (+ <service>.supervisor.json)

Sub-commands: deps [--test], infra, up, up-observability, down, status, logs [NAME],
parking [ARGS...], supervise NAME [-- CMD...].

Each service runs under `supervise`, a small supervisor (this file, as its own process) that
restarts it with exponential back-off when it exits by itself, as compose's
`restart: unless-stopped` does, and logs each restart as one JSON line. Its pid file holds
the supervisor's pid: SIGTERM to the supervisor drains and stops the service, then it exits.

Standard library only, so `deps` runs with a bare `python3` before the virtualenv exists;
bucket provisioning imports boto3 lazily (run that with `.venv/bin/python`), and CouchDB
provisioning runs `.venv/bin/python -m provenancedb.migrate`.
The test suite imports this module (`sys.path.insert(0, "tools"); import stack`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime
import fcntl
import functools
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STACK_SCRIPT = Path(__file__).resolve()
ROOT = STACK_SCRIPT.parent.parent
STACK_DIR = Path(os.environ.get("STACK_DIR") or ROOT / ".stack").absolute()
LOG_DIR = STACK_DIR / "logs"
PID_DIR = STACK_DIR / "pids"
RABBIT_DIR = STACK_DIR / "rabbitmq"
RABBIT_STARTUP_LOG = RABBIT_DIR / "log" / "startup.log"
COUCH_DIR = STACK_DIR / "couchdb"
TOOLS_DIR = ROOT / "tools"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
POUCHDB_SERVER = TOOLS_DIR / "node_modules" / ".bin" / "pouchdb-server"
MOTO_SERVER = TOOLS_DIR / "moto_server_keepalive.py"
RABBIT_SBIN = Path("/usr/lib/rabbitmq/bin")

#: Local defaults; `.env` (or `.env.example`) and then the real environment override them.
DEFAULTS: dict[str, str] = {
    "RABBITMQ_HOST": "127.0.0.1",
    "RABBITMQ_PORT": "5672",
    "RABBITMQ_USER": "imagemesh",
    "RABBITMQ_PASSWORD": "imagemesh-dev",
    # Each service's own broker user (least privilege); development-only passwords.
    "RABBITMQ_UPLOAD_PASSWORD": "imagemesh-dev",
    "RABBITMQ_IMAGEPROC_RUNNER_PASSWORD": "imagemesh-dev",
    "RABBITMQ_IMAGEPROC_PASSWORD": "imagemesh-dev",
    "RABBITMQ_PROVENANCEDB_PASSWORD": "imagemesh-dev",
    "RABBITMQ_VHOST": "imagemesh",
    "RABBITMQ_MANAGEMENT_PORT": "15672",
    "RABBITMQ_NODENAME": "imagemesh@localhost",
    "S3_URL": "http://127.0.0.1:9000",
    "S3_ACCESS_KEY": "imagemesh-dev",
    "S3_SECRET_KEY": "imagemesh-dev-secret",
    "S3_REGION": "us-east-1",
    "S3_INPUT_BUCKET": "imagemesh-input",
    "S3_OUTPUT_BUCKET": "imagemesh-output",
    "COUCHDB_URL": "http://127.0.0.1:5984",
    # provenancedb's own user (the writer), the auditor (reads) and the server admin (only
    # provisioning: `provision_couchdb`); development-only passwords.
    "COUCHDB_USER": "provenancedb",
    "COUCHDB_PASSWORD": "imagemesh-dev",
    "COUCHDB_AUDITOR_USER": "auditor",
    "COUCHDB_AUDITOR_PASSWORD": "imagemesh-dev",
    "COUCHDB_ADMIN_USER": "admin",
    "COUCHDB_ADMIN_PASSWORD": "imagemesh-dev",
    "COUCHDB_DB": "provenance",
    "UPLOAD_PORT": "8000",
    "RUNNER_OPS_PORT": "8101",
    "IMAGEPROC_OPS_PORT": "8102",
    "PROVENANCEDB_OPS_PORT": "8103",
    "HTTP_HOST": "127.0.0.1",
    "PROMETHEUS_PORT": "9090",
}

APT_PACKAGES = ("rabbitmq-server",)
# For the test suite: the browser tests' Chromium, and real photographs (16 MB) for the
# image-processing golden tests.
APT_TEST_PACKAGES = ("chromium", "chromium-driver", "lomiri-wallpapers-16.04")

RABBIT_TIMEOUT = 120.0
COUCH_TIMEOUT = 60.0
S3_TIMEOUT = 60.0
SERVICE_TIMEOUT = 90.0
#: `up` stops waiting for a service whose supervisor restarted it this often meanwhile.
CRASH_LOOP_RESTARTS = 3
STOP_TIMEOUT = 30.0
POLL = 0.2


class StackError(RuntimeError):
    """A component could not be installed, started, provisioned or stopped."""


def say(message: str) -> None:
    print(f"stack: {message}", flush=True)


# --------------------------------------------------------------------------- configuration


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        if value[0] == '"':
            inner = inner.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        return inner
    # Unquoted: an inline comment starts at " #".
    hash_at = value.find(" #")
    if hash_at >= 0:
        value = value[:hash_at]
    return value.strip()


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse `KEY=VALUE` lines: `#` comments, blank lines, optional `export `, quotes."""
    result: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").isalnum() or key[0].isdigit():
            continue
        result[key] = _unquote(value.strip())
    return result


def default_env_file(root: Path = ROOT) -> Path | None:
    for name in (".env", ".env.example"):
        candidate = root / name
        if candidate.is_file():
            return candidate
    return None


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Settings: DEFAULTS < dotenv file (`.env`, else `.env.example`) < real environment."""
    env = os.environ if environ is None else environ
    file_path = Path(path) if path is not None else default_env_file()
    config = dict(DEFAULTS)
    if file_path is not None and file_path.is_file():
        config.update(parse_dotenv(file_path.read_text(encoding="utf-8")))
    for key in list(config):
        if key in env:
            config[key] = env[key]
    return config


def _port(config: Mapping[str, str], key: str) -> int:
    try:
        return int(config[key])
    except (KeyError, ValueError) as exc:
        raise StackError(f"setting {key} must be a port number, got {config.get(key)!r}") from exc


def _url_port(url: str, default: int) -> int:
    return urllib.parse.urlsplit(url).port or default


# --------------------------------------------------------------------------- processes


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


_children: dict[int, subprocess.Popen[bytes]] = {}


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    pid_path: Path,
    cwd: Path = ROOT,
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


def _send(pid: int, sig: signal.Signals) -> None:
    """Signal `pid`'s process group if it leads one (a process we spawned), else `pid`."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop_pids(pids: Sequence[int], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM all of `pids` at once, wait for them, then SIGKILL what is left."""
    for pid in pids:
        _send(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            for pid in pids:
                if pid_alive(pid):
                    say(f"pid {pid} ignored SIGTERM for {timeout:.0f}s, sending SIGKILL")
                    _send(pid, signal.SIGKILL)
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


# --------------------------------------------------------------------------- HTTP


@dataclass
class HttpAnswer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


def http(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    auth: tuple[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    accept: str = "application/json",
    timeout: float = 5.0,
) -> HttpAnswer:
    """One HTTP request; any status is an answer, connection failures raise OSError.

    JSON is asked for by default: PouchDB Server answers text/plain otherwise.
    """
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Accept", accept)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpAnswer(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return HttpAnswer(exc.code, exc.read(), dict(exc.headers))


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


def http_ok(url: str, auth: tuple[str, str] | None = None) -> bool:
    try:
        return http("GET", url, auth=auth, accept="*/*", timeout=2.0).status == 200
    except OSError:
        return False


def wait_http_ok(
    url: str,
    timeout: float,
    *,
    auth: tuple[str, str] | None = None,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Wait until `GET url` answers 200."""
    wait_until(f"GET {url}", lambda: http_ok(url, auth), timeout, alive=alive)


def _answered(url: str) -> bool:
    try:
        http("GET", url, accept="*/*", timeout=2.0)
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- dependencies


def _sudo() -> list[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo"]
    raise StackError("installing system packages needs root (or sudo)")


def apt_missing(packages: Sequence[str]) -> list[str]:
    missing: list[str] = []
    for package in packages:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or "install ok installed" not in result.stdout:
            missing.append(package)
    return missing


def apt_install(packages: Sequence[str]) -> None:
    missing = apt_missing(packages)
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise StackError(f"missing packages {missing} and no apt-get to install them")
    say(f"apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sudo = _sudo()
    subprocess.run([*sudo, "apt-get", "update"], check=True, env=env)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "--no-install-recommends", *missing],
        check=True,
        env=env,
    )


def npm_tools_current() -> bool:
    """tools/node_modules matches tools/package-lock.json (as of the last `npm ci`)."""
    installed_lock = TOOLS_DIR / "node_modules" / ".package-lock.json"
    lock = TOOLS_DIR / "package-lock.json"
    if not POUCHDB_SERVER.exists() or not installed_lock.exists():
        return False
    return installed_lock.stat().st_mtime >= lock.stat().st_mtime


def npm_install() -> None:
    if npm_tools_current():
        return
    if not shutil.which("npm"):
        apt_install(("nodejs", "npm"))
    say("npm ci --prefix tools (PouchDB Server)")
    subprocess.run(
        ["npm", "ci", "--prefix", str(TOOLS_DIR), "--no-audit", "--no-fund"],
        check=True,
        cwd=ROOT,
    )


def ensure_deps(test: bool = False, pip: bool = False) -> None:
    """Install what the local stack (and, with `test`, the test suite) needs."""
    if pip:  # only to bootstrap uv on a machine whose python3 has no pip
        apt_install(("python3-pip",))
        return
    apt_install(APT_PACKAGES + (APT_TEST_PACKAGES if test else ()))
    npm_install()


# --------------------------------------------------------------------------- components


@dataclass(frozen=True)
class Component:
    name: str
    signature: Signature
    #: other command lines that are ours too (a service started before it was supervised)
    alternatives: tuple[Signature, ...] = ()

    @property
    def pid_path(self) -> Path:
        return PID_DIR / f"{self.name}.pid"

    @property
    def log_path(self) -> Path:
        return LOG_DIR / f"{self.name}.log"

    def pid(self) -> int | None:
        for signature in (self.signature, *self.alternatives):
            pid = running_pid(self.pid_path, signature)
            if pid is not None:
                return pid
        return None

    def is_running(self) -> bool:
        return self.pid() is not None


def epmd_component() -> Component:
    return Component("epmd", Signature(contains=("epmd",), args=("-port", "4369")))


def rabbit_component(config: Mapping[str, str]) -> Component:
    # The node name and data directory reach beam.smp through the environment only.
    return Component(
        "rabbitmq",
        Signature(
            contains=("beam",),
            args=("-s", "rabbit", "boot"),
            environ=(
                ("RABBITMQ_NODENAME", config["RABBITMQ_NODENAME"]),
                ("RABBITMQ_MNESIA_BASE", str(RABBIT_DIR / "mnesia")),
            ),
        ),
    )


def couch_component(config: Mapping[str, str]) -> Component:
    return Component(
        "couchdb",
        Signature(contains=("pouchdb-server",), args=("--dir", str(COUCH_DIR / "data"))),
    )


def s3_component(config: Mapping[str, str]) -> Component:
    port = str(_url_port(config["S3_URL"], 9000))
    return Component("s3", Signature(contains=("moto_server_keepalive",), args=("-p", port)))


#: service name (= module, log and pid name) -> setting holding its HTTP port
SERVICES: dict[str, str] = {
    "provenancedb": "PROVENANCEDB_OPS_PORT",
    "imageproc": "IMAGEPROC_OPS_PORT",
    "imageproc_runner": "RUNNER_OPS_PORT",
    "upload": "UPLOAD_PORT",
}


#: Services that scale out as competing consumers -> the setting with their replica count
#: (`make up IMAGEPROC_REPLICAS=2`; RUNNER_REPLICAS defaults to IMAGEPROC_REPLICAS).
#: Replica n > 1 is the instance `<service>-<n>`, its port the service's + (n - 1) * 10.
REPLICATED: dict[str, str] = {
    "imageproc": "IMAGEPROC_REPLICAS",
    "imageproc_runner": "RUNNER_REPLICAS",
}
REPLICA_PORT_STEP = 10
MAX_REPLICAS = 8


def service_of(instance: str) -> str:
    """The service (module) an instance runs: `imageproc-2` -> `imageproc`."""
    return instance.partition("-")[0]


def replica_count(config: Mapping[str, str], service: str) -> int:
    setting = REPLICATED.get(service)
    if setting is None:
        return 1
    raw = config.get(setting) or config.get("IMAGEPROC_REPLICAS") or "1"
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_REPLICAS:
        raise StackError(f"{setting}={raw}: a whole number from 1 to {MAX_REPLICAS}")
    return count


def service_instances(config: Mapping[str, str]) -> list[str]:
    """Every service instance `up` runs, in start order."""
    return [
        name if replica == 1 else f"{name}-{replica}"
        for name in SERVICES
        for replica in range(1, replica_count(config, name) + 1)
    ]


def instance_port(config: Mapping[str, str], instance: str) -> int:
    service, _, replica = instance.partition("-")
    step = (int(replica) - 1) * REPLICA_PORT_STEP if replica else 0
    return _port(config, SERVICES[service]) + step


def known_instances(config: Mapping[str, str]) -> list[str]:
    """The configured instances and any other replica a pid file names (one that a bigger
    `IMAGEPROC_REPLICAS` started): what `down` stops and `status` shows."""
    names = service_instances(config)
    for service in REPLICATED:
        for pid_file in sorted(PID_DIR.glob(f"{service}-*.pid")):
            name = pid_file.name.removesuffix(".pid")
            if name.partition("-")[2].isdigit() and name not in names:
                names.append(name)
    return names


def service_component(name: str) -> Component:
    """A service instance; its pid file names its supervisor (`stack.py supervise NAME`)."""
    return Component(
        name,
        Signature(contains=("stack.py",), args=("supervise", name)),
        alternatives=(Signature(contains=("python",), args=("-m", service_of(name))),),
    )


def supervisor_log_path(name: str) -> Path:
    return LOG_DIR / f"{name}.supervisor.log"


def supervisor_state_path(name: str) -> Path:
    return PID_DIR / f"{name}.supervisor.json"


def infra_components(config: Mapping[str, str]) -> list[Component]:
    return [
        epmd_component(),
        rabbit_component(config),
        couch_component(config),
        s3_component(config),
    ]


def all_components(config: Mapping[str, str]) -> list[Component]:
    return infra_components(config) + [service_component(name) for name in known_instances(config)]


def _fail(component: Component, message: str) -> StackError:
    return StackError(
        f"{component.name}: {message}\n--- last lines of {component.log_path} ---\n"
        f"{tail(component.log_path)}"
    )


def _check_port_free(component: Component, host: str, port: int) -> None:
    if port_open(host, port):
        raise StackError(
            f"{component.name}: port {host}:{port} is already in use by a process "
            f"this stack did not start (see `ss -ltnp`)"
        )


# --- RabbitMQ


def rabbit_env(config: Mapping[str, str]) -> dict[str, str]:
    """Environment for rabbitmq-server / rabbitmqctl / rabbitmq-plugins on our node."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
    env.update(
        {
            "RABBITMQ_NODENAME": config["RABBITMQ_NODENAME"],
            "RABBITMQ_MNESIA_BASE": str(RABBIT_DIR / "mnesia"),
            "RABBITMQ_LOG_BASE": str(RABBIT_DIR / "log"),
            "RABBITMQ_CONFIG_FILE": str(RABBIT_DIR / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(RABBIT_DIR / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(RABBIT_DIR / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(RABBIT_DIR / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(PID_DIR / "rabbitmq.pid"),
            "RABBITMQ_DIST_PORT": str(_port(config, "RABBITMQ_PORT") + 20000),
            # +sbwt none (and for the dirty schedulers): idle schedulers sleep instead of
            # spinning, which on a small machine showed as CPU the mesh never used.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}"
            f" {RABBIT_SCHEDULER_ARGS}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
    )
    return env


RABBIT_SCHEDULER_ARGS = "+sbwt none +sbwtdcpu none +sbwtdio none"
"""Erlang scheduler busy-wait off: RabbitMQ's own advice for machines with few cores
shared with other work (its "Runtime Tuning" guide)."""


def rabbit_cli(name: str) -> str:
    path = RABBIT_SBIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name} not found: run `python3 tools/stack.py deps`")
    return found


def rabbitmqctl(config: Mapping[str, str], *args: str, timeout: float = 60.0) -> str:
    node = config["RABBITMQ_NODENAME"]
    result = subprocess.run(
        [rabbit_cli("rabbitmqctl"), "-n", node, *args],
        env=rabbit_env(config),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(
            f"rabbitmqctl {' '.join(args)} failed ({result.returncode}): "
            f"{(result.stderr or result.stdout).strip()}"
        )
    return result.stdout


def write_rabbit_config(config: Mapping[str, str]) -> None:
    (RABBIT_DIR / "log").mkdir(parents=True, exist_ok=True)
    (RABBIT_DIR / "mnesia").mkdir(parents=True, exist_ok=True)
    host = "127.0.0.1"  # the local stack listens on loopback only
    lines = [
        "# Generated by tools/stack.py on every start; edit the settings, not this file.",
        f"listeners.tcp.1 = {host}:{_port(config, 'RABBITMQ_PORT')}",
        f"management.tcp.ip = {host}",
        f"management.tcp.port = {_port(config, 'RABBITMQ_MANAGEMENT_PORT')}",
        # Used only when the node boots on an empty data directory (no guest user then).
        f"default_vhost = {config['RABBITMQ_VHOST']}",
        f"default_user = {config['RABBITMQ_USER']}",
        f"default_pass = {config['RABBITMQ_PASSWORD']}",
        "default_user_tags.administrator = true",
        "default_permissions.configure = .*",
        "default_permissions.read = .*",
        "default_permissions.write = .*",
        "log.file.level = info",
        "",
    ]
    (RABBIT_DIR / "rabbitmq.conf").write_text("\n".join(lines), encoding="utf-8")
    env_conf = RABBIT_DIR / "rabbitmq-env.conf"
    if not env_conf.exists():
        env_conf.write_text("# Intentionally empty: settings come from tools/stack.py\n")


def enable_rabbit_plugins(config: Mapping[str, str]) -> None:
    plugins_file = RABBIT_DIR / "enabled_plugins"
    if plugins_file.exists() and "rabbitmq_management" in plugins_file.read_text():
        return
    subprocess.run(
        [rabbit_cli("rabbitmq-plugins"), "enable", "--offline", "rabbitmq_management"],
        env=rabbit_env(config),
        check=True,
        capture_output=True,
        timeout=120,
    )


def start_epmd() -> None:
    """Our own epmd on loopback, so `down` can stop it (erl would daemonise one otherwise)."""
    component = epmd_component()
    if component.pid() is not None or port_open("127.0.0.1", 4369):
        return  # ours, or somebody else's epmd that rabbit can share
    epmd = shutil.which("epmd") or "epmd"
    env = {**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"}
    pid = spawn([epmd, "-port", "4369"], env, component.log_path, component.pid_path)
    wait_until("epmd", lambda: port_open("127.0.0.1", 4369), 10, alive=lambda: pid_alive(pid))


def start_rabbit(config: Mapping[str, str]) -> bool:
    """Start the project-local RabbitMQ node unless running; True if it was started."""
    component = rabbit_component(config)
    if component.pid() is not None:
        return False
    port = _port(config, "RABBITMQ_PORT")
    _check_port_free(component, "127.0.0.1", port)
    _check_port_free(component, "127.0.0.1", _port(config, "RABBITMQ_MANAGEMENT_PORT"))
    write_rabbit_config(config)
    enable_rabbit_plugins(config)
    start_epmd()
    component.pid_path.unlink(missing_ok=True)
    # .stack/logs/rabbitmq.log is a link to the node's own log, for `logs` and error tails.
    node_log = RABBIT_DIR / "log" / f"{config['RABBITMQ_NODENAME']}.log"
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    if component.log_path.is_symlink() or component.log_path.exists():
        component.log_path.unlink()
    component.log_path.symlink_to(os.path.relpath(node_log, LOG_DIR))
    with RABBIT_STARTUP_LOG.open("ab") as log:
        log.write(f"\n=== {time.strftime('%F %T')} rabbitmq-server -detached\n".encode())
        log.flush()
        subprocess.run(
            [rabbit_cli("rabbitmq-server"), "-detached"],
            env=rabbit_env(config),
            cwd=RABBIT_DIR,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=60,
        )
    return True


def wait_rabbit(config: Mapping[str, str], timeout: float = RABBIT_TIMEOUT) -> None:
    component = rabbit_component(config)
    deadline = time.monotonic() + timeout
    # The node writes its pid file within seconds of `rabbitmq-server -detached`.
    try:
        wait_until("rabbitmq pid file", component.is_running, min(timeout, 30.0))
    except StackError as exc:
        raise StackError(
            f"rabbitmq: {exc}\n--- last lines of {RABBIT_STARTUP_LOG} ---\n"
            f"{tail(RABBIT_STARTUP_LOG)}\n--- last lines of {component.log_path} ---\n"
            f"{tail(component.log_path)}"
        ) from None
    last_error = ""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _fail(component, f"not started after {timeout:.0f}s: {last_error}")
        if component.pid() is None:
            raise _fail(component, "the node exited during start-up")
        try:
            rabbitmqctl(
                config,
                "await_startup",
                "--timeout",
                str(max(1, int(remaining))),
                timeout=remaining + 15,
            )
            break
        except (StackError, subprocess.TimeoutExpired) as exc:
            last_error = str(exc)
            time.sleep(1)
    mgmt = f"http://127.0.0.1:{_port(config, 'RABBITMQ_MANAGEMENT_PORT')}/"
    try:
        wait_http_ok(mgmt, max(1.0, deadline - time.monotonic()))
    except StackError as exc:
        raise _fail(component, str(exc)) from None


def _mgmt_base(config: Mapping[str, str]) -> str:
    return f"http://127.0.0.1:{_port(config, 'RABBITMQ_MANAGEMENT_PORT')}/api"


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def provision_rabbitmq(
    config: Mapping[str, str],
    vhost: str | None = None,
    user: str | None = None,
    password: str | None = None,
) -> None:
    """Idempotently create `vhost` and `user` (administrator, full rights on `vhost`)."""
    vhost = vhost or config["RABBITMQ_VHOST"]
    user = user or config["RABBITMQ_USER"]
    password = password if password is not None else config["RABBITMQ_PASSWORD"]
    admin = (config["RABBITMQ_USER"], config["RABBITMQ_PASSWORD"])
    base = _mgmt_base(config)
    if http("GET", f"{base}/whoami", auth=admin).status != 200:
        # Data directory from another configuration: bootstrap the admin with the CLI.
        say(f"rabbitmq: creating administrator {admin[0]!r} with rabbitmqctl")
        try:
            rabbitmqctl(config, "add_user", admin[0], admin[1])
        except StackError:
            rabbitmqctl(config, "change_password", admin[0], admin[1])
        rabbitmqctl(config, "set_user_tags", admin[0], "administrator")
    steps: list[tuple[str, dict[str, Any]]] = [
        (f"/vhosts/{_q(vhost)}", {}),
        (f"/users/{_q(user)}", {"password": password, "tags": "administrator"}),
        (
            f"/permissions/{_q(vhost)}/{_q(user)}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        ),
    ]
    if user != admin[0]:
        steps.append(
            (
                f"/permissions/{_q(vhost)}/{_q(admin[0])}",
                {"configure": ".*", "write": ".*", "read": ".*"},
            )
        )
    for path, payload in steps:
        if path.startswith("/users/") and user == admin[0]:
            answer = http("GET", f"{base}{path}", auth=admin)
            if answer.status == 200 and "administrator" in str(answer.json().get("tags")):
                continue  # the admin itself: already right, don't rehash its password
        answer = http("PUT", f"{base}{path}", body=json.dumps(payload).encode(), auth=admin)
        if answer.status not in (200, 201, 204):
            raise StackError(f"rabbitmq: PUT {path} -> {answer.status} {answer.body[:200]!r}")


def service_rabbit_user(config: Mapping[str, str], service: str) -> tuple[str, str]:
    """The RabbitMQ user and password a service runs as (least privilege)."""
    key = f"RABBITMQ_{service.upper()}_PASSWORD"
    return f"{config.get('RABBITMQ_SERVICE_USER_PREFIX', '')}{service}", config[key]


def provision_service_users(config: Mapping[str, str], vhost: str | None = None) -> None:
    """As the administrator: the exchanges, and each service's user with exactly its
    grants on `vhost` (`python -m messaging.provision`: grants derived from the code)."""
    env = {
        **os.environ,
        **config,
        "RABBITMQ_VHOST": vhost or config["RABBITMQ_VHOST"],
        "RABBITMQ_MANAGEMENT_URL": _mgmt_base(config).removesuffix("/api"),
    }
    result = subprocess.run(
        [str(VENV_PYTHON), "-m", "messaging.provision"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise StackError(f"rabbitmq: provisioning failed: {result.stderr.strip()}")


# --- CouchDB-compatible (PouchDB Server)


def start_couch(config: Mapping[str, str]) -> bool:
    component = couch_component(config)
    if component.pid() is not None:
        return False
    if not POUCHDB_SERVER.exists():
        raise StackError("PouchDB Server is not installed: run `python3 tools/stack.py deps`")
    port = _url_port(config["COUCHDB_URL"], 5984)
    _check_port_free(component, "127.0.0.1", port)
    data = COUCH_DIR / "data"
    data.mkdir(parents=True, exist_ok=True)
    config_json = COUCH_DIR / "config.json"
    if not config_json.exists():
        config_json.write_text(
            json.dumps({"log": {"file": str(COUCH_DIR / "log.txt")}}, indent=2) + "\n"
        )
    argv = couch_argv(data, config_json, port)
    spawn(argv, couch_env(), component.log_path, component.pid_path, cwd=COUCH_DIR)
    return True


def couch_argv(data: Path, config_json: Path, port: int) -> list[str]:
    return [
        str(POUCHDB_SERVER),
        "--dir",
        str(data),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--config",
        str(config_json),
        "--no-color",
    ]


def couch_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """PouchDB Server's environment. It predates Node 15, which ends the process on an
    unhandled promise rejection; some of its refusals lead to one (a non-admin's
    `PUT /<new db>`; the next database opened after a non-admin's `DELETE /<db>`), so
    any client could stop it: warn instead (provenancedb/store.py has the rest)."""
    env = dict(os.environ if environ is None else environ)
    options = env.get("NODE_OPTIONS", "")
    if "--unhandled-rejections" not in options:
        env["NODE_OPTIONS"] = f"{options} --unhandled-rejections=warn".strip()
    return env


#: Settings only CouchDB provisioning gets, and those only operator tools get (audit).
COUCH_ADMIN_ONLY = ("COUCHDB_ADMIN_USER", "COUCHDB_ADMIN_PASSWORD")
COUCH_AUDITOR_ONLY = ("COUCHDB_AUDITOR_USER", "COUCHDB_AUDITOR_PASSWORD")


def _couch_base(config: Mapping[str, str]) -> str:
    return config["COUCHDB_URL"].rstrip("/")


def wait_couch(config: Mapping[str, str], timeout: float = COUCH_TIMEOUT) -> None:
    component = couch_component(config)
    try:
        wait_http_ok(f"{_couch_base(config)}/", timeout, alive=component.is_running)
    except StackError as exc:
        raise _fail(component, str(exc)) from None


def provision_couchdb(config: Mapping[str, str], db: str | None = None) -> None:
    """Leave admin party (create the admin) if needed, then provision database `db` with
    `python -m provenancedb.migrate` as that admin: the writer and auditor users, the
    database, its `_security`, the design document (views, append-only validation) and
    the indexes. The services never get the admin's credentials (`service_env`)."""
    db = db or config["COUCHDB_DB"]
    base = _couch_base(config)
    auth = (config["COUCHDB_ADMIN_USER"], config["COUCHDB_ADMIN_PASSWORD"])
    session = http("GET", f"{base}/_session", auth=auth)
    roles: list[str] = []
    if session.status == 200:
        roles = list(session.json().get("userCtx", {}).get("roles", []))
        name = session.json().get("userCtx", {}).get("name")
        if name != auth[0]:
            roles = []
    if "_admin" not in roles:
        answer = http(
            "PUT",
            f"{base}/_config/admins/{_q(auth[0])}",
            body=json.dumps(auth[1]).encode(),
        )
        if answer.status != 200:
            raise StackError(
                f"couchdb: cannot create admin {auth[0]!r} ({answer.status}); the server has "
                f"other admins: fix COUCHDB_ADMIN_USER/COUCHDB_ADMIN_PASSWORD (COUCHDB_USER "
                f"is provenancedb's own user now) or remove {COUCH_DIR}"
            )
        say(f"couchdb: admin {auth[0]!r} created (admin party is over)")
    if not VENV_PYTHON.exists():
        raise StackError(f"couchdb: provisioning needs {VENV_PYTHON}: run `make venv`")
    migrate = subprocess.run(
        [str(VENV_PYTHON), "-m", "provenancedb.migrate"],
        env={**os.environ, **config, "COUCHDB_DB": db},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    for line in migrate.stdout.splitlines():
        if not line.endswith("(0 change(s))"):
            say(f"couchdb: {line.removeprefix('provenancedb.migrate: ')}")
    if migrate.returncode != 0:
        raise StackError(f"couchdb: {migrate.stderr.strip() or migrate.stdout.strip()}")


# --- S3 (moto server, in memory)


def start_s3(config: Mapping[str, str]) -> bool:
    component = s3_component(config)
    if component.pid() is not None:
        return False
    if not VENV_PYTHON.exists():
        raise StackError(f"{VENV_PYTHON} missing: run `make venv`")
    port = _url_port(config["S3_URL"], 9000)
    _check_port_free(component, "127.0.0.1", port)
    argv = [str(VENV_PYTHON), str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)]
    spawn(argv, os.environ, component.log_path, component.pid_path)
    return True


def wait_s3(config: Mapping[str, str], timeout: float = S3_TIMEOUT) -> None:
    component = s3_component(config)
    url = config["S3_URL"].rstrip("/") + "/"
    try:
        wait_until(
            f"GET {url}",
            lambda: _answered(url),
            timeout,
            alive=component.is_running,
        )
    except StackError as exc:
        raise _fail(component, str(exc)) from None


def s3_client(config: Mapping[str, str]) -> Any:
    """A boto3 S3 client for the configured server (boto3 is imported lazily)."""
    boto3 = importlib.import_module("boto3")
    botocore_config = importlib.import_module("botocore.config")
    return boto3.client(
        "s3",
        endpoint_url=config["S3_URL"],
        aws_access_key_id=config["S3_ACCESS_KEY"],
        aws_secret_access_key=config["S3_SECRET_KEY"],
        region_name=config["S3_REGION"],
        config=botocore_config.Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3},
        ),
    )


def provision_s3(config: Mapping[str, str], buckets: Sequence[str] | None = None) -> None:
    """Create the buckets that do not exist yet."""
    names = (
        list(buckets)
        if buckets is not None
        else [
            config["S3_INPUT_BUCKET"],
            config["S3_OUTPUT_BUCKET"],
        ]
    )
    client = s3_client(config)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    for name in names:
        if name in existing:
            continue
        try:
            if config["S3_REGION"] == "us-east-1":
                client.create_bucket(Bucket=name)
            else:
                client.create_bucket(
                    Bucket=name,
                    CreateBucketConfiguration={"LocationConstraint": config["S3_REGION"]},
                )
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass


# --- all infrastructure


_held_locks: list[object] = []


@contextlib.contextmanager
def stack_lock() -> Iterator[None]:
    """One start or stop at a time per stack folder: two at once (two terminals, a test
    run beside `make up`) would both start the same server, and the second would remove
    the pid file the first one's server wrote. Reentrant within a process."""
    if _held_locks:
        yield
        return
    STACK_DIR.mkdir(parents=True, exist_ok=True)
    with (STACK_DIR / "stack.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _held_locks.append(handle)
        try:
            yield
        finally:
            _held_locks.pop()
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_infra(config: Mapping[str, str]) -> None:
    """Start RabbitMQ, PouchDB Server and moto unless running, wait, and provision them."""
    with stack_lock():
        _ensure_infra(config)


def _ensure_infra(config: Mapping[str, str]) -> None:
    for directory in (LOG_DIR, PID_DIR, RABBIT_DIR, COUCH_DIR):
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


# --- services


def service_env(config: Mapping[str, str], instance: str | None = None) -> dict[str, str]:
    """The environment a service instance (or an operator tool, `instance=None`) runs with.
    A service connects to the broker as its own user, with only its own permissions; a
    replica listens on its own port."""
    env = dict(os.environ)
    env.update(config)
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


def start_service(
    name: str,
    env: Mapping[str, str],
    log_path: Path | None = None,
    pid_path: Path | None = None,
    python: Path = VENV_PYTHON,
) -> int:
    """Start `python -m <name>` detached; returns its PID."""
    component = service_component(name)
    return spawn(
        [str(python), "-m", name],
        env,
        log_path or component.log_path,
        pid_path or component.pid_path,
    )


def start_supervised(name: str, env: Mapping[str, str]) -> int:
    """Start `stack.py supervise NAME` detached (it runs the service); returns its PID."""
    component = service_component(name)
    return spawn(
        [sys.executable, str(STACK_SCRIPT), "supervise", name],
        {**env, "STACK_DIR": str(STACK_DIR)},
        supervisor_log_path(name),
        component.pid_path,
    )


def service_ready_url(name: str, config: Mapping[str, str]) -> str:
    return f"http://127.0.0.1:{instance_port(config, name)}/readyz"


def _crash_looping(name: str) -> bool:
    state = read_supervisor_state(supervisor_state_path(name))
    return state is not None and state.restarts >= CRASH_LOOP_RESTARTS


def _starting(component: Component) -> bool:
    """Still worth waiting for: its supervisor runs and it has not crashed over and over."""
    return component.is_running() and not _crash_looping(component.name)


def ensure_services(config: Mapping[str, str], timeout: float = SERVICE_TIMEOUT) -> None:
    wanted = service_instances(config)
    surplus = [name for name in known_instances(config) if name not in wanted]
    if surplus:  # replicas of a bigger IMAGEPROC_REPLICAS than this one
        _stop_instances(config, surplus)
    pending: list[Component] = []
    for name in wanted:
        component = service_component(name)
        if component.pid() is None:
            _check_port_free(component, "127.0.0.1", instance_port(config, name))
            # The supervisor derives the instance's own settings (its port) from these.
            start_supervised(name, service_env(config, service_of(name)))
        pending.append(component)
    deadline = time.monotonic() + timeout
    for component in pending:
        try:
            wait_http_ok(
                service_ready_url(component.name, config),
                max(1.0, deadline - time.monotonic()),
                alive=functools.partial(_starting, component),
            )
        except StackError as exc:
            message = str(exc)
            if _crash_looping(component.name):
                message = (
                    f"exited {CRASH_LOOP_RESTARTS + 1} times while starting; its supervisor "
                    "keeps restarting it with back-off (`make down` stops it)"
                )
            raise _fail(component, message) from None
        say(f"{component.name} ready")


# --- stop / status


def stop_component(component: Component, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the process the pid file names (if it is ours); remove the pid file."""
    pid = component.pid()
    if pid is not None:
        say(f"stopping {component.name} (pid {pid})")
        stop_pid(pid, timeout)
    component.pid_path.unlink(missing_ok=True)
    return pid is not None


def stop_services(config: Mapping[str, str]) -> None:
    """SIGTERM every service instance's supervisor at once (they drain in parallel), then
    wait."""
    _stop_instances(config, known_instances(config))


def _stop_instances(config: Mapping[str, str], names: Sequence[str]) -> None:
    running: list[tuple[Component, int]] = []
    for name in names:
        component = service_component(name)
        pid = component.pid()
        if pid is not None:
            say(f"stopping {name} (pid {pid})")
            running.append((component, pid))
    # A supervisor gives its service SHUTDOWN_TIMEOUT_SECONDS + a margin, then SIGKILLs it.
    stop_pids([pid for _, pid in running], service_stop_timeout(config) + STOP_MARGIN)
    for name in names:
        service_component(name).pid_path.unlink(missing_ok=True)
        supervisor_state_path(name).unlink(missing_ok=True)


def down(config: Mapping[str, str]) -> None:
    stop_services(config)
    stop_component(prometheus_component())
    # Then the infrastructure; epmd last (rabbit needs it to shut down cleanly).
    components = infra_components(config)
    for component in components[1:] + components[:1]:
        stop_component(component)


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


def _service_row(name: str, config: Mapping[str, str]) -> StatusRow:
    component = service_component(name)
    url = service_ready_url(name, config)
    pid = component.pid()
    ready, state = probe_readiness(url)
    child = restarts = "-"
    if pid is not None:
        supervisor = read_supervisor_state(supervisor_state_path(name))
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
            state += " (unsupervised)"  # started by an older stack.py, without a supervisor
    pid_text = str(pid) if pid is not None else "-"
    return StatusRow(name, pid_text, child, restarts, state, url, ready)


def status_rows(config: Mapping[str, str]) -> list[StatusRow]:
    probes: dict[str, str] = {
        "epmd": "tcp://127.0.0.1:4369",
        "rabbitmq": f"http://127.0.0.1:{_port(config, 'RABBITMQ_MANAGEMENT_PORT')}/",
        "couchdb": f"{_couch_base(config)}/",
        "s3": config["S3_URL"].rstrip("/") + "/",
    }
    rows: list[StatusRow] = []
    for component in infra_components(config):
        pid = component.pid()
        probe = probes[component.name]
        if probe.startswith("tcp://"):
            ok = port_open("127.0.0.1", 4369)
        elif component.name == "s3":
            ok = _answered(probe)
        else:
            ok = http_ok(probe)
        pid_text = str(pid) if pid is not None else "-"
        rows.append(
            StatusRow(component.name, pid_text, "-", "-", "up" if ok else "down", probe, ok)
        )
    rows.extend(_service_row(name, config) for name in known_instances(config))
    rows.extend(observability_rows(config))
    return rows


def print_status(config: Mapping[str, str]) -> bool:
    """The table; True if every component is ours (has a pid) and up."""
    rows = status_rows(config)
    header = ("component", "pid", "child", "restarts", "state", "probe")
    cells = [header] + [(r.component, r.pid, r.child, r.restarts, r.state, r.probe) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return all(r.pid != "-" and r.ok for r in rows)


def print_urls(config: Mapping[str, str]) -> None:
    mgmt = _port(config, "RABBITMQ_MANAGEMENT_PORT")
    couch = urllib.parse.urlsplit(config["COUCHDB_URL"])
    s3 = urllib.parse.urlsplit(config["S3_URL"])
    print(
        "\nimagemesh is up:\n"
        f"  upload form      http://localhost:{_port(config, 'UPLOAD_PORT')}\n"
        f"  RabbitMQ console http://localhost:{mgmt}  "
        f"({config['RABBITMQ_USER']} / {config['RABBITMQ_PASSWORD']})\n"
        f"  Fauxton          http://localhost:{couch.port or 5984}/_utils  "
        f"({config['COUCHDB_AUDITOR_USER']} / {config['COUCHDB_AUDITOR_PASSWORD']} reads; "
        f"admin {config['COUCHDB_ADMIN_USER']} / {config['COUCHDB_ADMIN_PASSWORD']})\n"
        f"  S3 (moto)        http://localhost:{s3.port or 9000}  "
        f"(buckets {config['S3_INPUT_BUCKET']}, {config['S3_OUTPUT_BUCKET']})\n"
        f"  logs             {LOG_DIR}  (make logs)\n",
        flush=True,
    )


def log_files(name: str | None = None) -> Iterator[Path]:
    if name is not None:
        yield LOG_DIR / f"{name}.log"
        return
    yield from sorted(LOG_DIR.glob("*.log"))


# --------------------------------------------------------------------------- observability
# Optional (`make up-observability`): Debian's Prometheus on loopback, scraping every
# service instance's /metrics; its data under .stack/prometheus/, stopped by `down`.

APT_OBSERVABILITY_PACKAGES = ("prometheus",)
PROMETHEUS_DIR = STACK_DIR / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
PROMETHEUS_TIMEOUT = 60.0
PROMETHEUS_SCRAPE_INTERVAL = "5s"


def prometheus_config(config: Mapping[str, str]) -> dict[str, Any]:
    """Prometheus' configuration: one job per service (named after it, as in
    deploy/prometheus/prometheus.yml) with every instance `up` runs as a target."""
    jobs: list[dict[str, Any]] = []
    for service in SERVICES:
        targets = [
            f"127.0.0.1:{instance_port(config, instance)}"
            for instance in service_instances(config)
            if service_of(instance) == service
        ]
        jobs.append({"job_name": service, "static_configs": [{"targets": targets}]})
    return {
        "global": {
            "scrape_interval": PROMETHEUS_SCRAPE_INTERVAL,
            "evaluation_interval": PROMETHEUS_SCRAPE_INTERVAL,
        },
        "scrape_configs": jobs,
    }


def render_prometheus_config(config: Mapping[str, str]) -> str:
    # JSON is YAML: no YAML writer needed in a standard-library script.
    header = "# Generated by tools/stack.py (make up-observability); edit the settings.\n"
    return header + json.dumps(prometheus_config(config), indent=2) + "\n"


def prometheus_component() -> Component:
    return Component(
        "prometheus",
        Signature(contains=("prometheus",), args=("--config.file", str(PROMETHEUS_CONFIG))),
    )


def prometheus_url(config: Mapping[str, str]) -> str:
    return f"http://127.0.0.1:{_port(config, 'PROMETHEUS_PORT')}"


def start_prometheus(config: Mapping[str, str]) -> bool:
    """Write the configuration and start Prometheus unless running (then it reloads the
    configuration, on SIGHUP); True if it was started."""
    component = prometheus_component()
    PROMETHEUS_DIR.mkdir(parents=True, exist_ok=True)
    PROMETHEUS_CONFIG.write_text(render_prometheus_config(config), encoding="utf-8")
    pid = component.pid()
    if pid is not None:
        _send(pid, signal.SIGHUP)
        return False
    port = _port(config, "PROMETHEUS_PORT")
    _check_port_free(component, "127.0.0.1", port)
    binary = shutil.which("prometheus")
    if binary is None:
        raise StackError("prometheus not found: install Debian's `prometheus` package")
    argv = [
        binary,
        "--config.file",
        str(PROMETHEUS_CONFIG),
        "--storage.tsdb.path",
        str(PROMETHEUS_DIR / "data"),
        "--storage.tsdb.retention.time",
        "7d",
        "--web.listen-address",
        f"127.0.0.1:{port}",
    ]
    spawn(argv, dict(os.environ), component.log_path, component.pid_path, cwd=PROMETHEUS_DIR)
    return True


def ensure_observability(config: Mapping[str, str]) -> None:
    apt_install(APT_OBSERVABILITY_PACKAGES)
    component = prometheus_component()
    started = start_prometheus(config)
    try:
        wait_http_ok(
            f"{prometheus_url(config)}/-/ready", PROMETHEUS_TIMEOUT, alive=component.is_running
        )
    except StackError as exc:
        raise _fail(component, str(exc)) from None
    detail = "started" if started else "configuration reloaded"
    say(f"prometheus ready ({detail}): {prometheus_url(config)}/targets")


def observability_rows(config: Mapping[str, str]) -> list[StatusRow]:
    """Prometheus' status row, once `up-observability` started it (it is optional)."""
    component = prometheus_component()
    if not component.pid_path.exists():
        return []
    pid = component.pid()
    probe = f"{prometheus_url(config)}/-/ready"
    ok = http_ok(probe)
    pid_text = str(pid) if pid is not None else "-"
    return [StatusRow("prometheus", pid_text, "-", "-", "up" if ok else "down", probe, ok)]


# --------------------------------------------------------------------------- supervision

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


def service_stop_timeout(config: Mapping[str, str]) -> float:
    """How long a supervisor lets its service drain after SIGTERM before SIGKILL."""
    try:
        drain = float(config.get("SHUTDOWN_TIMEOUT_SECONDS", "30"))
    except ValueError:
        drain = 30.0
    return drain + STOP_MARGIN


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
    cwd: Path = ROOT
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
                child = self._start()
                started = time.monotonic()
                self.state.child_pid = child.pid if child is not None else None
                self.state.next_start = None
                self.save_state()
                if child is not None:
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
                        return 0
                    exit_info: dict[str, Any] = {
                        "exit_code": code if code >= 0 else None,
                        "signal": _signal_name(-code) if code < 0 else None,
                    }
                else:
                    exit_info = {"exit_code": None, "signal": None, "start_failed": True}
                uptime = time.monotonic() - started
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
                stop = self._sleep(delay)
                if stop is not None:
                    self.log("info", "service_stopped", signal=stop.name, during="back-off")
                    return 0
        finally:
            self.state_path.unlink(missing_ok=True)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def supervise(
    name: str,
    config: Mapping[str, str],
    command: Sequence[str] = (),
    *,
    backoff: float = BACKOFF_INITIAL,
    backoff_max: float = BACKOFF_MAX,
    reset_after: float = BACKOFF_RESET_AFTER,
    stop_timeout: float | None = None,
) -> int:
    """`supervise NAME`: run the service NAME (or `command`) under a Supervisor, in front."""
    component = service_component(name)
    other = component.pid()
    if other is not None and other != os.getpid():
        raise StackError(f"{name} is already supervised by pid {other}")
    PID_DIR.mkdir(parents=True, exist_ok=True)
    component.pid_path.write_text(f"{os.getpid()}\n", encoding="utf-8")
    try:
        return Supervisor(
            name=name,
            argv=list(command) or [str(VENV_PYTHON), "-m", service_of(name)],
            env=service_env(config, name),
            service_log=component.log_path,
            state_path=supervisor_state_path(name),
            backoff=backoff,
            backoff_max=backoff_max,
            reset_after=reset_after,
            stop_timeout=service_stop_timeout(config) if stop_timeout is None else stop_timeout,
        ).run()
    finally:
        if read_pid(component.pid_path) == os.getpid():
            component.pid_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- CLI


TOOLS = {
    "parking": ("messaging.parking", "python -m messaging.parking ARGS... (parked messages)"),
    "audit": (
        "provenancedb.audit",
        "python -m provenancedb.audit ARGS... (provenance completeness check)",
    ),
}
"""Operator commands run with the services' settings: `stack.py NAME ARGS...`."""


def tool_command(
    name: str, args: Sequence[str], config: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """argv and environment of `python -m <module> ARGS` with the services' settings."""
    module, _ = TOOLS[name]
    return [str(VENV_PYTHON), "-m", module, *args], service_env(config)


def split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split off what goes to another program untouched: everything after a tool's name
    (`parking`, `audit`), or after `--` (the command of `supervise NAME -- CMD...`)."""
    argv = list(argv)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--env-file":
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        if arg in TOOLS:
            return argv[: i + 1], argv[i + 1 :]
        break
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    return argv, []


def main(argv: Sequence[str] | None = None) -> int:
    own, passthrough = split_passthrough(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="stack.py", description=__doc__.split("\n")[0])
    parser.add_argument("--env-file", help="dotenv file (default: .env, else .env.example)")
    sub = parser.add_subparsers(dest="command", required=True)
    deps_parser = sub.add_parser("deps", help="install missing apt/npm packages")
    deps_parser.add_argument(
        "--test", action="store_true", help="also what the tests need (chromium, photos)"
    )
    deps_parser.add_argument("--pip", action="store_true", help="only python3-pip (for uv)")
    sub.add_parser("infra", help="deps + start and provision RabbitMQ, CouchDB, S3")
    sub.add_parser("up", help="infra + the four services")
    sub.add_parser("up-observability", help="Prometheus on loopback, scraping the services")
    sub.add_parser("down", help="stop everything the pid files name")
    sub.add_parser("status", help="component / pid / state table")
    logs_parser = sub.add_parser("logs", help="follow the logs (all, or one component)")
    logs_parser.add_argument("name", nargs="?")
    for tool, (_, description) in TOOLS.items():
        sub.add_parser(tool, help=f"{description}, with the services' settings", add_help=False)
    sup = sub.add_parser(
        "supervise",
        help="run service NAME (or `-- CMD...`) in front, restarting it when it exits",
    )
    sup.add_argument("name", help="service: its log, pid and state file names")
    sup.add_argument("--backoff", type=float, default=BACKOFF_INITIAL, metavar="SECONDS")
    sup.add_argument("--backoff-max", type=float, default=BACKOFF_MAX, metavar="SECONDS")
    sup.add_argument(
        "--reset-after",
        type=float,
        default=BACKOFF_RESET_AFTER,
        metavar="SECONDS",
        help="a run this long resets the back-off",
    )
    sup.add_argument(
        "--stop-timeout",
        type=float,
        metavar="SECONDS",
        help="SIGTERM -> SIGKILL grace (default: SHUTDOWN_TIMEOUT_SECONDS + 10)",
    )
    args = parser.parse_args(own)
    if passthrough and args.command not in (*TOOLS, "supervise"):
        parser.error(f"unexpected arguments: {' '.join(passthrough)}")

    config = load_config(args.env_file)
    try:
        if args.command == "deps":
            ensure_deps(test=args.test, pip=args.pip)
        elif args.command in ("infra", "up"):
            ensure_deps()
            with stack_lock():  # the whole start: no `down` in between
                ensure_infra(config)
                if args.command == "up":
                    ensure_services(config)
            if args.command == "up":
                print_urls(config)
        elif args.command == "up-observability":
            ensure_observability(config)
        elif args.command == "down":
            with stack_lock():
                down(config)
        elif args.command == "status":
            return 0 if print_status(config) else 3
        elif args.command == "supervise":
            return supervise(
                args.name,
                config,
                passthrough,
                backoff=args.backoff,
                backoff_max=args.backoff_max,
                reset_after=args.reset_after,
                stop_timeout=args.stop_timeout,
            )
        elif args.command in TOOLS:
            command, env = tool_command(args.command, passthrough, config)
            os.chdir(ROOT)
            os.execve(command[0], command, env)
        elif args.command == "logs":
            files = [str(p) for p in log_files(args.name)]
            if not files:
                say(f"no logs under {LOG_DIR}")
                return 1
            os.execvp("tail", ["tail", "-n", "50", "-F", *files])
    except StackError as exc:
        print(f"stack: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"stack: error: {exc}", file=sys.stderr, flush=True)
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
