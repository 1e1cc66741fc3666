"""Static checks of the container deployment: deploy/compose.yml, deploy/Dockerfile and
their agreement with the services' settings and `.env.example`. No Docker needed."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no types-jsonschema in the dev group
import pytest
import yaml

from tests.deploy.common import (
    APP_SERVICES,
    COMMAND_SETTINGS,
    DEPLOY,
    PORT_SETTINGS,
    ROOT,
    SCALED_SERVICES,
    default_port,
    env_example,
    env_example_unset,
    is_secret,
    secret_vars,
    settings_class,
    settings_vars,
)

COMPOSE_FILE = DEPLOY / "compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
SCHEMA_FILE = Path(__file__).with_name("compose-spec.json")
STACK_CONFIG = ROOT / "tools" / "stack" / "config.py"
STACK_COMPONENTS = ROOT / "tools" / "stack" / "components.py"


@dataclass(frozen=True)
class Command:
    """A one-off job built like a service, running one of its commands."""

    service: str  # whose image
    module: str  # run with `python -m`
    settings: str  # the command's settings class (see `settings_class`)
    before: str  # the compose service that waits for it to succeed


COMMANDS = {
    "provenancedb-migrate": Command(
        "provenancedb", "provenancedb.migrate", "MigrateSettings", before="provenancedb"
    ),
    "rabbitmq-definitions": Command(
        "upload", "messaging.definitions", "messaging.definitions:UsersSettings", "rabbitmq"
    ),
}
#: One-off jobs on third-party images.
OTHER_JOBS = ("minio-init", "couchdb-setup")
#: The job that refuses .env.example's secrets in production for the containers that run
#: no Python of ours (test_production.py), from upload's image.
PRODUCTION_CHECK = "production-check"

#: Variables in .env.example that no service's Settings reads, and who reads them.
READ_OUTSIDE_SETTINGS = {
    "RABBITMQ_MANAGEMENT_PORT": STACK_CONFIG,  # the local stack's management listener
    "RABBITMQ_NODENAME": STACK_CONFIG,  # the local stack's RabbitMQ node
    "PROMETHEUS_PORT": STACK_CONFIG,  # the local stack's Prometheus (up-observability)
    # The local stack's replicas (compose scales with `--scale`, Kubernetes with replicas).
    "IMAGEPROC_REPLICAS": STACK_COMPONENTS,
    "RUNNER_REPLICAS": STACK_COMPONENTS,
    # Each service's own MinIO user (compose's minio-init creates them; the services read
    # them as S3_SECRET_KEY). moto, the local S3, has no per-user policies.
    "S3_UPLOAD_SECRET_KEY": COMPOSE_FILE,
    "S3_RUNNER_SECRET_KEY": COMPOSE_FILE,
    # Grafana's own administrator.
    "GRAFANA_ADMIN_USER": COMPOSE_FILE,
    "GRAFANA_ADMIN_PASSWORD": COMPOSE_FILE,
}

#: Settings a service reads that its compose `environment:` leaves to the code's default,
#: with the reason. Empty: compose sets every one explicitly.
LEFT_TO_CODE_DEFAULT: dict[str, dict[str, str]] = {service: {} for service in APP_SERVICES}

#: Where a .env.example value may differ from the code's default, and why.
ENV_EXAMPLE_DIFFERS_FROM_CODE = {
    "IMAGEPROC_CONCURRENCY": "code defaults to os.cpu_count(); the example pins 2",
    "WEBHOOK_ALLOWED_NETWORKS": "code allows no non-global webhook target (production); "
    "the example allows loopback, to try webhooks with a receiver on this machine",
}

#: Settings compose fixes to the container network instead of taking them from .env.
CONTAINER_VALUES = {
    "HTTP_HOST": "0.0.0.0",
    "RABBITMQ_HOST": "rabbitmq",
    "RABBITMQ_PORT": "5672",
    "S3_URL": "http://minio:9000",
    "COUCHDB_URL": "http://couchdb:5984",
}

INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>[^}]*)\}")


# --- loading ----------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    result = compose()["services"]
    assert isinstance(result, dict)
    return result


def environment(service: str) -> dict[str, str]:
    """A service's `environment:` (YAML merges applied) as strings."""
    env = services()[service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def build_args(service: str) -> dict[str, str]:
    args = services()[service]["build"]["args"]
    assert isinstance(args, dict), f"{service}: give build args as a mapping"
    return {key: str(value) for key, value in args.items()}


def interpolations(node: Any) -> Iterator[tuple[str, str]]:
    """Every `${NAME...}` in the compose file's values: (NAME, what follows the name)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from interpolations(value)
    elif isinstance(node, list):
        for value in node:
            yield from interpolations(value)
    elif isinstance(node, str):
        for match in INTERPOLATION.finditer(node):
            yield match["name"], match["rest"]


@dataclass
class Instruction:
    line: int
    keyword: str
    args: str


@cache
def dockerfile() -> tuple[Instruction, ...]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(DOCKERFILE.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continuation are ignored
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, args = text.partition(" ")
        instructions.append(Instruction(start, keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return tuple(instructions)


def dockerfile_stages() -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for instruction in dockerfile():
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def global_arg_defaults() -> dict[str, str]:
    defaults = {}
    for instruction in dockerfile():
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG" and "=" in instruction.args:
            name, value = instruction.args.split("=", 1)
            defaults[name] = value
    return defaults


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list)
    return [str(item) for item in value]


# --- compose file -----------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(compose()), key=lambda e: list(e.path)
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_runs_the_expected_images() -> None:
    images = {name: spec.get("image") for name, spec in services().items()}
    assert images["rabbitmq"] == "rabbitmq:3-management"
    assert images["couchdb"] == "couchdb:3"
    for name, repository in (("minio", "minio/minio"), ("minio-init", "minio/mc")):
        image = images[name]
        assert isinstance(image, str)
        assert image.startswith(f"{repository}:RELEASE."), f"{name}: pin a MinIO release tag"
    # Third-party images beyond MinIO's two are pinned to a release too.
    for name, repository in (
        ("prometheus", "prom/prometheus"),
        ("grafana", "grafana/grafana"),
        ("couchdb-setup", "curlimages/curl"),
    ):
        image = images[name]
        assert isinstance(image, str)
        assert re.fullmatch(rf"{re.escape(repository)}:v?\d+\.\d+\.\d+", image), image
    for name, image in images.items():
        if image is not None:
            assert not image.endswith(":latest"), f"{name}: {image}"
    assert set(APP_SERVICES) <= set(services())


def test_infrastructure_health_checks_use_tools_their_images_have() -> None:
    def check(name: str) -> str:
        return " ".join(services()[name]["healthcheck"]["test"])

    # Not `ping`: that answers before the boot (the definitions import) is complete.
    assert check("rabbitmq") == "CMD rabbitmq-diagnostics -q check_port_connectivity"
    assert check("minio") == "CMD mc ready local"
    # couchdb:3 purges curl after installing; bash and /dev/tcp are there.
    assert check("couchdb").startswith("CMD bash -c ")
    assert "/dev/tcp/127.0.0.1/5984" in check("couchdb")
    assert "GET /_up " in check("couchdb")
    assert "curl" not in check("couchdb")
    # prom/prometheus and grafana/grafana are busybox/Alpine based: wget, no curl.
    assert check("prometheus").startswith("CMD wget ")
    assert check("prometheus").endswith(" http://127.0.0.1:9090/-/ready")
    assert check("grafana").endswith(" http://127.0.0.1:3000/api/health")


def test_scaled_services_have_no_fixed_name_and_no_published_port() -> None:
    for name in SCALED_SERVICES:
        spec = services()[name]
        for key in ("container_name", "ports", "hostname"):
            assert key not in spec, f"{name}: `{key}` breaks `--scale {name}=N`"
    assert all("container_name" not in spec for spec in services().values())


def test_upload_publishes_its_port() -> None:
    ports = services()["upload"]["ports"]
    assert [str(port).rsplit(":", 1)[1] for port in ports] == [build_args("upload")["PORT"]]
    assert str(ports[0]).startswith("${UPLOAD_PORT:-8000}:")


def test_dependencies_wait_for_health_and_bucket_creation() -> None:
    for name, spec in services().items():
        depends_on = spec.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for target, rule in depends_on.items():
            condition = rule["condition"]
            target_spec = services()[target]
            if condition == "service_healthy":
                assert "test" in target_spec.get("healthcheck", {}) or "build" in target_spec
            elif condition == "service_completed_successfully":
                assert target_spec.get("restart") == "no", f"{target} is a one-shot job"
            else:
                pytest.fail(f"{name} -> {target}: wait for health, not {condition}")
    waits = {name: set(spec.get("depends_on", {})) for name, spec in services().items()}
    assert all("rabbitmq" in waits[name] for name in APP_SERVICES)
    assert "minio-init" in waits["upload"]
    assert "minio-init" in waits["imageproc_runner"]
    assert "couchdb" in waits["provenancedb"]
    assert services()["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    # The broker boots from the rendered definitions; CouchDB is set up before migration.
    assert waits["rabbitmq"] == {"rabbitmq-definitions"}
    assert waits["couchdb-setup"] == {"couchdb", PRODUCTION_CHECK}
    assert waits["provenancedb-migrate"] == {"couchdb-setup"}
    assert waits["grafana"] == {"prometheus", PRODUCTION_CHECK}


def test_minio_init_creates_both_buckets() -> None:
    spec = services()["minio-init"]
    script = "\n".join(spec["entrypoint"])
    for bucket in ("S3_INPUT_BUCKET", "S3_OUTPUT_BUCKET"):
        assert f'mc mb --ignore-existing "imagemesh/$${bucket}"' in script
        assert spec["environment"][bucket] == f"${{{bucket}:-{env_example()[bucket]}}}"


def test_minio_init_gives_each_service_a_user_with_only_its_buckets(tmp_path: Path) -> None:
    """Run minio-init's script with a stand-in `mc` that records each call and keeps each
    policy it is given: the policies must be valid JSON granting exactly what each needs."""
    script = services()["minio-init"]["entrypoint"][2].replace("$$", "$")
    fake_mc = (
        f'mc() {{ echo "$*" >> {tmp_path}/calls; '
        f'if [ "$2 $3" = "policy create" ]; then cp "$6" {tmp_path}/"$5".json; fi; }}\n'
    )
    env = {
        "PATH": os.environ["PATH"],
        "S3_ACCESS_KEY": "root",
        "S3_SECRET_KEY": "root-secret",
        "S3_INPUT_BUCKET": "in",
        "S3_OUTPUT_BUCKET": "out",
        "S3_UPLOAD_SECRET_KEY": "u-secret",
        "S3_RUNNER_SECRET_KEY": "r-secret",
    }
    subprocess.run(["sh", "-ec", fake_mc + script], env=env, check=True, cwd=tmp_path)

    def objects(policy: str, action: str) -> set[str]:
        statements = json.loads((tmp_path / f"{policy}.json").read_text())["Statement"]
        return {r for st in statements if action in st["Action"] for r in st["Resource"]}

    assert objects("imagemesh-upload", "s3:PutObject") == {"arn:aws:s3:::in/*"}
    assert objects("imagemesh-upload", "s3:GetObject") == {
        "arn:aws:s3:::in/*",
        "arn:aws:s3:::out/*",
    }
    # Upload erases a job's objects (DELETE /api/v1/jobs/ID): in both buckets; nobody else.
    assert objects("imagemesh-upload", "s3:DeleteObject") == {
        "arn:aws:s3:::in/*",
        "arn:aws:s3:::out/*",
    }
    assert objects("imagemesh-runner", "s3:DeleteObject") == set()
    assert objects("imagemesh-runner", "s3:PutObject") == {"arn:aws:s3:::out/*"}
    assert objects("imagemesh-runner", "s3:GetObject") == {
        "arn:aws:s3:::in/*",
        "arn:aws:s3:::out/*",
    }
    calls = (tmp_path / "calls").read_text()
    assert "admin user add imagemesh upload u-secret" in calls
    assert "admin policy attach imagemesh imagemesh-runner --user imageproc_runner" in calls
    for service, key in (
        ("upload", "S3_UPLOAD_SECRET_KEY"),
        ("imageproc_runner", "S3_RUNNER_SECRET_KEY"),
    ):
        assert environment(service)["S3_ACCESS_KEY"] == service
        assert environment(service)["S3_SECRET_KEY"].startswith(f"${{{key}:?")
    for service in ("imageproc", "provenancedb"):
        assert "S3_SECRET_KEY" not in environment(service)


def test_long_running_services_restart_have_limits_and_health() -> None:
    shutdown = settings_class("upload").model_fields["shutdown_timeout_seconds"].default
    jobs = {name for name, spec in services().items() if spec.get("restart") == "no"}
    assert jobs == {*OTHER_JOBS, *COMMANDS, PRODUCTION_CHECK}
    for name, spec in services().items():
        if name in jobs:
            continue
        assert spec.get("restart") == "unless-stopped", name
        limits = spec["deploy"]["resources"]["limits"]
        assert {"cpus", "memory"} <= set(limits), name
        assert "healthcheck" in spec, name
        if name in APP_SERVICES:
            grace = spec["stop_grace_period"]
            assert re.fullmatch(r"\d+s", grace), grace
            assert int(grace[:-1]) > shutdown, f"{name}: SIGKILL before the service drained"


def mounts(service: str) -> list[tuple[str, str, str]]:
    """A service's volumes as (source, target, options)."""
    result = []
    for volume in services()[service].get("volumes", []):
        source, target, *options = str(volume).split(":")
        result.append((source, target, ",".join(options)))
    return result


def test_data_lives_in_declared_named_volumes() -> None:
    declared = set(compose().get("volumes", {}))
    used = {
        source
        for name in services()
        for source, _, _ in mounts(name)
        if not source.startswith((".", "/"))
    }
    assert used == declared
    stateful = {"rabbitmq", "couchdb", "minio", "prometheus", "grafana"}
    data = {name for name in stateful for source, _, _ in mounts(name) if source in declared}
    assert data == stateful, "each server keeps its data in a named volume"


def test_every_mounted_host_path_exists_and_is_read_only() -> None:
    for name in services():
        for source, target, options in mounts(name):
            if source.startswith((".", "/")):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source} is missing"
                assert options == "ro", f"{name}: mount {source} read-only"
                assert target.startswith("/"), target


