"""The stack's components (what it starts, how to recognise each one's process) and the
service instances: services, their replicas, and each instance's port."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .config import REPO_ROOT, Config, Paths
from .errors import StackError
from .procs import Signature, port_open, running_pid, tail


def _mesh_constants() -> ModuleType:
    """messaging/constants.py, the one place the service names are written, loaded by its
    path: the stack runs with a bare python3, without the `messaging` package (that file
    imports nothing)."""
    path = REPO_ROOT / "libs" / "messaging" / "messaging" / "constants.py"
    spec = importlib.util.spec_from_file_location("_imagemesh_constants", path)
    if spec is None or spec.loader is None:
        raise StackError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_MESH = _mesh_constants()

#: service name (= module, log and pid name) -> setting holding its HTTP port, in start
#: order: provenancedb first (it records every other service's events), upload last.
SERVICES: dict[str, str] = {
    str(_MESH.PROVENANCEDB): "PROVENANCEDB_OPS_PORT",
    str(_MESH.IMAGEPROC): "IMAGEPROC_OPS_PORT",
    str(_MESH.IMAGEPROC_RUNNER): "RUNNER_OPS_PORT",
    str(_MESH.UPLOAD): "UPLOAD_PORT",
}

#: Services that scale out as competing consumers -> the setting with their replica count
#: (`make up IMAGEPROC_REPLICAS=2`; RUNNER_REPLICAS defaults to IMAGEPROC_REPLICAS).
#: Replica n > 1 is the instance `<service>-<n>`, its port the service's + (n - 1) * 10.
REPLICATED: dict[str, str] = {
    str(_MESH.IMAGEPROC): "IMAGEPROC_REPLICAS",
    str(_MESH.IMAGEPROC_RUNNER): "RUNNER_REPLICAS",
}
REPLICA_PORT_STEP = 10
MAX_REPLICAS = 8

#: What a supervisor's command line contains: `python3 <root>/tools/stack supervise NAME`,
#: or `<root>/tools/stack.py` for one started before the stack tool became a package.
SUPERVISOR_MARK = "tools/stack"


@dataclass(frozen=True)
class Component:
    name: str
    paths: Paths
    signature: Signature
    #: other command lines that are ours too (a service started before it was supervised)
    alternatives: tuple[Signature, ...] = ()

    @property
    def pid_path(self) -> Path:
        return self.paths.pid_dir / f"{self.name}.pid"

    @property
    def log_path(self) -> Path:
        return self.paths.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        for signature in (self.signature, *self.alternatives):
            pid = running_pid(self.pid_path, signature)
            if pid is not None:
                return pid
        return None

    def is_running(self) -> bool:
        return self.pid() is not None


def epmd_component(config: Config) -> Component:
    return Component("epmd", config.paths, Signature(contains=("epmd",), args=("-port", "4369")))


def rabbit_component(config: Config) -> Component:
    # The node name and data directory reach beam.smp through the environment only.
    return Component(
        "rabbitmq",
        config.paths,
        Signature(
            contains=("beam",),
            args=("-s", "rabbit", "boot"),
            environ=(
                ("RABBITMQ_NODENAME", config.rabbitmq_nodename),
                ("RABBITMQ_MNESIA_BASE", str(config.paths.rabbit_dir / "mnesia")),
            ),
        ),
    )


def couch_component(config: Config) -> Component:
    data = str(config.paths.couch_dir / "data")
    return Component(
        "couchdb", config.paths, Signature(contains=("pouchdb-server",), args=("--dir", data))
    )


def s3_component(config: Config) -> Component:
    port = str(config.s3_port)
    return Component(
        "s3",
        config.paths,
        Signature(contains=("moto_server_keepalive",), args=("-p", port)),
    )


def prometheus_component(config: Config) -> Component:
    path = str(config.paths.prometheus_config)
    return Component(
        "prometheus",
        config.paths,
        Signature(contains=("prometheus",), args=("--config.file", path)),
    )


def service_of(instance: str) -> str:
    """The service (module) an instance runs: `imageproc-2` -> `imageproc`."""
    return instance.partition("-")[0]


def replica_count(config: Config, service: str) -> int:
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


def service_instances(config: Config) -> list[str]:
    """Every service instance `up` runs, in start order."""
    return [
        name if replica == 1 else f"{name}-{replica}"
        for name in SERVICES
        for replica in range(1, replica_count(config, name) + 1)
    ]


def instance_port(config: Config, instance: str) -> int:
    service, _, replica = instance.partition("-")
    step = (int(replica) - 1) * REPLICA_PORT_STEP if replica else 0
    return config.port(SERVICES[service]) + step


def known_instances(config: Config) -> list[str]:
    """The configured instances and any other replica a pid file names (one that a bigger
    `IMAGEPROC_REPLICAS` started): what `down` stops and `status` shows."""
    names = service_instances(config)
    for service in REPLICATED:
        for pid_file in sorted(config.paths.pid_dir.glob(f"{service}-*.pid")):
            name = pid_file.name.removesuffix(".pid")
            if name.partition("-")[2].isdigit() and name not in names:
                names.append(name)
    return names


def service_component(config: Config, name: str) -> Component:
    """A service instance; its pid file names its supervisor (`tools/stack supervise NAME`)."""
    return Component(
        name,
        config.paths,
        Signature(contains=(SUPERVISOR_MARK,), args=("supervise", name)),
        alternatives=(Signature(contains=("python",), args=("-m", service_of(name))),),
    )


def service_ready_url(config: Config, name: str) -> str:
    return f"http://127.0.0.1:{instance_port(config, name)}/readyz"


def supervisor_log_path(paths: Paths, name: str) -> Path:
    return paths.log_dir / f"{name}.supervisor.log"


def supervisor_state_path(paths: Paths, name: str) -> Path:
    return paths.pid_dir / f"{name}.supervisor.json"


def infra_components(config: Config) -> list[Component]:
    return [
        epmd_component(config),
        rabbit_component(config),
        couch_component(config),
        s3_component(config),
    ]


def failure(component: Component, message: str) -> StackError:
    """An error naming the component, with the end of its log."""
    return StackError(
        f"{component.name}: {message}\n--- last lines of {component.log_path} ---\n"
        f"{tail(component.log_path)}"
    )


def check_port_free(component: Component, host: str, port: int) -> None:
    if port_open(host, port):
        raise StackError(
            f"{component.name}: port {host}:{port} is already in use by a process "
            f"this stack did not start (see `ss -ltnp`)"
        )
