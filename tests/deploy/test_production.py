"""Production is production: compose runs as production unless `.env` says otherwise, and
every tool and container refuses the "dev only" secrets of `.env.example` there: the
services and the commands built from their image check their own settings (servicekit),
the containers that run no Python of ours wait for compose's `production-check` job. The
tools are run for real, against loopback listeners that count connections: they must
refuse before touching any server."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import stack

from servicekit import DEVELOPMENT_SECRETS, load_settings
from tests.deploy.common import (
    APP_SERVICES,
    DEPLOY,
    ENV_EXAMPLE,
    ROOT,
    env_example,
    env_example_unset,
    is_secret,
    settings_class,
)
from tests.deploy.test_compose import (
    COMMANDS,
    COMPOSE_ONLY_SECRETS,
    INTERPOLATION,
    PRODUCTION_CHECK,
    environment,
    interpolations,
    services,
)
from tests.deploy.test_k8s import JOBS, config_map, objects, pod_environment

#: The tools that provision with secrets, as run in compose and Kubernetes (the
#: definitions job's input is the committed topology).
TOOLS = {
    "messaging.provision": [],
    "messaging.definitions": ["render", str(DEPLOY / "rabbitmq" / "definitions.json")],
    "provenancedb.migrate": [],
}


def development_only() -> set[str]:
    """The variables .env.example ships with a development secret ("dev only")."""
    return {name for name, value in env_example().items() if value in DEVELOPMENT_SECRETS}


def resolve(value: str, dotenv: Mapping[str, str]) -> str:
    """Compose's interpolation of `value` with `dotenv` as the .env file."""

    def one(match: re.Match[str]) -> str:
        name, rest = match["name"], match["rest"]
        if rest.startswith(":-"):
            return dotenv.get(name) or rest[2:]
        if rest.startswith(":?"):
            assert dotenv.get(name), f"compose stops: {rest[2:]}"
            return dotenv[name]
        assert not rest, rest
        return dotenv.get(name, "")

    return INTERPOLATION.sub(one, value).replace("$$", "$")


def copied_env_example() -> dict[str, str]:
    """`cp .env.example .env`, as compose reads it (commented-out settings stay unset)."""
    return {k: v for k, v in env_example().items() if k not in env_example_unset()}


# --- compose defaults to production -------------------------------------------------------


def test_compose_runs_as_production_unless_env_says_otherwise() -> None:
    ours = (*APP_SERVICES, *COMMANDS, PRODUCTION_CHECK)
    for name in ours:
        assert environment(name)["IMAGEMESH_ENV"] == "${IMAGEMESH_ENV:-production}", name
    for name in services():
        if "IMAGEMESH_ENV" in environment(name):
            assert name in ours, name
    # A copy of .env.example leaves it unset: compose's default applies...
    assert "IMAGEMESH_ENV" in env_example_unset()
    assert "IMAGEMESH_ENV" not in stack.parse_dotenv(ENV_EXAMPLE.read_text())
    assert resolve("${IMAGEMESH_ENV:-production}", copied_env_example()) == "production"
    # ...and a .env that says development wins.
    dotenv = {**copied_env_example(), "IMAGEMESH_ENV": "development"}
    assert resolve("${IMAGEMESH_ENV:-production}", dotenv) == "development"