def test_services_and_their_jobs_run_hardened() -> None:
    """Read-only root, a /tmp tmpfs, no capabilities, no privilege gain: the services and
    every job built from their image. The third-party servers get no-new-privileges (their
    entrypoints drop from root to their own user, which needs capabilities)."""
    for name in (*APP_SERVICES, *COMMANDS, PRODUCTION_CHECK):
        spec = services()[name]
        assert spec.get("read_only") is True, name
        assert spec.get("tmpfs") == ["/tmp"], name
        assert spec.get("cap_drop") == ["ALL"], name
        assert "privileged" not in spec, name
        assert "cap_add" not in spec, name
    for name, spec in services().items():
        assert "no-new-privileges:true" in spec.get("security_opt", []), name
    for name in OTHER_JOBS:
        assert services()[name].get("cap_drop") == ["ALL"], name


def test_services_keep_the_glibc_arena_limit() -> None:
    """MALLOC_ARENA_MAX=2 (set in the image) keeps RSS from growing with threads: nothing
    in compose may override it."""
    for name in (*APP_SERVICES, *COMMANDS):
        assert environment(name).get("MALLOC_ARENA_MAX", "2") == "2", name


# --- RabbitMQ: definitions, plugins -----------------------------------------------------


def rabbitmq_conf() -> dict[str, str]:
    lines = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def container_path(service: str, host: str) -> str:
    """Where `service` mounts `host` (a path under deploy/, or a named volume)."""
    found = [target for source, target, _ in mounts(service) if source == host]
    assert len(found) == 1, f"{service} does not mount {host}"
    return found[0]


