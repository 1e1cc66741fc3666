"""`imagemesh webhook-key`: the caller's own signing key, as the server gives it; exit 1
with the server's words when it has webhooks off. Against the real mesh: test_e2e.py."""

from __future__ import annotations

import json

import pytest

from imagemesh_cli.__main__ import build_parser
from imagemesh_cli.commands import webhook_key

from .fake import FakeApi
from .test_commands import cli

KEY = {
    "principal": "alice",
    "secret": "9f2c" * 16,
    "generation": 2,
    "signature_header": "X-Imagemesh-Signature",
    "algorithm": "sha256",
}


async def test_the_key_is_printed_with_its_generation_and_how_it_signs(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.webhook_key = KEY
    assert await cli(fake, webhook_key) == 0
    out = capsys.readouterr().out
    assert f"key         {KEY['secret']}" in out
    assert "generation  2" in out
    assert "X-Imagemesh-Signature: sha256=" in out
    assert fake.paths() == ["/api/v1/webhooks/secret"]


async def test_json_mode_prints_the_servers_object(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.webhook_key = KEY
    assert await cli(fake, webhook_key, json_mode=True) == 0
    assert json.loads(capsys.readouterr().out) == KEY


async def test_webhooks_off_exits_1_with_the_servers_words(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli(fake, webhook_key) == 1
    assert "webhooks are off on this server" in capsys.readouterr().err


def test_the_command_takes_no_argument() -> None:
    assert build_parser().parse_args(["webhook-key"]).command == "webhook-key"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["webhook-key", "extra"])
