"""The commands in process against the scripted API stand-in: output, files and exit
codes; and the command line's parsing."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from imagemesh_cli.__main__ import build_parser, main
from imagemesh_cli.api import ApiClient
from imagemesh_cli.commands import Command, Waiting, extension_for, history, run, status, submit
from imagemesh_cli.render import Printer

from .fake import PNG, FakeApi, failed, job, succeeded
from .test_client import free_port

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


async def cli(api: FakeApi, command: Command, *, json_mode: bool = False) -> int:
    return await run(ApiClient(api.url, retry_for=2), Printer(json_mode=json_mode), command)


def images(tmp_path: Path, *names: str) -> list[Path]:
    paths = [tmp_path / name for name in names]
    for path in paths:
        path.write_bytes(PNG)
    return paths


def matching(folder: Path, pattern: str) -> list[Path]:
    """The files in `folder` matching `pattern` (tmp_path is local: blocking is fine)."""
    return sorted(folder.glob(pattern))


def submitting(files: list[Path], *ops: str, output: Path | None = None, **kw: Any) -> Command:
    wait = Waiting(output) if output is not None else None
    return functools.partial(submit, files=files, ops=list(ops), wait=wait, **kw)


# --- submit ------------------------------------------------------------------------------


async def test_submit_prints_each_job_id(
    fake: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = images(tmp_path, "a.png", "b.png")
    code = await cli(fake, submitting(files, "thumbnail:width=64", "grayscale"))
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{upload['id']}  {path}" for upload, path in zip(fake.uploads, files, strict=True)
    ]
    assert [upload["pipeline"] for upload in fake.uploads] == [
        [{"op": "thumbnail", "width": 64}, {"op": "grayscale"}]
    ] * 2
    assert [upload["filename"] for upload in fake.uploads] == ["a.png", "b.png"]


async def test_submit_wait_follows_and_saves(
    fake: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (photo,) = images(tmp_path, "photo.png")
    fake.script = [[job("", "queued"), job("", "processing"), succeeded("")]]
    code = await cli(fake, submitting([photo], "thumbnail:width=64", output=tmp_path / "out"))
    assert code == 0
    job_id = fake.uploads[0]["id"]
    saved = tmp_path / "out" / f"photo-{job_id[:8]}.png"
    assert saved.read_bytes() == PNG
    out = capsys.readouterr().out
    assert f"{job_id}  {photo}" in out
    assert f"{job_id[:8]}  +" in out
    for expected in (
        "succeeded: 640x480 png, 4.9 KiB -> 64x48 png, 900 bytes",
        "thumbnail applied (1 of 1, 3.2 ms)",
        f"saved {saved}",
    ):
        assert expected in out, out
    assert matching(tmp_path / "out", "*.part") == []


async def test_submit_wait_json_stream(
    fake: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (photo,) = images(tmp_path, "photo.png")
    code = await cli(fake, submitting([photo], output=tmp_path), json_mode=True)
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [record["event"] for record in records] == ["submitted", "step", "status", "saved"]
    job_id = fake.uploads[0]["id"]
    assert all(record["job_id"] == job_id for record in records)
    assert records[1]["step"]["operation"] == "thumbnail"
    assert records[2]["status"] == "succeeded"
    assert records[2]["job"]["output"]["width"] == 64
    assert records[3]["path"] == str(tmp_path / f"photo-{job_id[:8]}.png")


async def test_failed_job_exits_1_with_code_and_message(
    fake: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = images(tmp_path, "good.png", "bad.png")
    fake.script = [[succeeded("")], [failed("")]]
    code = await cli(fake, submitting([good, bad], output=tmp_path))
    assert code == 1
    captured = capsys.readouterr()
    assert "failed: undecodable: truncated data" in captured.err
    assert len(matching(tmp_path, "good-*.png")) == 1
    assert matching(tmp_path, "bad-*") == []


async def test_refused_file_exits_1_with_the_servers_message_and_the_rest_go_on(
    fake: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    (good,) = images(tmp_path, "good.png")
    code = await cli(fake, submitting([text, good]))
    assert code == 1
    captured = capsys.readouterr()
    assert f"{text}: refused (unsupported_type): the file is not an image type we accept" in (
        captured.err
    )
    assert len(fake.uploads) == 1


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        (["thumbnail:width=0"], "thumbnail: width: must be at least 1, got 0"),
        (["thumbnial:width=64"], "unknown operation 'thumbnial'; did you mean 'thumbnail'?"),
        (["thumbnail:width"], "expected key=value"),
    ],
)
async def test_invalid_op_exits_2_before_uploading(
    fake: FakeApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ops: list[str],
    message: str,
) -> None:
    code = await cli(fake, submitting(images(tmp_path, "a.png"), *ops))
    assert code == 2
    assert message in capsys.readouterr().err
    assert fake.paths("POST") == []


async def test_pipeline_json_is_checked_and_sent(
    fake: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = images(tmp_path, "a.png")
    bad = functools.partial(submit, files=files, pipeline_json='[{"op": "blur"}]')
    assert await cli(fake, bad) == 2
    assert "blur: missing required parameter 'sigma'" in capsys.readouterr().err
    good = functools.partial(submit, files=files, pipeline_json='[{"op": "blur", "sigma": 2}]')
    assert await cli(fake, good) == 0
    assert fake.uploads[0]["pipeline"] == [{"op": "blur", "sigma": 2}]


async def test_server_refusing_the_pipeline_exits_2(
    fake: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the catalogue cannot say (the length limit) the server refuses with 400."""
    files = images(tmp_path, "a.png", "b.png")
    code = await cli(fake, submitting(files, *["grayscale"] * 11))
    assert code == 2
    assert "imagemesh: a pipeline has at most 10 operations" in capsys.readouterr().err
    assert len(fake.paths("POST")) == 1, "the same pipeline is not sent again"