def test_committed_definitions_are_the_topology_the_code_declares() -> None:
    """deploy/rabbitmq/definitions.json is `python -m messaging.definitions` for the
    .env.example settings (which are the code's defaults: see below)."""
    from messaging import BrokerSettings
    from messaging.definitions import definitions, dump

    names = ("RABBITMQ_VHOST", "AMQP_EXCHANGE_EVENTS", "AMQP_EXCHANGE_PROV", "AMQP_RETRY_DELAYS")
    values = {name.lower(): env_example()[name] for name in names}
    settings = BrokerSettings.model_validate({**values, "rabbitmq_password": "unused"})
    committed = (DEPLOY / "rabbitmq" / "definitions.json").read_text()
    assert committed == dump(definitions(settings)), (
        "regenerate: python -m messaging.definitions > deploy/rabbitmq/definitions.json"
    )
    # The file holds no secret: users come from the .env at deploy time.
    data = json.loads(committed)
    assert data["users"] == []
    assert data["permissions"] == []
    assert "password" not in committed


def test_rabbitmq_boots_from_the_rendered_definitions() -> None:
    job = services()["rabbitmq-definitions"]
    *_, topology_in, rendered = job["command"]
    # The job reads the committed file and writes into the volume rabbitmq loads from.
    assert container_path("rabbitmq-definitions", "./rabbitmq/definitions.json") == topology_in
    volume = "rabbitmq-definitions"
    assert rendered.startswith(container_path(volume, volume) + "/")
    loaded = container_path("rabbitmq", volume) + "/" + rendered.rsplit("/", 1)[1]
    assert rabbitmq_conf()["load_definitions"] == loaded
    assert [target for source, target, _ in mounts("rabbitmq") if source == volume] == [
        loaded.rsplit("/", 1)[0]
    ]
    assert dict((s, o) for s, _, o in mounts("rabbitmq"))[volume] == "ro"
    # conf.d keeps the image's own defaults (10-defaults.conf) and adds ours after them.
    conf = container_path("rabbitmq", "./rabbitmq/rabbitmq.conf")
    assert re.fullmatch(r"/etc/rabbitmq/conf\.d/[2-9]\d-\w+\.conf", conf), conf
    # Nothing else could create users: the node ignores RABBITMQ_DEFAULT_* with definitions.
    assert not any(var.startswith("RABBITMQ_DEFAULT_") for var in environment("rabbitmq"))
    assert job["network_mode"] == "none", "it needs no network"


