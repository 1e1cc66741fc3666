"""`imagemesh retry ID`: against the scripted API stand-in (its answers checked against
upload's OpenAPI document); against the real mesh in tests/cli/test_retry_e2e.py."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from imagemesh_cli.__main__ import build_parser
from imagemesh_cli.commands import Waiting, status
from imagemesh_cli.retry import retry

from .fake import PNG, FakeApi, failed, job, succeeded
from .test_commands import cli

FAILED = "fa11ed00-0000-4000-8000-000000000001"


async def test_retry_a_failed_job_by_its_short_id_with_its_own_pipeline(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.snapshots[FAILED] = [failed(FAILED)]
    assert await cli(fake, functools.partial(retry, job_id=FAILED[:8])) == 0
    (made,) = fake.retries
    assert (made["retry_of"], made["pipeline"]) == (FAILED, None)  # no body: the job's own
    assert capsys.readouterr().out == f"{made['id']}  retry of {FAILED}\n"
    assert f"/api/v1/jobs/{FAILED}/retry" in fake.paths("POST")
    assert await cli(fake, functools.partial(status, job_id=FAILED)) == 0
    assert f"retried   as {made['id']}\n" in capsys.readouterr().out
    assert await cli(fake, functools.partial(status, job_id=made["id"])) == 0
    assert f"retry of  {FAILED}\n" in capsys.readouterr().out


async def test_a_pipeline_given_is_checked_and_sent(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.snapshots[FAILED] = [job(FAILED, "cancelled", cancelled_by="local")]
    command = functools.partial(retry, job_id=FAILED, ops=["thumbnail:width=64"])
    assert await cli(fake, command, json_mode=True) == 0
    (made,) = fake.retries
    assert [step["op"] for step in made["pipeline"]] == ["thumbnail"]
    assert made["pipeline"][0]["width"] == 64
    printed = json.loads(capsys.readouterr().out)
    assert (printed["event"], printed["job_id"], printed["retry_of"]) == (
        "retried",
        made["id"],
        FAILED,
    )
    # A pipeline the catalogue refuses is refused before anything is sent (exit 2).
    bad = functools.partial(retry, job_id=FAILED, pipeline_json='[{"op": "nonsense"}]')
    assert await cli(fake, bad) == 2
    assert len(fake.retries) == 1


async def test_retry_wait_follows_the_new_job_and_saves_its_result(
    fake: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.snapshots[FAILED] = [{**failed(FAILED), "filename": "holiday.png"}]
    wait = Waiting(tmp_path / "out")
    assert await cli(fake, functools.partial(retry, job_id=FAILED, wait=wait)) == 0
    (made,) = fake.retries
    saved = tmp_path / "out" / f"holiday-{made['id'][:8]}.png"
    assert saved.read_bytes() == PNG
    out = capsys.readouterr().out
    assert out.startswith(f"{made['id']}  retry of {FAILED}\n")
    assert f"saved {saved}" in out


async def test_a_retry_that_fails_again_exits_1_when_waited_for(
    fake: FakeApi, tmp_path: Path
) -> None:
    fake.snapshots[FAILED] = [failed(FAILED)]
    fake.script = [[failed("x")]]
    wait = Waiting(tmp_path)
    assert await cli(fake, functools.partial(retry, job_id=FAILED, wait=wait)) == 1


async def test_what_cannot_be_retried_fails_saying_why(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    done = "d0e00000-0000-4000-8000-000000000002"
    fake.snapshots[done] = [succeeded(done)]
    assert await cli(fake, functools.partial(retry, job_id=done)) == 1
    assert "only a failed or cancelled job is retried" in capsys.readouterr().err
    assert await cli(fake, functools.partial(retry, job_id="abcdef12")) == 1
    assert "no job of yours starts with abcdef12" in capsys.readouterr().err
    assert fake.retries == []


def test_the_command_line_names_the_job_and_the_pipeline() -> None:
    args = build_parser().parse_args(["retry", "d58e10d6", "--op", "grayscale", "--wait"])
    assert (args.command, args.job_id, args.op, args.wait) == (
        "retry",
        "d58e10d6",
        ["grayscale"],
        True,
    )
    plain = build_parser().parse_args(["retry", "d58e10d6"])
    assert (plain.op, plain.pipeline, plain.pipeline_file, plain.wait) == ([], None, None, False)
