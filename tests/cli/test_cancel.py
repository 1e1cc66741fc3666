"""`imagemesh cancel ID`: against the scripted API stand-in (its answers checked against
upload's OpenAPI document); against the real mesh in tests/e2e/test_cancel.py."""

from __future__ import annotations

import functools
import json

import pytest

from imagemesh_cli.__main__ import build_parser
from imagemesh_cli.commands import cancel, status

from .fake import FakeApi, job, succeeded
from .test_commands import cli


async def test_cancel_a_processing_job_by_its_short_id(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = "ca9ce1ed-0000-4000-8000-000000000001"
    fake.snapshots[job_id] = [job(job_id, "processing")]
    assert await cli(fake, functools.partial(cancel, job_id=job_id[:8])) == 0
    out = capsys.readouterr().out
    assert out == (
        f"{job_id}  cancel requested (was processing); `imagemesh status` shows how it ends\n"
    )
    assert f"/api/v1/jobs/{job_id}/cancel" in fake.paths("POST")
    assert await cli(fake, functools.partial(status, job_id=job_id)) == 0
    out = capsys.readouterr().out
    assert "status    cancelled\n" in out
    assert "cancelled by local\n" in out


async def test_cancel_in_json_mode_prints_the_servers_answer(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = "6f1c2b3a-0000-4000-8000-0000000000c1"
    fake.snapshots[job_id] = [job(job_id, "queued")]
    assert await cli(fake, functools.partial(cancel, job_id=job_id), json_mode=True) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["id"], answer["status"]) == (job_id, "queued")


async def test_cancelling_a_finished_or_unknown_job_fails_saying_why(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    done = "6f1c2b3a-0000-4000-8000-0000000000c2"
    fake.snapshots[done] = [succeeded(done)]
    assert await cli(fake, functools.partial(cancel, job_id=done)) == 1
    assert capsys.readouterr().err == "imagemesh: the job already succeeded\n"
    assert await cli(fake, functools.partial(cancel, job_id="abcdef12")) == 1
    assert "no job of yours starts with abcdef12" in capsys.readouterr().err


def test_the_command_line_names_the_job() -> None:
    args = build_parser().parse_args(["cancel", "d58e10d6", "--json"])
    assert (args.command, args.job_id, args.json) == ("cancel", "d58e10d6", True)
