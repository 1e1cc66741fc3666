"""One convention for sizes on both sides: the CLI (`render.format_bytes`) and the web app
(`static/format.js` `bytes`) write the same count the same way: binary IEC units (KiB, MiB,
GiB, as the API's limits are written), one decimal under 100, halves rounded up. The
same table is checked against both (the JavaScript module run by Node)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from imagemesh_cli.follow import StepRecorded, _operations_of
from imagemesh_cli.render import format_bytes, step_text

FORMAT_JS = Path(__file__).parents[2] / "services/upload/upload/static/format.js"
CASES: list[tuple[int | float | None, str]] = [
    (0, "0 bytes"),
    (1, "1 byte"),
    (900, "900 bytes"),
    (1023, "1023 bytes"),
    (1024, "1.0 KiB"),
    (1280, "1.3 KiB"),  # 1.25: a half, rounded up on both sides
    (1536, "1.5 KiB"),
    (5000, "4.9 KiB"),
    (102_400, "100 KiB"),
    (1_500_000, "1.4 MiB"),  # the file the page showed as 1.4 MiB and the CLI as 1.5 MB
    (25 * 1024 * 1024, "25.0 MiB"),
    (3 * 1024**3, "3.0 GiB"),
    (5 * 1024**4, "5120 GiB"),
    (None, "?"),
]


@pytest.mark.parametrize(("count", "text"), CASES)
def test_cli_sizes(count: int | float | None, text: str) -> None:
    assert format_bytes(count) == text


def test_web_app_sizes_are_the_cli_sizes() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    counts = json.dumps([count for count, _ in CASES])
    script = (
        f"import {{ bytes }} from {json.dumps(FORMAT_JS.as_uri())};"
        f"console.log(JSON.stringify({counts}.map((count) => bytes(count))));"
    )
    ran = subprocess.run(
        [node, "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(ran.stdout) == [text for _, text in CASES]


def test_a_reused_jobs_computation_is_said_to_be_the_earlier_jobs() -> None:
    taken = {
        "type": "image.processed",
        "service": "imageproc_runner",  # the reuse's service, not the computation's
        "duration_ms": 102.25,
        "reused_from": "7c6b9b95-0000-4000-8000-000000000000",
        "operations": [{"operation": "thumbnail", "index": 0, "duration_ms": 38.25}],
    }
    assert step_text(taken) == "image processed (102.2 ms, by job 7c6b9b95, earlier)"
    (operation,) = _operations_of(taken)
    assert isinstance(operation, StepRecorded)
    assert step_text(operation.step, 1) == (
        "thumbnail applied (1 of 1, 38.2 ms, by job 7c6b9b95, earlier)"
    )
    computed = {key: value for key, value in taken.items() if key != "reused_from"}
    assert step_text(computed) == "image processed (102.2 ms, by imageproc_runner)"
