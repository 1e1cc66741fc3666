"""`imagemesh retry` as a user runs it (a subprocess), against the real mesh: a job that
failed, retried with a pipeline that works and waited for; `status` shows the link both
ways; a job that succeeded is not retried (exit 1, the server's words)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_e2e import SUBMITTED, imagemesh, make_image, width_of
from tests.conftest import Mesh

pytestmark = pytest.mark.e2e


def test_a_failed_job_retried_with_a_new_pipeline_succeeds(mesh: Mesh, tmp_path: Path) -> None:
    image = make_image(tmp_path / "retried.png", (120, 90), "PNG")
    # Valid at upload, but the output would exceed the pixel limit: imageproc refuses it.
    too_big = "thumbnail:width=10000,height=10000,upscale=true"
    failed = imagemesh(mesh, "submit", image, "--op", too_big, "--wait", "-o", tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    ((old_id, _),) = SUBMITTED.findall(failed.stdout)

    out = tmp_path / "out"
    run = imagemesh(
        mesh, "retry", old_id[:8], "--op", "thumbnail:width=32", "--wait", "--output", out
    )
    assert run.returncode == 0, run.stdout + run.stderr
    first = run.stdout.splitlines()[0]
    new_id, _, named = first.partition("  retry of ")
    assert named == old_id, run.stdout
    saved = out / f"retried-{new_id[:8]}.png"
    assert width_of(saved) == 32
    assert run.stdout.rstrip().endswith(f"saved {saved}"), run.stdout

    shown = imagemesh(mesh, "status", new_id)
    assert f"retry of  {old_id}" in shown.stdout, shown.stdout
    assert "status    succeeded" in shown.stdout
    retried = imagemesh(mesh, "status", old_id[:8])
    assert f"retried   as {new_id}" in retried.stdout, retried.stdout
    assert "status    failed" in retried.stdout

    again = imagemesh(mesh, "retry", new_id)
    assert again.returncode == 1
    assert "only a failed or cancelled job is retried" in again.stderr