def test_the_local_stack_keeps_development(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make up` reads .env.example (no .env) with the same file: IMAGEMESH_ENV unset, so
    the services' default, development, applies and they start with the dev secrets."""
    config = stack.load_config(env_file=ENV_EXAMPLE, environ={}).values
    assert "IMAGEMESH_ENV" not in config
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    for service in APP_SERVICES:
        settings = load_settings(settings_class(service), service)
        assert settings.model_dump()["imagemesh_env"] == "development", service


# --- every container that takes a secret refuses the development ones -------------------


def test_every_secret_compose_demands_is_a_known_development_secret() -> None:
    """The one list (servicekit's DEVELOPMENT_SECRETS) knows .env.example's value of every
    secret compose hands out, not only of those a service's settings read."""
    demanded = {name for name, rest in interpolations(services()) if rest.startswith(":?")}
    secrets = {name for name in demanded if name != "UPLOAD_API_TOKEN_HASHES"}
    assert secrets >= COMPOSE_ONLY_SECRETS
    assert secrets <= development_only(), "each secret's example value is a dev-only one"


def test_the_production_check_covers_every_development_secret_compose_uses() -> None:
    spec = services()[PRODUCTION_CHECK]
    assert spec["command"][:3] == ["python", "-m", "servicekit.production"]
    checked = spec["command"][3:]
    env = environment(PRODUCTION_CHECK)
    assert set(env) == {"IMAGEMESH_ENV", *checked}
    for name in checked:
        # Under its .env name, so that the refusal names what to change.
        assert INTERPOLATION.fullmatch(env[name])["name"] == name, name  # type: ignore[index]
    # What the other containers take is in the next test; more is checked early only.
    used = {name for name, _ in interpolations(services())}
    assert set(checked) <= development_only() & used
    assert spec["network_mode"] == "none"


def test_every_container_taking_a_secret_refuses_development_ones() -> None:
    """A container whose environment takes a dev-only variable either checks it itself
    (our image, with a settings class whose SecretStr field receives it and which has
    IMAGEMESH_ENV) or starts only after production-check succeeded."""
    dev_only = development_only()
    checked = set(services()[PRODUCTION_CHECK]["command"][3:])
    commands = {name: settings_class(c.service, c.settings) for name, c in COMMANDS.items()}
    classes = {**{s: settings_class(s) for s in APP_SERVICES}, **commands}
    taking = 0
    for name, spec in services().items():
        if name == PRODUCTION_CHECK:
            continue
        taken = {
            var: match["name"]
            for var, value in environment(name).items()
            if (match := INTERPOLATION.search(value)) and match["name"] in dev_only
        }
        if not taken:
            continue
        taking += 1
        if name in classes:
            fields = classes[name].model_fields
            assert "imagemesh_env" in fields, f"{name} cannot know it is in production"
            for var in taken:
                field = fields[var.lower()]
                assert is_secret(field) or var == "S3_ACCESS_KEY", f"{name}: {var} unchecked"
        else:
            waits = spec.get("depends_on", {}).get(PRODUCTION_CHECK)
            assert waits == {"condition": "service_completed_successfully"}, name
            assert set(taken.values()) <= checked, name
    third_party = {"minio", "minio-init", "couchdb", "couchdb-setup", "grafana"}
    assert taking >= len(APP_SERVICES) + len(COMMANDS) + len(third_party)
    for name in third_party:
        assert PRODUCTION_CHECK in services()[name]["depends_on"], name


def run_module(module: str, args: list[str], env: Mapping[str, str], cwd: Path) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            # where the code under test is, when not the venv's editable installs
            **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
            **env,
        },
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stderr


def test_production_check_refuses_a_copied_env_example_naming_each(tmp_path: Path) -> None:
    """The job as compose runs it, with .env.example copied to .env."""
    spec = services()[PRODUCTION_CHECK]
    module, args = spec["command"][2], spec["command"][3:]

    def run(dotenv: Mapping[str, str]) -> tuple[int, str]:
        env = {var: resolve(value, dotenv) for var, value in environment(PRODUCTION_CHECK).items()}
        return run_module(module, args, env, tmp_path)

    code, err = run(copied_env_example())
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("servicekit.production: invalid configuration: ")
    for name in args:
        assert f"{name} is a development default from .env.example" in lines[0], name
    assert "IMAGEMESH_ENV=production" in lines[0]
    assert not any(secret in err for secret in DEVELOPMENT_SECRETS), "a secret was echoed"

    real = {**copied_env_example(), **{name: f"real-{name.lower()}" for name in args}}
    assert run(real) == (0, "")
    one_left = {**real, "GRAFANA_ADMIN_PASSWORD": env_example()["GRAFANA_ADMIN_PASSWORD"]}
    code, err = run(one_left)
    assert code == 2
    assert "GRAFANA_ADMIN_PASSWORD is a development default" in err
    assert "S3_SECRET_KEY" not in err
    # Local trials: IMAGEMESH_ENV=development in .env lets the dev secrets through.
    assert run({**copied_env_example(), "IMAGEMESH_ENV": "development"}) == (0, "")
    code, err = run({**real, "IMAGEMESH_ENV": "staging"})
    assert code == 2
    assert "IMAGEMESH_ENV must be development or production" in err


# --- the provisioning tools --------------------------------------------------------------


class Listener:
    """A loopback TCP port that accepts and closes connections, counting them."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return  # closed
            self.connections += 1
            connection.close()

    def close(self) -> None:
        # close() alone leaves accept() blocked on Linux (the join then waits it out):
        # shutdown() wakes it.
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        self.socket.close()
        self._thread.join(timeout=5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.close()


def tool_env(listener: Listener, **overrides: str) -> dict[str, str]:
    """.env.example's values, every server the tools could reach on the listener."""
    return {
        **env_example(),
        "RABBITMQ_HOST": "127.0.0.1",
        "RABBITMQ_PORT": str(listener.port),
        "RABBITMQ_MANAGEMENT_URL": f"http://127.0.0.1:{listener.port}",
        "COUCHDB_URL": f"http://127.0.0.1:{listener.port}",
        **overrides,
    }


@pytest.mark.parametrize("module", list(TOOLS))
def test_provisioning_tools_refuse_development_secrets_before_any_server(
    module: str, listener: Listener, tmp_path: Path
) -> None:
    args = [*TOOLS[module], str(tmp_path / "out.json")] if TOOLS[module] else []
    code, err = run_module(module, args, tool_env(listener, IMAGEMESH_ENV="production"), ROOT)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{module}: invalid configuration: ")
    couch = module.startswith("provenancedb")
    password = "COUCHDB_ADMIN_PASSWORD" if couch else "RABBITMQ_PASSWORD"
    assert f"{password} is a development default from .env.example" in lines[0]
    assert "IMAGEMESH_ENV=production" in lines[0]
    assert not any(secret in err for secret in DEVELOPMENT_SECRETS), "a secret was echoed"
    assert listener.connections == 0, "it reached a server first"
    assert not (tmp_path / "out.json").exists(), "it wrote password hashes"


@pytest.mark.parametrize("module", list(TOOLS))
def test_provisioning_tools_go_on_in_development_or_with_real_secrets(
    module: str, listener: Listener, tmp_path: Path
) -> None:
    """The control: the same run gets past the check (it then reaches the listener, or
    writes the definitions) in development, and in production with real secrets."""
    args = [*TOOLS[module], str(tmp_path / "out.json")] if TOOLS[module] else []
    real = {name: f"real-{name.lower()}" for name in development_only()}
    for overrides in ({"IMAGEMESH_ENV": "development"}, {"IMAGEMESH_ENV": "production", **real}):
        before = listener.connections
        code, err = run_module(module, args, tool_env(listener, **overrides), ROOT)
        assert "development default" not in err
        if module == "messaging.definitions":
            assert code == 0, err
            assert (tmp_path / "out.json").exists()
            (tmp_path / "out.json").unlink()
        else:
            assert code != 0, "the listener is no server"
            assert listener.connections > before, err


def test_kubernetes_jobs_and_deployments_run_as_production() -> None:
    """The ConfigMap says production (test_k8s); every pod reads it, and every Job's
    settings class has the switch, so the check applies there too."""
    assert config_map()["IMAGEMESH_ENV"] == "production"
    for name, (service, _, settings) in JOBS.items():
        assert "imagemesh_env" in settings_class(service, settings).model_fields, name
        literal, _ = pod_environment(objects("Job")[name])
        assert literal["IMAGEMESH_ENV"] == "production", name
    for deployment in objects("Deployment").values():
        literal, _ = pod_environment(deployment)
        assert literal["IMAGEMESH_ENV"] == "production"