def test_rabbitmq_exposes_per_queue_prometheus_metrics() -> None:
    plugins = (DEPLOY / "rabbitmq" / "enabled_plugins").read_text().strip()
    assert re.fullmatch(r"\[[a-z_,]+\]\.", plugins), plugins
    assert {"rabbitmq_management", "rabbitmq_prometheus"} <= set(plugins[1:-2].split(","))
    assert (
        container_path("rabbitmq", "./rabbitmq/enabled_plugins") == "/etc/rabbitmq/enabled_plugins"
    )
    # Queue depth per queue (rabbitmq_queue_messages_ready{queue=...}), not only totals.
    assert rabbitmq_conf()["prometheus.return_per_object_metrics"] == "true"
    assert "15692" in [str(port) for port in services()["rabbitmq"]["expose"]]


# --- CouchDB set-up, Prometheus, Grafana ----------------------------------------------------


def run_couchdb_setup(tmp_path: Path, answers: str) -> tuple[int, str]:
    """couchdb-setup's script with a stand-in `curl` that records its arguments and
    answers each call with the next status code of `answers`."""
    script = services()["couchdb-setup"]["entrypoint"][2].replace("$$", "$")
    (tmp_path / "answers").write_text(answers.replace(" ", "\n") + "\n")
    fake_curl = (
        f'curl() {{ echo "$*" >> {tmp_path}/calls; '
        f"head -n 1 {tmp_path}/answers; sed -i 1d {tmp_path}/answers; }}\n"
    )
    env = {
        "PATH": os.environ["PATH"],
        "COUCHDB_ADMIN_USER": "admin",
        "COUCHDB_ADMIN_PASSWORD": "s3cret",
    }
    result = subprocess.run(
        ["sh", "-ec", fake_curl + script], env=env, cwd=tmp_path, capture_output=True, check=False
    )
    return result.returncode, (tmp_path / "calls").read_text()


