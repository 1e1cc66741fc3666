"""Static checks of the container deployment: deploy/compose.yml, deploy/Dockerfile and
their agreement with the services' settings and `.env.example`. No Docker needed."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
import typing
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
from pydantic import SecretStr
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA_FILE = Path(__file__).with_name("compose-spec.json")
STACK_TOOL = ROOT / "tools" / "stack.py"

#: The four services (Python package = compose service name = Dockerfile SERVICE arg).
APP_SERVICES = ("upload", "imageproc_runner", "imageproc", "provenancedb")
#: Competing consumers, run with `--scale`: no fixed name, no published port.
SCALED_SERVICES = ("imageproc", "imageproc_runner", "provenancedb")
#: One-off jobs built like a service, running one of its commands: compose service ->
#: (service, module run with `python -m`, the command's settings class).
COMMANDS = {
    "provenancedb-migrate": ("provenancedb", "provenancedb.migrate", "MigrateSettings"),
    "rabbitmq-init": ("upload", "messaging.provision", "messaging.provision:ProvisionSettings"),
}
#: Settings classes of the services' commands (`python -m ...`): their variables are
#: documented in .env.example too.
COMMAND_SETTINGS = (
    ("provenancedb", "MigrateSettings"),
    ("provenancedb", "AuditSettings"),
    ("upload", "messaging.provision:ProvisionSettings"),
)

#: Variables in .env.example that no service's Settings reads, and who reads them.
READ_OUTSIDE_SETTINGS = {
    "RABBITMQ_MANAGEMENT_PORT": STACK_TOOL,  # the local stack's management listener
    # Each service's own MinIO user (compose's minio-init creates them; the services read
    # them as S3_SECRET_KEY). moto, the local S3, has no per-user policies.
    "S3_UPLOAD_SECRET_KEY": COMPOSE_FILE,
    "S3_RUNNER_SECRET_KEY": COMPOSE_FILE,
}

#: Settings a service reads that its compose `environment:` leaves to the code's default,
#: with the reason. Empty: compose sets every one explicitly.
LEFT_TO_CODE_DEFAULT: dict[str, dict[str, str]] = {service: {} for service in APP_SERVICES}

#: Where a .env.example value may differ from the code's default, and why.
ENV_EXAMPLE_DIFFERS_FROM_CODE = {
    "IMAGEPROC_CONCURRENCY": "code defaults to os.cpu_count(); the example pins 2",
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


@cache
def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f".env.example:{number}: not NAME=value: {line!r}"
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f".env.example:{number}: {name!r}"
        assert name not in values, f".env.example: {name} is set twice"
        values[name] = value
    return values


def settings_class(service: str, name: str = "Settings") -> type[BaseSettings]:
    """`name` in the service's settings module, or `module:Class` anywhere in its image."""
    module, _, name = name.rpartition(":") if ":" in name else (f"{service}.settings", "", name)
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type)
    assert issubclass(cls, BaseSettings)
    return cls


def settings_vars(service: str, name: str = "Settings") -> set[str]:
    """The environment variables a service's Settings (or its command's `name` class)
    reads: its field names, uppercased."""
    cls = settings_class(service, name)
    assert not cls.model_config.get("env_prefix"), f"{service}: an env_prefix changes the names"
    return {name.upper() for name in cls.model_fields}


def is_secret(field: Any) -> bool:
    return SecretStr in (field.annotation, *typing.get_args(field.annotation))


def secret_vars() -> set[str]:
    classes = [settings_class(service) for service in APP_SERVICES]
    classes += [settings_class(*command) for command in COMMAND_SETTINGS]
    return {
        name.upper()
        for cls in classes
        for name, field in cls.model_fields.items()
        if is_secret(field)
    }


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
    for name, image in images.items():
        if image is not None:
            assert not image.endswith(":latest"), f"{name}: {image}"
    assert set(APP_SERVICES) <= set(services())


def test_infrastructure_health_checks_use_tools_their_images_have() -> None:
    def check(name: str) -> str:
        return " ".join(services()[name]["healthcheck"]["test"])

    assert check("rabbitmq") == "CMD rabbitmq-diagnostics -q ping"
    assert check("minio") == "CMD mc ready local"
    # couchdb:3 purges curl after installing; bash and /dev/tcp are there.
    assert check("couchdb").startswith("CMD bash -c ")
    assert "/dev/tcp/127.0.0.1/5984" in check("couchdb")
    assert "GET /_up " in check("couchdb")
    assert "curl" not in check("couchdb")


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
    waits = {name: set(services()[name]["depends_on"]) for name in APP_SERVICES}
    assert all("rabbitmq" in targets for targets in waits.values())
    assert "minio-init" in waits["upload"]
    assert "minio-init" in waits["imageproc_runner"]
    assert "couchdb" in waits["provenancedb"]
    assert services()["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"


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
    for name, spec in services().items():
        if name == "minio-init" or name in COMMANDS:
            continue
        assert spec.get("restart") == "unless-stopped", name
        limits = spec["deploy"]["resources"]["limits"]
        assert {"cpus", "memory"} <= set(limits), name
        assert "healthcheck" in spec, name
        if name in APP_SERVICES:
            grace = spec["stop_grace_period"]
            assert re.fullmatch(r"\d+s", grace), grace
            assert int(grace[:-1]) > shutdown, f"{name}: SIGKILL before the service drained"


def test_data_lives_in_declared_named_volumes() -> None:
    declared = set(compose().get("volumes", {}))
    used = set()
    for name in ("rabbitmq", "couchdb", "minio"):
        for volume in services()[name]["volumes"]:
            source = str(volume).split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source} is missing"
            else:
                used.add(source)
    assert used == declared
    assert len(used) == 3


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
COMPOSE_ONLY_SECRETS = {"S3_UPLOAD_SECRET_KEY", "S3_RUNNER_SECRET_KEY"}
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
    }
    seen = set()
    for name, rest in interpolations(compose()):
        seen.add(name)
        assert name in documented, f"compose uses ${{{name}}}, not in .env.example"
        if name in demanded:
            assert rest.startswith(":?"), f"{name}: a secret has no default, compose demands it"
            assert rest[2:].strip(), f"{name}: say how to set it"
        else:
            assert rest == f":-{documented[name]}", f"{name}: default must be .env.example's"
    assert demanded <= seen


# --- images: Dockerfile, build args, health ---------------------------------------------


def test_built_services_run_a_real_module_on_the_port_their_settings_bind() -> None:
    built = {name for name, spec in services().items() if "build" in spec}
    assert built == set(APP_SERVICES) | set(COMMANDS)
    for name in APP_SERVICES:
        build = services()[name]["build"]
        assert (COMPOSE_FILE.parent / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE
        args = build_args(name)
        package = args["SERVICE"]
        assert package == name
        assert importlib.util.find_spec(f"{package}.__main__") is not None, package
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
    for name, (service, module, settings) in COMMANDS.items():
        spec = services()[name]
        assert spec["build"] == services()[service]["build"], f"{name}: not {service}'s image"
        assert spec["command"] == ["python", "-m", module]
        assert importlib.util.find_spec(module) is not None, module
        assert spec["restart"] == "no"
        assert spec["healthcheck"] == {"disable": True}, f"{name} serves no /healthz"
        assert set(environment(name)) == settings_vars(service, settings)
        for var, value in CONTAINER_VALUES.items():
            if var in environment(name):
                assert environment(name)[var] == value, f"{name}: {var}"
        # The service starts only once its command succeeded.
        waits = services()[service]["depends_on"][name]
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
