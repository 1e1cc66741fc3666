"""`imagemesh retry ID`: a failed or cancelled job of yours, run again as a new job on the
same stored input (nothing is uploaded), with its own pipeline or a new one. Prints the
new job's id; with `wait`, follows it as `submit --wait` does and saves its result."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from .api import ApiClient
from .commands import (
    EXIT_OK,
    Waiting,
    _follow_one,
    _Job,
    _links,
    _pipeline,
    resolve_job_id,
)
from .pipeline import parse_op
from .render import Printer

__all__ = ["retry"]


async def retry(
    client: ApiClient,
    printer: Printer,
    *,
    job_id: str,
    ops: Sequence[str] = (),
    pipeline_json: str | None = None,
    pipeline_source: str = "--pipeline",
    wait: Waiting | None = None,
) -> int:
    """Retry the job `job_id` names (a short id as `status` takes). A pipeline given
    (`ops` or `pipeline_json`) is checked against the catalogue first, as `submit` checks
    it; none given: the job's own. Exit 1 when the server refuses (a job still running or
    succeeded, none of yours, its input erased) or, waiting, when the new job fails."""
    specs = [parse_op(op) for op in ops]  # syntax first: no round trip for a typo
    retried = await resolve_job_id(client, job_id)
    pipeline = None
    if specs or pipeline_json is not None:
        pipeline = await _pipeline(client, specs, pipeline_json, pipeline_source)
    started = time.monotonic()
    accepted = await client.retry(retried, pipeline)
    new_id = str(accepted["id"])
    printer.emit(
        {"event": "retried", "job_id": new_id, "retry_of": retried, **_links(accepted)},
        f"{new_id}  retry of {retried}",
    )
    if wait is None:
        return EXIT_OK
    old = await client.job(retried)  # its file name names the saved result, as submit's
    name = Path(str(old.get("filename") or f"job-{retried[:8]}")).name
    operations = len(pipeline if pipeline is not None else old.get("pipeline") or [])
    return int(
        await _follow_one(client, printer, _Job(new_id, Path(name), started, operations), wait)
    )
