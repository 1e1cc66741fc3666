"""The CLI as a user runs it (a subprocess), against the real mesh: two images through
`submit --wait`, then `status` and `history`, and the ways a submission goes wrong."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import Mesh
from tests.unique import unique_bytes

pytestmark = pytest.mark.e2e

DEADLINE = 120.0
"""Seconds any one CLI run may take (the CLI waits for jobs itself, with no sleep here)."""
SUBMITTED = re.compile(
    r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})  (.+)$", re.MULTILINE
)


def imagemesh(
    mesh: Mesh, *args: str | Path, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagemesh_cli", *map(str, args)],
        env={**os.environ, "IMAGEMESH_URL": mesh.upload_url},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def make_image(path: Path, size: tuple[int, int], fmt: str) -> Path:
    """Bytes of its own (`tests/unique.py`): the job computes, it reuses no earlier output."""
    gradient = Image.linear_gradient("L").resize(size)
    buffer = io.BytesIO()
    Image.merge("RGB", (gradient, gradient.rotate(90), gradient)).save(buffer, fmt)
    path.write_bytes(unique_bytes(buffer.getvalue()))
    return path


def width_of(path: Path) -> int:
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        image.load()
        return int(image.width)


@dataclass(frozen=True)
class Submitted:
    run: subprocess.CompletedProcess[str]
    ids: dict[str, str]
    """Job id by input file name."""
    output: Path


@pytest.fixture(scope="module")
def submitted(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Submitted:
    """Two real images, a JPEG and a PNG, submitted and followed to the end."""
    folder = tmp_path_factory.mktemp("cli")
    photo = make_image(folder / "photo.jpg", (320, 240), "JPEG")
    drawing = make_image(folder / "drawing.png", (200, 300), "PNG")
    output = folder / "tmp"
    run = imagemesh(
        mesh, "submit", photo, drawing, "--op", "thumbnail:width=64", "--wait", "--output", output
    )
    ids = {Path(name).name: job_id for job_id, name in SUBMITTED.findall(run.stdout)}
    return Submitted(run, ids, output)


def test_submit_wait_saves_each_result(submitted: Submitted) -> None:
    run = submitted.run
    assert run.returncode == 0, run.stdout + run.stderr
    assert set(submitted.ids) == {"photo.jpg", "drawing.png"}
    extensions = {"photo.jpg": "jpg", "drawing.png": "png"}  # thumbnail keeps the format
    for name, job_id in submitted.ids.items():
        result = submitted.output / f"{Path(name).stem}-{job_id[:8]}.{extensions[name]}"
        assert result.is_file(), sorted(submitted.output.iterdir())
        assert width_of(result) == 64
        lines = [line for line in run.stdout.splitlines() if line.startswith(f"{job_id[:8]}  +")]
        assert any(" succeeded: " in line and " -> 64x" in line for line in lines), run.stdout
        assert any("thumbnail applied" in line for line in lines), run.stdout
        assert lines[-1].endswith(f"saved {result}"), run.stdout


def test_status_shows_the_job(mesh: Mesh, submitted: Submitted) -> None:
    job_id = submitted.ids["photo.jpg"]
    run = imagemesh(mesh, "status", job_id)
    assert run.returncode == 0, run.stderr
    assert f"job       {job_id}" in run.stdout
    assert "status    succeeded" in run.stdout
    assert "input     320x240 jpeg" in run.stdout
    assert "output    64x48 jpeg" in run.stdout
    as_json = imagemesh(mesh, "status", job_id, "--json")
    job = json.loads(as_json.stdout)
    assert (job["id"], job["status"], job["output"]["width"]) == (job_id, "succeeded", 64)
    assert job["input"]["bytes"] == (Path(submitted.output).parent / "photo.jpg").stat().st_size


def test_status_takes_the_short_id_shown(mesh: Mesh, submitted: Submitted) -> None:
    """`imagemesh status d58e10d6`: the 8 characters submit and history show."""
    job_id = submitted.ids["photo.jpg"]
    run = imagemesh(mesh, "status", job_id[:8])
    assert run.returncode == 0, run.stderr
    assert f"job       {job_id}" in run.stdout


def test_unknown_job_exits_1(mesh: Mesh) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    run = imagemesh(mesh, "status", unknown)
    assert (run.returncode, run.stderr) == (1, f"imagemesh: no job {unknown}\n")


def test_history_lists_them(mesh: Mesh, submitted: Submitted) -> None:
    run = imagemesh(mesh, "history", "--limit", "5")
    assert run.returncode == 0, run.stderr
    listed = [line.split()[0] for line in run.stdout.splitlines()]
    assert len(listed) <= 5
    assert set(submitted.ids.values()) <= set(listed), run.stdout
    as_json = imagemesh(mesh, "history", "--limit", "5", "--status", "succeeded", "--json")
    jobs = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {job["status"] for job in jobs} == {"succeeded"}
    assert set(submitted.ids.values()) <= {job["id"] for job in jobs}
    one = imagemesh(mesh, "history", "--limit", "1")
    assert len(one.stdout.splitlines()) == 1


def test_json_stream_follows_live_steps(mesh: Mesh, tmp_path: Path) -> None:
    image = make_image(tmp_path / "live.png", (100, 80), "PNG")
    run = imagemesh(mesh, "--json", "submit", image, "--op", "grayscale", "--wait", "-o", tmp_path)
    assert run.returncode == 0, run.stderr
    records: list[dict[str, Any]] = [json.loads(line) for line in run.stdout.splitlines()]
    events = [record["event"] for record in records]
    assert events[0] == "submitted"
    assert events[-2:] == ["status", "saved"]
    assert records[-2]["status"] == "succeeded"
    assert Path(records[-1]["path"]).is_file()
    steps = [record["step"] for record in records if record["event"] == "step"]
    # Steps from the event stream name the service that recorded them (polling cannot).
    assert any(
        step["type"] == "operation.applied"
        and step["operation"] == "grayscale"
        and step.get("service")
        for step in steps
    ), steps


@pytest.mark.parametrize(
    ("op", "message"),
    [
        ("thumbnail:width=0", "imagemesh: thumbnail: width: must be at least 1, got 0"),
        ("thumbnail:widht=64", "imagemesh: thumbnail: unknown parameter 'widht'; did you mean"),
        ("thumbnial:width=64", "imagemesh: unknown operation 'thumbnial'; did you mean"),
        ("thumbnail:width", "expected key=value"),
    ],
)
def test_invalid_op_exits_2(mesh: Mesh, tmp_path: Path, op: str, message: str) -> None:
    image = make_image(tmp_path / "a.png", (10, 10), "PNG")
    run = imagemesh(mesh, "submit", image, "--op", op, "--wait")
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr
    assert run.stdout == "", "nothing was submitted"


def test_refused_file_reports_the_servers_message(mesh: Mesh, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("plain text, not an image\n")
    run = imagemesh(mesh, "submit", text, "--op", "grayscale", "--wait")
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"{text}: refused (unsupported_type): the file is not an image type we accept" in (
        run.stderr
    )


def test_failed_job_exits_1_with_code_and_message(mesh: Mesh, tmp_path: Path) -> None:
    image = make_image(tmp_path / "small.png", (40, 30), "PNG")
    run = imagemesh(
        mesh, "submit", image, "--op", "crop:x=0,y=0,width=500,height=500", "--wait", "-o", tmp_path
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "failed: invalid_parameter: " in run.stderr
    assert not list(tmp_path.glob("small-*"))


def test_webhook_key_prints_the_key_the_server_signs_with(mesh: Mesh) -> None:
    done = imagemesh(mesh, "webhook-key", "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["principal"] == "local"  # this mesh has no API tokens
    served = json.loads(
        urllib.request.urlopen(f"{mesh.upload_url}/api/v1/webhooks/secret", timeout=10).read()
    )
    assert printed == served
