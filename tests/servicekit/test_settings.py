import subprocess
import sys

import pytest

from provenancedb.settings import Settings as ProvenanceSettings
from servicekit import load_settings


def test_missing_secret_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COUCHDB_PASSWORD", raising=False)
    monkeypatch.setenv("RABBITMQ_PASSWORD", "x")
    with pytest.raises(SystemExit) as exited:
        load_settings(ProvenanceSettings, "provenancedb")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "provenancedb: invalid configuration: COUCHDB_PASSWORD is required" in err


def test_invalid_value_is_named_with_its_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RABBITMQ_PASSWORD", "x")
    monkeypatch.setenv("COUCHDB_PASSWORD", "x")
    monkeypatch.setenv("RABBITMQ_PORT", "seventy")
    with pytest.raises(SystemExit):
        load_settings(ProvenanceSettings, "provenancedb")
    assert "RABBITMQ_PORT='seventy'" in capsys.readouterr().err


def test_a_service_started_without_its_secrets_exits_at_once_naming_them() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "imageproc_runner"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "RABBITMQ_PASSWORD is required" in result.stderr
    assert "S3_SECRET_KEY is required" in result.stderr
