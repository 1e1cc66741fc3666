from __future__ import annotations

import sys
from typing import Literal, NoReturn, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)

DEVELOPMENT_SECRETS: frozenset[str] = frozenset({"imagemesh-dev", "imagemesh-dev-secret"})
"""The secrets `.env.example` ships for a local stack (tests/security checks the two agree):
public knowledge, so a production service refuses to start with any of them."""
_SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN")
"""A setting named so is never echoed when invalid: it may hold a secret."""


class ServiceSettings(BaseSettings):
    """Settings every service has. Field names are the environment variable names."""

    model_config = SettingsConfigDict(extra="ignore")

    imagemesh_env: Literal["development", "production"] = "development"
    """`production`: refuse to start with a development secret from `.env.example`."""
    http_host: str = "127.0.0.1"
    """Address the service's HTTP endpoints bind to (0.0.0.0 in containers)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console", "auto"] = "auto"
    """`auto`: readable on a terminal, JSON lines otherwise."""
    shutdown_timeout_seconds: float = Field(default=30.0, gt=0)


def split_commas(value: object) -> object:
    """A `before` validator's body for list settings: `a, b,,c` -> ("a", "b", "c")."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def load_settings(cls: type[S], service: str) -> S:
    """Build settings from the environment, or exit with one line naming what is wrong."""
    try:
        settings = cls()
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        _refuse(service, problems)
    if refused := production_refusals(settings):
        _refuse(service, "; ".join(refused))
    return settings


def production_refusals(settings: BaseSettings) -> list[str]:
    """With `imagemesh_env` production, one phrase per secret setting that holds a
    development secret; none otherwise. The one check every service and tool makes (the
    tools that report their own way call it after building their settings)."""
    if getattr(settings, "imagemesh_env", "development") != "production":
        return []
    return [development_refusal(name) for name in development_secrets(settings)]


def development_refusal(name: str) -> str:
    return (
        f"{name} is a development default from .env.example, "
        "not allowed with IMAGEMESH_ENV=production"
    )


def development_secrets(settings: BaseSettings) -> list[str]:
    """The secret settings (SecretStr) whose value is one of DEVELOPMENT_SECRETS, as
    environment variable names."""
    return [
        name.upper()
        for name in type(settings).model_fields
        if isinstance(value := getattr(settings, name), SecretStr)
        and value.get_secret_value() in DEVELOPMENT_SECRETS
    ]


def _refuse(service: str, problems: str) -> NoReturn:
    print(f"{service}: invalid configuration: {problems}", file=sys.stderr)
    raise SystemExit(2) from None


def _describe(error: object) -> str:
    assert isinstance(error, dict)
    name = ".".join(str(part) for part in error.get("loc", ())).upper() or "?"
    if error.get("type") == "missing":
        return f"{name} is required but not set"
    if any(word in name for word in _SECRET_WORDS):
        return f"{name} (value not shown): {error.get('msg')}"
    return f"{name}={error.get('input')!r}: {error.get('msg')}"
