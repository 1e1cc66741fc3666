"""`imagemesh erase` as a user runs it (a subprocess), against the real mesh: it asks on
a terminal (a pseudo-terminal here) and erases only on `y`; in a script it wants `--yes`;
the job's status then says who erased it when, and erasing again is fine; a job still
running is refused with the server's words (cancel it first)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagemesh_cli.__main__ import build_parser
from imagemesh_cli.commands import UsageError
from imagemesh_cli.erase import ask, confirmation
from tests.cli.test_e2e import SUBMITTED, imagemesh, make_image
from tests.conftest import Mesh

pytestmark = pytest.mark.e2e
DEADLINE = 120


def _on_terminal(mesh: Mesh, answer: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`imagemesh ARGS` with a pseudo-terminal as stdin, answering `answer` to a question."""
    primary, secondary = os.openpty()
    try:
        os.write(primary, answer.encode() + b"\n")
        return subprocess.run(
            [sys.executable, "-m", "imagemesh_cli", *args],
            env={**os.environ, "IMAGEMESH_URL": mesh.upload_url},
            stdin=secondary,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
    finally:
        os.close(primary)
        os.close(secondary)


def _submitted(mesh: Mesh, image: Path, *args: str | Path) -> str:
    run = imagemesh(mesh, "submit", image, *args)
    assert run.returncode == 0, run.stdout + run.stderr
    ((job_id, _),) = SUBMITTED.findall(run.stdout)[:1]
    return str(job_id)


def test_erase_asks_on_a_terminal_and_wants_yes_in_a_script(mesh: Mesh, tmp_path: Path) -> None:
    image = make_image(tmp_path / "private.png", (80, 60), "PNG")
    job_id = _submitted(mesh, image, "--op", "grayscale", "--wait", "-o", tmp_path)
    short = job_id[:8]

    scripted = subprocess.run(
        [sys.executable, "-m", "imagemesh_cli", "erase", short],
        env={**os.environ, "IMAGEMESH_URL": mesh.upload_url},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert scripted.returncode == 2, scripted.stdout + scripted.stderr
    assert "give --yes" in scripted.stderr
    declined = _on_terminal(mesh, "n", "erase", short)
    assert declined.returncode == 1, declined.stdout + declined.stderr
    assert f"erase job {job_id} (private.png, succeeded)?" in declined.stdout
    assert "not erased" in declined.stderr
    assert "images deleted" not in imagemesh(mesh, "status", short).stdout

    agreed = _on_terminal(mesh, "y", "erase", short)
    assert agreed.returncode == 0, agreed.stdout + agreed.stderr
    assert f"{job_id}  erased: its images are deleted" in agreed.stdout
    shown = imagemesh(mesh, "status", short)
    assert "status    succeeded" in shown.stdout, shown.stdout
    assert "by local: images deleted" in shown.stdout
    again = imagemesh(mesh, "erase", job_id, "--yes", "--json")
    assert again.returncode == 0, again.stderr
    assert '"event": "erased"' in again.stdout
    gone = imagemesh(mesh, "download", short, "--output", tmp_path / "again.png")
    assert gone.returncode == 1
    assert "erased" in gone.stderr


def test_a_running_job_is_refused_with_the_servers_words(mesh: Mesh, tmp_path: Path) -> None:
    image = make_image(tmp_path / "big.png", (3000, 2000), "PNG")
    slow = '[{"op": "blur", "sigma": 100}, {"op": "blur", "sigma": 100}]'
    job_id = _submitted(mesh, image, "--pipeline", slow)
    refused = imagemesh(mesh, "erase", job_id, "--yes")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "cancel it first" in refused.stderr
    assert imagemesh(mesh, "cancel", job_id).returncode in {0, 1}  # free the runner


def test_erase_confirms_by_asking_on_a_terminal_and_never_guesses_elsewhere() -> None:
    assert confirmation(yes=True, interactive=False) is None  # --yes: no question
    assert confirmation(yes=False, interactive=True) is ask
    with pytest.raises(UsageError, match="give --yes"):
        confirmation(yes=False, interactive=False)
    args = build_parser().parse_args(["erase", "d58e10d6", "-y", "--json"])
    assert (args.command, args.job_id, args.yes, args.json) == ("erase", "d58e10d6", True, True)
