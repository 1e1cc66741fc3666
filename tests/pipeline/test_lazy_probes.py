"""Parsing pipelines and checking limits loads no image library: the runner (which only
parses pipelines for its reuse key) and imageproc's service process (its workers decode)
stay ~7 MB smaller each without pyvips and Pillow. The header probes load them on first
use."""

from __future__ import annotations

import json
import subprocess
import sys

import pipeline


def _loaded(code: str) -> list[str]:
    """The image libraries a fresh interpreter has loaded after running `code`."""
    libraries = "sorted({'pyvips', 'PIL'} & set(sys.modules))"
    probe = f"{code}\nimport json, sys\nprint(json.dumps({libraries}))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(out.stdout))


def test_the_runner_imageprocs_parent_and_the_catalogue_load_no_image_library() -> None:
    assert _loaded("import pipeline; pipeline.parse_pipeline([{'op': 'grayscale'}])") == []
    assert _loaded("import imageproc_runner.app") == []
    assert _loaded("import imageproc.app") == []  # its workers say the engine (libvips')


def test_the_probes_load_pyvips_and_pillow_when_first_used() -> None:
    assert _loaded("import pipeline; pipeline.probe_image") == ["PIL", "pyvips"]
    assert callable(pipeline.harden_vips)
