"""Production mode: a service refuses to start with a development secret of .env.example."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from servicekit import DEVELOPMENT_SECRETS, load_settings
from tests.deploy.common import APP_SERVICES, env_example, settings_class
from upload.settings import Settings as UploadSettings

ROOT = Path(__file__).resolve().parents[2]


def secret_settings() -> dict[str, set[str]]:
    """Every secret (SecretStr) setting of every service: name -> services reading it."""
    found: dict[str, set[str]] = {}
    for service in APP_SERVICES:
        for name, field in settings_class(service).model_fields.items():
            if field.annotation is SecretStr or field.annotation == SecretStr | None:
                found.setdefault(name.upper(), set()).add(service)
    return found


def test_the_development_secrets_are_exactly_env_examples() -> None:
    example = env_example()
    secrets = secret_settings()
    assert secrets, "no secret settings found"
    shipped = {example[name] for name in secrets if example.get(name)}
    missing = shipped - DEVELOPMENT_SECRETS
    assert not missing, f"add {sorted(missing)} to servicekit's DEVELOPMENT_SECRETS"
    stale = DEVELOPMENT_SECRETS - shipped
    assert not stale, f".env.example no longer ships {sorted(stale)}: drop them"


def example_environment(monkeypatch: pytest.MonkeyPatch, **overrides: str) -> None:
    for name, value in {**env_example(), **overrides}.items():
        monkeypatch.setenv(name, value)


def test_production_refuses_example_secrets_naming_each_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example_environment(monkeypatch, IMAGEMESH_ENV="production")
    with pytest.raises(SystemExit) as exited:
        load_settings(UploadSettings, "upload")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("upload: invalid configuration: ")
    for name in ("RABBITMQ_PASSWORD", "S3_SECRET_KEY", "UPLOAD_SESSION_SECRET"):
        assert f"{name} is a development default from .env.example" in err
    assert "IMAGEMESH_ENV=production" in err
    assert not any(secret in err for secret in DEVELOPMENT_SECRETS), "a secret was echoed"


def test_production_refuses_even_one_example_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example_environment(monkeypatch, IMAGEMESH_ENV="production", RABBITMQ_PASSWORD="rotated-1")
    with pytest.raises(SystemExit):
        load_settings(UploadSettings, "upload")
    err = capsys.readouterr().err
    assert "S3_SECRET_KEY is a development default" in err
    assert "RABBITMQ_PASSWORD" not in err


def test_production_starts_with_real_secrets_and_development_with_the_examples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    example_environment(
        monkeypatch,
        IMAGEMESH_ENV="production",
        RABBITMQ_PASSWORD="a-real-one",
        S3_SECRET_KEY="another-real-one",
        UPLOAD_SESSION_SECRET="a-real-session-secret-of-some-length",
        UPLOAD_WEBHOOK_SECRET="a-real-webhook-secret-of-some-length",
    )
    settings = load_settings(UploadSettings, "upload")
    assert settings.imagemesh_env == "production"
    monkeypatch.setenv("IMAGEMESH_ENV", "development")
    monkeypatch.setenv("RABBITMQ_PASSWORD", "imagemesh-dev")
    assert load_settings(UploadSettings, "upload").imagemesh_env == "development"
    monkeypatch.setenv("IMAGEMESH_ENV", "staging")
    with pytest.raises(SystemExit):
        load_settings(UploadSettings, "upload")


def test_every_service_checks_it_at_start() -> None:
    """`python -m <service>` with the example environment in production: exit 2 before
    connecting anywhere, naming the setting."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **env_example(),
        "IMAGEMESH_ENV": "production",
    }
    for service in APP_SERVICES:
        result = subprocess.run(
            [sys.executable, "-m", service],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, (service, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (service, result.stderr)
        assert lines[0].startswith(f"{service}: invalid configuration: ")
        assert "RABBITMQ_PASSWORD is a development default" in lines[0]


def test_an_invalid_secret_setting_is_named_without_its_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example_environment(monkeypatch, UPLOAD_API_TOKEN_HASHES="a-raw-token-by-mistake")
    with pytest.raises(SystemExit):
        load_settings(UploadSettings, "upload")
    err = capsys.readouterr().err
    assert "UPLOAD_API_TOKEN_HASHES (value not shown)" in err
    assert "a-raw-token-by-mistake" not in err
