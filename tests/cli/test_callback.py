"""`imagemesh submit --callback-url URL`: the URL goes with every file as `callback_url`;
a URL the server refuses (400 `bad_callback_url`) stops the command with exit 2 and the
server's words, before the other files are sent."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from imagemesh_cli.__main__ import build_parser
from imagemesh_cli.commands import submit

from .fake import FakeApi
from .test_commands import cli, images


async def test_the_callback_url_goes_with_every_file(fake: FakeApi, tmp_path: Path) -> None:
    files = images(tmp_path, "a.png", "b.png")
    url = "https://hooks.example.org/imagemesh?token=abc"
    assert await cli(fake, functools.partial(submit, files=files, callback_url=url)) == 0
    assert [upload["callback_url"] for upload in fake.uploads] == [url, url]


async def test_without_it_no_callback_is_sent(fake: FakeApi, tmp_path: Path) -> None:
    assert await cli(fake, functools.partial(submit, files=images(tmp_path, "a.png"))) == 0
    assert "callback_url" not in fake.uploads[0]


async def test_a_refused_callback_url_exits_2_with_the_servers_words(
    fake: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = images(tmp_path, "a.png", "b.png")
    code = await cli(fake, functools.partial(submit, files=files, callback_url="ftp://x/"))
    assert code == 2
    assert "callback_url refused: only http and https" in capsys.readouterr().err
    assert len(fake.paths("POST")) == 1, "the same refusal is not asked for again"


def test_the_option_is_parsed_for_submit_only() -> None:
    args = build_parser().parse_args(["submit", "a.png", "--callback-url", "https://h.example/"])
    assert args.callback_url == "https://h.example/"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["status", "abc123", "--callback-url", "https://h.example/"])
