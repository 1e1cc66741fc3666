from __future__ import annotations

import sys
from typing import Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)


class ServiceSettings(BaseSettings):
    """Settings every service has. Field names are the environment variable names."""

    model_config = SettingsConfigDict(extra="ignore")

    http_host: str = "127.0.0.1"
    """Address the service's HTTP endpoints bind to (0.0.0.0 in containers)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console", "auto"] = "auto"
    """`auto`: readable on a terminal, JSON lines otherwise."""
    shutdown_timeout_seconds: float = Field(default=30.0, gt=0)


def load_settings(cls: type[S], service: str) -> S:
    """Build settings from the environment, or exit with one line naming what is wrong."""
    try:
        return cls()
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        print(f"{service}: invalid configuration: {problems}", file=sys.stderr)
        raise SystemExit(2) from None


def _describe(error: object) -> str:
    assert isinstance(error, dict)
    name = ".".join(str(part) for part in error.get("loc", ())).upper() or "?"
    if error.get("type") == "missing":
        return f"{name} is required but not set"
    return f"{name}={error.get('input')!r}: {error.get('msg')}"