async def test_missing_file_exits_2(
    fake: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await cli(fake, submitting([tmp_path / "nope.png"]))
    assert code == 2
    assert "no such file" in capsys.readouterr().err
    assert fake.requests == []


async def test_unavailable_service_exits_3(
    fake: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.unavailable, fake.retry_after = 100, "5"
    code = await cli(fake, submitting(images(tmp_path, "a.png")))
    assert code == 3
    assert "the broker is down" in capsys.readouterr().err


async def test_timeout_gives_up_on_a_job(
    fake: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script = [[job("", "processing")]]
    fake.events_supported = False
    command = functools.partial(
        submit, files=images(tmp_path, "a.png"), wait=Waiting(tmp_path, timeout=0.3)
    )
    assert await cli(fake, command) == 1
    assert "gave up waiting after 0.3 s: the job is still processing" in capsys.readouterr().err


# --- status, history ------------------------------------------------------------------------


async def test_status(fake: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = "6f1c2b3a-0000-4000-8000-000000000002"
    fake.snapshots[job_id] = [succeeded(job_id, filename="photo.png")]
    assert await cli(fake, functools.partial(status, job_id=job_id)) == 0
    out = capsys.readouterr().out
    for expected in (
        f"job       {job_id}",
        "status    succeeded",
        "file      photo.png",
        "pipeline  thumbnail(width=64)",
        "input     640x480 png, 4.9 KiB",
        "output    64x48 png, 900 bytes (image/png)",
        "steps     thumbnail 3.2 ms",
    ):
        assert expected in out, out
    assert await cli(fake, functools.partial(status, job_id=job_id), json_mode=True) == 0
    assert json.loads(capsys.readouterr().out) == fake.snapshots[job_id][0]


async def test_status_of_failed_and_unknown_jobs(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = "6f1c2b3a-0000-4000-8000-000000000003"
    fake.snapshots[job_id] = [failed(job_id)]
    assert await cli(fake, functools.partial(status, job_id=job_id)) == 0
    assert "error     undecodable: truncated data" in capsys.readouterr().out
    unknown = "6f1c2b3a-0000-4000-8000-00000000000f"
    assert await cli(fake, functools.partial(status, job_id=unknown)) == 1
    assert capsys.readouterr().err == f"imagemesh: no job {unknown}\n"


async def test_status_accepts_a_unique_short_id(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 8 characters shown everywhere (or any 6 or more) name a job when one matches."""
    job_id = "d58e10d6-0000-4000-8000-000000000001"
    fake.snapshots[job_id] = [succeeded(job_id, filename="photo.png")]
    fake.snapshots["d58e99aa-0000-4000-8000-000000000002"] = [
        failed("d58e99aa-0000-4000-8000-000000000002")
    ]
    for short in ("d58e10d6", "D58E10", f"{job_id[:13]}"):
        assert await cli(fake, functools.partial(status, job_id=short)) == 0, short
        assert f"job       {job_id}" in capsys.readouterr().out
    assert f"/api/v1/jobs/{job_id}" in fake.paths()


async def test_status_lists_the_candidates_of_an_ambiguous_short_id(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = (f"d58e10d6-0000-4000-8000-00000000000{n}" for n in (1, 2))
    fake.snapshots[first] = [succeeded(first, filename="a.png")]
    fake.snapshots[second] = [failed(second)]
    assert await cli(fake, functools.partial(status, job_id="d58e10")) == 2
    err = capsys.readouterr().err
    assert "d58e10 matches 2 of your jobs" in err
    for expected in (first, second, "a.png", "failed"):
        assert expected in err
    assert await cli(fake, functools.partial(status, job_id="abcdef12")) == 1
    assert "no job of yours starts with abcdef12" in capsys.readouterr().err
    assert await cli(fake, functools.partial(status, job_id="d58e")) == 2
    assert "at least 6 characters" in capsys.readouterr().err


async def test_history_follows_pages_up_to_the_limit(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = [succeeded(f"job-{n}", filename=f"{n}.png") for n in range(5)]
    fake.pages = {
        None: {"jobs": jobs[:2], "next": "c1"},
        "c1": {"jobs": jobs[2:4], "next": "c2"},
        "c2": {"jobs": jobs[4:], "next": None},
    }
    assert await cli(fake, functools.partial(history, limit=3, status="succeeded")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["job-0", "job-1", "job-2"]
    assert "succeeded" in lines[0]
    assert "0.png  640x480 -> 64x48" in lines[0]
    assert fake.paths() == [
        "/api/v1/jobs?status=succeeded&limit=3",
        "/api/v1/jobs?status=succeeded&limit=1&before=c1",
    ]
    assert await cli(fake, functools.partial(history, limit=50), json_mode=True) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records == jobs


async def test_history_on_a_server_without_it(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli(fake, functools.partial(history)) == 1
    assert "this server cannot list jobs" in capsys.readouterr().err


# --- the command line ----------------------------------------------------------------------


def test_options_before_or_after_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEMESH_URL", "http://env:1")
    parser = build_parser()
    assert parser.parse_args(["status", "x"]).url == "http://env:1"
    assert parser.parse_args(["--url", "http://a:1", "status", "x"]).url == "http://a:1"
    assert parser.parse_args(["status", "x", "--url", "http://b:1"]).url == "http://b:1"
    assert parser.parse_args(["--json", "history"]).json is True
    assert parser.parse_args(["history", "--json"]).json is True
    args = parser.parse_args(["submit", "a.png", "--op", "grayscale", "--op", "blur:sigma=2"])
    assert args.op == ["grayscale", "blur:sigma=2"]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["submit"],
        ["submit", "a.png", "--op", "grayscale", "--pipeline", "[]"],
        ["history", "--limit", "0"],
        ["history", "--status", "lost"],
        ["--url", "localhost:8000", "status", "x"],
        ["submit", "a.png", "--output", "out"],
        ["submit", "a.png", "--pipeline-file", "/nonexistent/pipeline.json"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "usage: imagemesh" in capsys.readouterr().err


def test_unreachable_service_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", f"http://127.0.0.1:{free_port()}", "history"]) == 3
    assert "cannot reach imagemesh at" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content_type", "extension"),
    [
        ("image/jpeg", "jpg"),
        ("image/png", "png"),
        ("image/avif", "avif"),
        ("image/tiff", "tiff"),
        ("x/unknown", "bin"),
    ],
)
def test_extension_for(content_type: str, extension: str) -> None:
    assert extension_for(content_type) == extension


def test_the_help_says_how_to_get_and_give_a_token() -> None:
    helped = build_parser().format_help()
    assert "IMAGEMESH_TOKEN" in helped
    assert "python -m upload.tokens new NAME" in helped
    assert "UPLOAD_API_TOKEN_HASHES" in helped