def test_couchdb_setup_creates_the_system_databases_idempotently(tmp_path: Path) -> None:
    code, calls = run_couchdb_setup(tmp_path, "201 201 412")
    assert code == 0
    for db in ("_users", "_replicator", "_global_changes"):
        assert f"-X PUT -u admin:s3cret http://couchdb:5984/{db}" in calls
    spec = services()["couchdb-setup"]
    assert spec["environment"]["COUCHDB_ADMIN_PASSWORD"].startswith("${COUCHDB_ADMIN_PASSWORD:?")
    assert spec["depends_on"] == {
        "couchdb": {"condition": "service_healthy"},
        PRODUCTION_CHECK: {"condition": "service_completed_successfully"},
    }


def test_couchdb_setup_fails_loudly(tmp_path: Path) -> None:
    code, calls = run_couchdb_setup(tmp_path, "401")
    assert code != 0
    assert calls.count("-X PUT") == 1, "stops at the first failure"


def test_prometheus_and_grafana_mount_their_configuration() -> None:
    assert container_path("prometheus", "./prometheus/prometheus.yml") == (
        "/etc/prometheus/prometheus.yml"
    )
    assert "--config.file=/etc/prometheus/prometheus.yml" in services()["prometheus"]["command"]
    storage = container_path("prometheus", "prometheus-data")
    assert f"--storage.tsdb.path={storage}" in services()["prometheus"]["command"]
    assert container_path("grafana", "./grafana/provisioning") == "/etc/grafana/provisioning"
    # Where grafana/provisioning/dashboards/imagemesh.yml looks (test_observability.py).
    assert container_path("grafana", "./grafana/dashboards") == "/etc/grafana/dashboards"
    env = environment("grafana")
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    for name in ("prometheus", "grafana"):
        for published in services()[name]["ports"]:
            assert str(published).startswith("127.0.0.1:"), f"{name}: loopback only"


