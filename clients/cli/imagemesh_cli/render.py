"""What the user reads: one line per event for people, one JSON object per line for
programs (`--json`). Errors go to stderr as plain text either way."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from .statuses import CANCELLED, FAILED, SUCCEEDED

__all__ = [
    "Printer",
    "describe_image",
    "describe_pipeline",
    "format_bytes",
    "history_line",
    "job_lines",
    "status_text",
    "step_text",
]


class Printer:
    """Writes to the streams current at the time of writing (so tests can capture them)."""

    def __init__(
        self, *, json_mode: bool, out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.json_mode = json_mode
        self._out = out
        self._err = err

    def emit(self, record: Mapping[str, Any], human: str | None) -> None:
        """`record` as a JSON line with --json, else the `human` line (if any)."""
        if self.json_mode:
            self._write(self._out or sys.stdout, json.dumps(record, default=str))
        elif human is not None:
            self._write(self._out or sys.stdout, human)

    def problem(self, record: Mapping[str, Any], message: str) -> None:
        """Something went wrong: `message` on stderr, and `record` on stdout with --json."""
        if self.json_mode:
            self._write(self._out or sys.stdout, json.dumps(record, default=str))
        self._write(self._err or sys.stderr, message)

    def error(self, message: str) -> None:
        self._write(self._err or sys.stderr, f"imagemesh: {message}")

    @staticmethod
    def _write(stream: TextIO, line: str) -> None:
        stream.write(line + "\n")
        stream.flush()


_UNITS = ("bytes", "KiB", "MiB", "GiB")


def format_bytes(count: object) -> str:
    """`512 bytes`, `52.1 KiB`, `3.4 MiB`, `143 KiB`: binary units (as the API's limits are
    written), exactly as the web app writes them (static/format.js `bytes`; tests/cli/
    test_units.py holds the two to one table): one decimal under 100, halves rounded up."""
    if not isinstance(count, int | float) or isinstance(count, bool) or count != count:
        return "?"
    value, unit = float(count), 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{count:.0f} {'byte' if count == 1 else 'bytes'}"
    if value >= 100:
        return f"{math.floor(value + 0.5)} {_UNITS[unit]}"
    return f"{math.floor(value * 10 + 0.5) / 10:.1f} {_UNITS[unit]}"


def describe_image(image: Mapping[str, Any] | None) -> str:
    """`640x480 jpeg, 52.1 KiB`."""
    if not image:
        return "-"
    size = f"{image.get('width', '?')}x{image.get('height', '?')}"
    return f"{size} {image.get('format', '?')}, {format_bytes(image.get('bytes'))}"


def describe_pipeline(pipeline: Sequence[Mapping[str, Any]] | None) -> str:
    """`thumbnail(width=64) -> grayscale`."""
    if not pipeline:
        return "(none)"
    steps = []
    for op in pipeline:
        params = ",".join(f"{key}={_plain(value)}" for key, value in op.items() if key != "op")
        steps.append(f"{op.get('op')}({params})" if params else str(op.get("op")))
    return " -> ".join(steps)


def status_text(job: Mapping[str, Any]) -> str:
    """A status change: `processing`, `succeeded: <in> -> <out>`, `failed: code: message`."""
    status = str(job.get("status", "unknown"))
    if status == SUCCEEDED:
        return (
            f"succeeded: {describe_image(job.get('input'))} -> {describe_image(job.get('output'))}"
        )
    if status == FAILED:
        return f"failed: {error_text(job.get('error'))}"
    if status == CANCELLED and job.get("cancelled_by"):
        return f"cancelled by {job['cancelled_by']}"
    return status


def error_text(error: object) -> str:
    if isinstance(error, Mapping):
        return f"{error.get('code', 'error')}: {error.get('message', '')}".rstrip(": ")
    return str(error) if error else "unknown error"


_STEP_NAMES = {
    "upload.received": "upload received",
    "image.uploaded": "image uploaded",
    "job.processing-started": "processing started",
    "image.stored": "image stored",
    "image.processed": "image processed",
    "image.reused": "earlier identical result reused",
    "job.failed": "job failed",
    "job.cancel-requested": "cancel requested",
    "job.cancelled": "job cancelled",
    "job.retried": "retried as a new job",
    "job.erased": "job erased (images deleted)",
    "job.parked": "parked",
    "webhook.attempted": "webhook notified",
}


def step_text(step: Mapping[str, Any], operations: int | None = None) -> str:
    """A step of the job: `thumbnail applied (1 of 2, 12.3 ms, by imageproc)`, ..."""
    kind = str(step.get("type", "step"))
    if kind == "job.retry-scheduled":
        error = error_text(step.get("error"))
        return f"attempt {step.get('attempt', '?')} failed: {error}; to be retried"
    details = []
    if isinstance(step.get("index"), int):
        details.append(
            f"{step['index'] + 1} of {operations}" if operations else f"#{step['index'] + 1}"
        )
    attempt = step.get("attempt")
    if isinstance(attempt, int) and (attempt > 1 or kind == "job.processing-started"):
        details.append(f"attempt {attempt}")
    if isinstance(step.get("duration_ms"), int | float):
        details.append(f"{step['duration_ms']:.1f} ms")
    # The computation a reused job took is the earlier job's: said so, not who reused it.
    earlier = step.get("reused_from") if kind in {"image.processed", "operation.applied"} else None
    if earlier:
        details.append(f"by job {str(earlier)[:8]}, earlier")
    elif step.get("service"):
        details.append(f"by {step['service']}")
    suffix = f" ({', '.join(details)})" if details else ""
    # A failed job's error is its status line's; the step only says who recorded it.
    shows_error = step.get("error") and kind != "job.failed"
    error = f": {error_text(step['error'])}" if shows_error else ""
    if kind == "operation.applied":
        return f"{step.get('operation', '?')} applied{suffix}{error}"
    return f"{_STEP_NAMES.get(kind, kind)}{suffix}{error}"


def job_lines(job: Mapping[str, Any]) -> list[str]:
    """`imagemesh status`: the job, one fact a line."""
    rows: list[tuple[str, str]] = [
        ("job", str(job.get("id"))),
        ("status", str(job.get("status"))),
        ("file", str(job.get("filename") or "-")),
        ("created", str(job.get("created_at", "-"))),
        ("updated", str(job.get("updated_at", "-"))),
        ("pipeline", describe_pipeline(job.get("pipeline"))),
        ("input", describe_image(job.get("input"))),
    ]
    if job.get("output"):
        output = job["output"]
        rows.append(("output", f"{describe_image(output)} ({output.get('content_type', '?')})"))
    if job.get("steps"):
        timings = (f"{step.get('op')} {step.get('duration_ms', 0):.1f} ms" for step in job["steps"])
        rows.append(("steps", ", ".join(timings)))
    if job.get("error"):
        rows.append(("error", error_text(job["error"])))
    if job.get("cancelled_by"):
        rows.append(("cancelled", f"by {job['cancelled_by']}"))
    if job.get("retry_of"):
        rows.append(("retry of", str(job["retry_of"])))
    if job.get("retried_by"):
        rows.append(("retried", "as " + ", ".join(map(str, job["retried_by"]))))
    if job.get("erased_at"):
        rows.append(("erased", f"{job['erased_at']} by {job.get('erased_by')}: images deleted"))
    return [f"{name:<9} {value}" for name, value in rows]


def history_line(job: Mapping[str, Any]) -> str:
    """`imagemesh history`: id, status, when, file, size in and out."""
    sizes = _size(job.get("input"))
    if job.get("output"):
        sizes += f" -> {_size(job['output'])}"
    outcome = f"  {error_text(job['error'])}" if job.get("error") else ""
    return (
        f"{job.get('id')}  {job.get('status', '?'):<10}  {job.get('created_at', '-')}  "
        f"{job.get('filename') or '-'}  {sizes}{outcome}"
    ).rstrip()


def _size(image: object) -> str:
    if not isinstance(image, Mapping):
        return "-"
    return f"{image.get('width', '?')}x{image.get('height', '?')}"


def _plain(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)
