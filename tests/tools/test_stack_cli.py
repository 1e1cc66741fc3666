"""tools/stack's command line, run as `make` runs it: a bare python3 (no virtualenv, no
site packages) and an empty environment."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import stack

ROOT = Path(__file__).resolve().parents[2]
BARE_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable


def run_bare(*args: str, stack_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BARE_PYTHON, "-S", "tools/stack", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "STACK_DIR": str(stack_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = run_bare("--help", stack_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("deps", "infra", "up", "up-observability", "down", "status", "logs"):
        assert command in result.stdout
    for command in (*stack.TOOLS, "supervise"):
        assert command in result.stdout


def test_status_of_an_empty_stack_folder_names_nothing_as_ours(tmp_path: Path) -> None:
    result = run_bare("status", stack_dir=tmp_path)
    assert result.returncode == 3, result.stderr  # nothing there was started by this folder
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["component", "pid", "child", "restarts", "state", "probe"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert list(rows) == ["epmd", "rabbitmq", "couchdb", "s3", *stack.SERVICES]
    assert all(row[1] == "-" for row in rows.values())


def test_logs_of_an_empty_stack_folder(tmp_path: Path) -> None:
    result = run_bare("logs", stack_dir=tmp_path)
    assert result.returncode == 1
    assert f"no logs under {tmp_path / 'logs'}" in result.stdout


def test_passthrough_is_refused_where_no_program_takes_it(tmp_path: Path) -> None:
    result = run_bare("status", "--", "x", stack_dir=tmp_path)
    assert result.returncode == 2
    assert "unexpected arguments: x" in result.stderr


def test_main_reports_a_stack_error_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.env"
    bad.write_text("IMAGEPROC_REPLICAS=99\n")
    result = run_bare("--env-file", str(bad), "status", stack_dir=tmp_path)
    assert result.returncode == 1
    assert "stack: error: IMAGEPROC_REPLICAS=99" in result.stderr
    assert "Traceback" not in result.stderr