# --- configuration: code, .env.example and compose agree --------------------------------


def test_every_setting_is_documented_in_env_example() -> None:
    documented = set(env_example())
    for service in APP_SERVICES:
        missing = settings_vars(service) - documented
        assert not missing, f"{service} reads {sorted(missing)}, not in .env.example"


def test_env_example_has_no_stale_names() -> None:
    read = set().union(*(settings_vars(service) for service in APP_SERVICES))
    read |= set().union(*(settings_vars(*command) for command in COMMAND_SETTINGS))
    for name, reader in READ_OUTSIDE_SETTINGS.items():
        assert name not in read, f"{name} is read by a service now: drop it from the list"
        assert name in reader.read_text(), f"{name}: {reader} no longer reads it"
    stale = set(env_example()) - read - set(READ_OUTSIDE_SETTINGS)
    assert not stale, f".env.example names nothing reads: {sorted(stale)}"


def test_env_example_values_match_the_code_defaults() -> None:
    classes = [settings_class(service) for service in APP_SERVICES]
    classes += [settings_class(*command) for command in COMMAND_SETTINGS]
    for cls in classes:
        secrets = {name: "x" for name, field in cls.model_fields.items() if field.is_required()}
        for name, field in cls.model_fields.items():
            var = name.upper()
            if field.is_required() or is_secret(field):
                continue
            if field.default_factory is not None or var in ENV_EXAMPLE_DIFFERS_FROM_CODE:
                assert var in ENV_EXAMPLE_DIFFERS_FROM_CODE, f"{var}: computed default, say why"
                continue
            # Parsed as the service parses it (e.g. comma-separated lists).
            value = getattr(cls.model_validate({**secrets, name: env_example()[var]}), name)
            assert value == field.default, f"{var}: .env.example {value!r}, code {field.default!r}"


def test_each_service_gets_every_setting_it_reads_and_no_other() -> None:
    for service in APP_SERVICES:
        wanted = settings_vars(service)
        given = set(environment(service))
        excused = set(LEFT_TO_CODE_DEFAULT[service])
        missing = wanted - given - excused
        assert not missing, f"{service}: compose does not set {sorted(missing)}"
        stale = excused - (wanted - given)
        assert not stale, f"{service}: LEFT_TO_CODE_DEFAULT lists {sorted(stale)} needlessly"
        unknown = given - wanted
        assert not unknown, f"{service}: compose sets {sorted(unknown)}, which it never reads"


def test_services_reach_each_other_by_compose_service_name() -> None:
    for service in APP_SERVICES:
        env = environment(service)
        for var, value in CONTAINER_VALUES.items():
            if var in env:
                assert env[var] == value, f"{service}: {var}={env[var]!r}"
    hosts = {"rabbitmq", "minio", "couchdb"}
    assert hosts <= set(services())


#: Secrets no Settings field reads under that name: compose hands them to a service as
#: another variable (each service's own MinIO user's key becomes its S3_SECRET_KEY).
COMPOSE_ONLY_SECRETS = {"S3_UPLOAD_SECRET_KEY", "S3_RUNNER_SECRET_KEY", "GRAFANA_ADMIN_PASSWORD"}
#: What compose makes of the settings .env.example leaves unset (`#NAME=value`).
COMPOSE_DEFAULTS_OF_UNSET = {"IMAGEMESH_ENV": "production"}
#: Where compose's default is not .env.example's value, and why.
COMPOSE_DEFAULT_DIFFERS = {
    # .env.example allows loopback so that webhooks can be tried on one machine; a
    # deployment allows no non-global target unless its .env says which.
    "WEBHOOK_ALLOWED_NETWORKS": "",
}
#: Not secret, but compose demands them too: API tokens are on in compose.
REQUIRED_IN_COMPOSE = {"UPLOAD_API_TOKEN_HASHES"}


