"""messaging.constants: the one source of the service names and job statuses (pure).

The stack tool (tools/stack) loads the file by its path with a bare python3, before the virtual
environment exists: it must import nothing at all."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

from messaging import constants, jobs, permissions
from messaging.events import (
    ImageProcessed,
    ImageReused,
    ImageUploaded,
    JobCancelled,
    JobFailed,
)

SOURCE = Path(constants.__file__)


def test_it_imports_nothing() -> None:
    tree = ast.parse(SOURCE.read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    assert imports == []


def test_a_bare_python_loads_it_by_path() -> None:
    """-I -S: no site-packages, no PYTHONPATH, no user site: the interpreter alone."""
    script = (
        "import importlib.util as u, sys\n"
        f"spec = u.spec_from_file_location('mesh', {str(SOURCE)!r})\n"
        "module = u.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print(','.join(module.SERVICES)); print(sorted(sys.modules).count('messaging'))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == [",".join(constants.SERVICES), "0"]


def test_loaded_by_path_it_is_the_same() -> None:
    spec = importlib.util.spec_from_file_location("by_path", SOURCE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (module.SERVICES, module.JOB_STATUSES) == (constants.SERVICES, constants.JOB_STATUSES)


def test_statuses_ranks_and_final_agree() -> None:
    assert set(constants.STATUS_RANK) == set(constants.JOB_STATUSES)
    last = max(constants.STATUS_RANK.values())
    final = {status for status, rank in constants.STATUS_RANK.items() if rank == last}
    assert final == constants.FINAL_STATUSES
    ranks = [constants.STATUS_RANK[status] for status in constants.JOB_STATUSES]
    assert ranks == sorted(ranks), "JOB_STATUSES is in the order a job goes through them"


def test_the_fold_answers_only_these_statuses() -> None:
    assert set(jobs.EVENT_STATUS.values()) == set(constants.JOB_STATUSES)
    assert jobs.EVENT_STATUS[ImageUploaded.type] == constants.QUEUED
    finals = (ImageProcessed, ImageReused, JobFailed, JobCancelled)
    assert {jobs.EVENT_STATUS[t.type] for t in finals} == constants.FINAL_STATUSES
    assert jobs.JOB_STATUSES is constants.JOB_STATUSES


def test_every_service_is_named_once_and_has_broker_grants() -> None:
    assert len(set(constants.SERVICES)) == len(constants.SERVICES) == 4
    assert vars(permissions)["SERVICES"] is constants.SERVICES  # not a copy
    assert (constants.UPLOAD, constants.IMAGEPROC_RUNNER) == ("upload", "imageproc_runner")
