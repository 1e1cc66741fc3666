"""What the deployment checks share: the services, the settings they read (from their
settings classes), the ports their probes use, `.env.example`. Compose and Kubernetes are
both checked against these, so they cannot drift from the code or from each other."""

from __future__ import annotations

import importlib
import re
import typing
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from messaging.constants import SERVICES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ENV_EXAMPLE = ROOT / ".env.example"

#: The four services (Python package = compose service name = Dockerfile SERVICE arg).
APP_SERVICES = SERVICES
#: Competing consumers, run with `--scale` / several replicas.
SCALED_SERVICES = ("imageproc", "imageproc_runner", "provenancedb")
#: The setting holding the port each service serves /healthz, /readyz and /metrics on.
PORT_SETTINGS = {
    "upload": "UPLOAD_PORT",
    "imageproc_runner": "RUNNER_OPS_PORT",
    "imageproc": "IMAGEPROC_OPS_PORT",
    "provenancedb": "PROVENANCEDB_OPS_PORT",
}
#: Settings classes of the services' commands (`python -m ...`), as (service whose image
#: runs it, class): their variables are documented in .env.example too.
COMMAND_SETTINGS = (
    ("provenancedb", "MigrateSettings"),
    ("provenancedb", "AuditSettings"),
    ("upload", "messaging.provision:ProvisionSettings"),
    ("upload", "messaging.definitions:UsersSettings"),
)


#: `#NAME=value` in .env.example: a setting documented with the code's default but left
#: unset, so that each runner chooses (IMAGEMESH_ENV: compose production, the local stack
#: development).
UNSET_SETTING = re.compile(r"#([A-Z][A-Z0-9_]*)=(.*)")


@cache
def env_example() -> dict[str, str]:
    """Every setting .env.example documents, with its value (`env_example_unset` says
    which of them a copy of the file leaves unset)."""
    values: dict[str, str] = {}
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        line = line.strip()
        if unset := UNSET_SETTING.fullmatch(line):
            line = f"{unset[1]}={unset[2]}"
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f".env.example:{number}: not NAME=value: {line!r}"
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f".env.example:{number}: {name!r}"
        assert name not in values, f".env.example: {name} is set twice"
        values[name] = value
    return values


@cache
def env_example_unset() -> frozenset[str]:
    """The settings .env.example documents commented out (`#NAME=value`)."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    return frozenset(m[1] for line in lines if (m := UNSET_SETTING.fullmatch(line.strip())))


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


def secret_fields(cls: type[BaseSettings]) -> set[str]:
    return {name.upper() for name, field in cls.model_fields.items() if is_secret(field)}


def secret_vars() -> set[str]:
    """Every secret a service or one of its commands reads."""
    classes = [settings_class(service) for service in APP_SERVICES]
    classes += [settings_class(*command) for command in COMMAND_SETTINGS]
    return set().union(*(secret_fields(cls) for cls in classes))


def default_port(service: str) -> int:
    """The port the service listens on when its port setting is left to the code."""
    field = settings_class(service).model_fields[PORT_SETTINGS[service].lower()]
    assert isinstance(field.default, int)
    return field.default