def test_compose_variables_come_from_env_example_and_secrets_have_no_default() -> None:
    documented = env_example()
    secrets = secret_vars() | COMPOSE_ONLY_SECRETS
    demanded = secrets | REQUIRED_IN_COMPOSE
    assert secrets == {
        "RABBITMQ_PASSWORD",
        "RABBITMQ_UPLOAD_PASSWORD",
        "RABBITMQ_IMAGEPROC_RUNNER_PASSWORD",
        "RABBITMQ_IMAGEPROC_PASSWORD",
        "RABBITMQ_PROVENANCEDB_PASSWORD",
        "S3_SECRET_KEY",
        "S3_UPLOAD_SECRET_KEY",
        "S3_RUNNER_SECRET_KEY",
        "COUCHDB_PASSWORD",
        "COUCHDB_AUDITOR_PASSWORD",
        "COUCHDB_ADMIN_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
        "UPLOAD_SESSION_SECRET",
        "UPLOAD_WEBHOOK_SECRET",
    }
    seen = set()
    for name, rest in interpolations(compose()):
        seen.add(name)
        assert name in documented, f"compose uses ${{{name}}}, not in .env.example"
        if name in env_example_unset():
            # Left unset in .env.example so that compose chooses its own default.
            assert rest == f":-{COMPOSE_DEFAULTS_OF_UNSET[name]}", name
        elif name in demanded:
            assert rest.startswith(":?"), f"{name}: a secret has no default, compose demands it"
            assert rest[2:].strip(), f"{name}: say how to set it"
        elif name in COMPOSE_DEFAULT_DIFFERS:
            assert rest == f":-{COMPOSE_DEFAULT_DIFFERS[name]}", name
        else:
            assert rest == f":-{documented[name]}", f"{name}: default must be .env.example's"
    assert demanded <= seen


# --- images: Dockerfile, build args, health ---------------------------------------------


def test_built_services_run_a_real_module_on_the_port_their_settings_bind() -> None:
    built = {name for name, spec in services().items() if "build" in spec}
    assert built == set(APP_SERVICES) | set(COMMANDS) | {PRODUCTION_CHECK}
    for name in APP_SERVICES:
        build = services()[name]["build"]
        assert (COMPOSE_FILE.parent / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE
        args = build_args(name)
        package = args["SERVICE"]
        assert package == name
        assert importlib.util.find_spec(f"{package}.__main__") is not None, package
        assert args["PORT_VAR"] == PORT_SETTINGS[name]
        assert int(args["PORT"]) == default_port(name)
        port_field = args["PORT_VAR"].lower()
        field = settings_class(package).model_fields[port_field]
        assert field.default == int(args["PORT"]), f"{name}: PORT arg != {port_field} default"
        main = (ROOT / "services" / package / package / "__main__.py").read_text()
        assert re.search(rf"port=lambda s: s\.{port_field}\b", main), (
            f"{name} does not bind {port_field}"
        )
        # The container listens where the image's HEALTHCHECK looks.
        assert environment(name)[args["PORT_VAR"]] == args["PORT"]
        assert "test" not in services()[name]["healthcheck"], "keep the image's check"


def test_commands_run_once_from_their_services_image_with_their_settings() -> None:
    for name, command in COMMANDS.items():
        spec = services()[name]
        image = services()[command.service]["build"]
        assert spec["build"] == image, f"{name}: not {command.service}'s image"
        assert spec["command"][:3] == ["python", "-m", command.module]
        assert importlib.util.find_spec(command.module) is not None, command.module
        assert spec["restart"] == "no"
        assert spec["healthcheck"] == {"disable": True}, f"{name} serves no /healthz"
        assert set(environment(name)) == settings_vars(command.service, command.settings)
        for var, value in CONTAINER_VALUES.items():
            if var in environment(name) and spec.get("network_mode") != "none":
                assert environment(name)[var] == value, f"{name}: {var}"
        # What needs it starts only once it succeeded.
        waits = services()[command.before]["depends_on"][name]
        assert waits == {"condition": "service_completed_successfully"}


def test_dockerfile_is_multi_stage_on_a_pinned_python_base() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    defaults = global_arg_defaults()
    for stage in stages:
        image = stage[0].args.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], image)
        assert image.startswith("python:3.11-slim-bookworm"), image
        assert "@sha256:" in image or (":" in image and not image.endswith(":latest")), image


def test_dockerfile_installs_only_the_service_from_the_lock_file() -> None:
    args: dict[str, list[str]] = defaultdict(list)
    for instruction in dockerfile():
        args[instruction.keyword].append(instruction.args)
    runs = " ".join(args["RUN"])
    assert re.search(r'pip install [^&]*"uv==\$\{UV_VERSION\}"', runs)
    assert any(re.fullmatch(r"UV_VERSION=\d+\.\d+\.\d+", arg) for arg in args["ARG"])
    syncs = re.findall(r"uv sync ([^&]*)", runs)
    assert syncs
    for options in syncs:
        for flag in ("--frozen", "--no-dev", '--package "imagemesh-${SERVICE_DIST}"'):
            assert flag in options, f"uv sync without {flag}"
    # Every workspace member's manifest is copied before the dependency layer is built.
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    members = {
        str(path.relative_to(ROOT))
        for pattern in workspace["members"]
        for path in ROOT.glob(f"{pattern}/pyproject.toml")
    }
    copied = {line.split()[0] for line in args["COPY"]}
    assert members, "no workspace members found"
    assert members <= copied, f"not copied for the dependency layer: {sorted(members - copied)}"
    assert any(line.startswith("pyproject.toml uv.lock ") for line in args["COPY"])


def test_dockerfile_runtime_is_unprivileged_with_health_and_python_m() -> None:
    runtime = dockerfile_stages()[-1]
    keywords = [i.keyword for i in runtime]
    user = [i.args for i in runtime if i.keyword == "USER"]
    assert user, "the runtime stage needs a USER"
    name = user[-1].split(":")[0]
    assert name not in {"root", "0"}, user[-1]
    env = " ".join(i.args for i in runtime if i.keyword == "ENV")
    for setting in ("MALLOC_ARENA_MAX=2", "PYTHONUNBUFFERED=1", "HTTP_HOST=0.0.0.0"):
        assert setting in env, setting
    assert "IMAGEMESH_SERVICE=${SERVICE}" in env
    assert keywords.count("HEALTHCHECK") == 1
    assert keywords.count("CMD") == 1
    cmd = next(i.args for i in runtime if i.keyword == "CMD")
    assert re.search(r"\bpython -m \"?\$\{?IMAGEMESH_SERVICE\b", cmd), cmd
    assert keywords.index("USER") < keywords.index("CMD")


def healthcheck_command() -> list[str]:
    args = next(i.args for i in dockerfile() if i.keyword == "HEALTHCHECK")
    _, _, command = args.partition(" CMD ")
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"], argv
    return [sys.executable, *argv[1:]]


@pytest.fixture
def healthz_server() -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def run_healthcheck(env: dict[str, str]) -> int:
    base = {key: value for key, value in os.environ.items() if not key.endswith("_PORT")}
    result = subprocess.run(
        healthcheck_command(), env={**base, **env}, capture_output=True, timeout=20, check=False
    )
    return result.returncode


def test_dockerfile_healthcheck_follows_the_port_setting(healthz_server: int) -> None:
    port = str(healthz_server)
    # The port setting wins over the baked-in default...
    assert (
        run_healthcheck(
            {"IMAGEMESH_PORT_VAR": "UPLOAD_PORT", "UPLOAD_PORT": port, "IMAGEMESH_PORT": "1"}
        )
        == 0
    )
    # ...the default applies when the setting is not set...
    assert run_healthcheck({"IMAGEMESH_PORT_VAR": "UPLOAD_PORT", "IMAGEMESH_PORT": port}) == 0
    # ...and nothing listening is unhealthy.
    assert run_healthcheck({"IMAGEMESH_PORT_VAR": "UPLOAD_PORT", "IMAGEMESH_PORT": "9"}) != 0


def test_build_context_sends_only_what_the_image_needs() -> None:
    next_to_dockerfile = DOCKERFILE.with_name("Dockerfile.dockerignore").read_text()
    assert (ROOT / ".dockerignore").read_text() == next_to_dockerfile, (
        "keep /.dockerignore a copy of deploy/Dockerfile.dockerignore"
    )
    patterns = [
        line.strip()
        for line in next_to_dockerfile.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "allow-list: exclude everything first"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    # Of the clients, only the manifest: uv checks the whole workspace against uv.lock.
    assert allowed == {
        "pyproject.toml",
        "uv.lock",
        "libs",
        "services",
        "clients/cli/pyproject.toml",
    }
    for instruction in dockerfile():
        if instruction.keyword == "COPY" and not instruction.args.startswith("--from"):
            *sources, _ = shlex.split(instruction.args)
            for source in sources:
                assert any(source == a or source.startswith(f"{a}/") for a in allowed) or (
                    source.split("/")[0] in allowed
                ), f"COPY {source} is outside the context"
                assert (ROOT / source).exists(), f"COPY {source}: no such path"
