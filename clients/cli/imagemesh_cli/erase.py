"""`imagemesh erase ID`: delete a finished job's images, keep its record.

The server deletes the job's input, output and thumbnail (each unless another job still
uses it) and answers 204; the job's status then shows `erased_at` and `erased_by`, and
its images answer 410. There is no undo, so the command asks first when it can: on a
terminal it names the job and waits for `y`; elsewhere (a script, a pipe) it erases only
with `--yes`, never on a guess.
"""

from __future__ import annotations

from collections.abc import Callable

from .api import ApiClient
from .commands import EXIT_FAILED, EXIT_OK, UsageError, resolve_job_id
from .render import Printer

Confirm = Callable[[str], bool]
"""Asks the question (a line naming the job) and says whether the user agreed."""


async def erase(
    client: ApiClient, printer: Printer, *, job_id: str, confirm: Confirm | None
) -> int:
    """Erase the job `job_id` names (a short id as `status` takes). `confirm` None: no
    question (`--yes`). Exit 1 when the user declines or the server refuses (a job still
    running: cancel it first; none of yours)."""
    erased = await resolve_job_id(client, job_id)
    if confirm is not None:
        job = await client.job(erased)
        question = (
            f"erase job {erased} ({job.get('filename') or 'no file name'}, "
            f"{job.get('status')})? its images are deleted for good, its record stays [y/N] "
        )
        if not confirm(question):
            printer.error("not erased")
            return EXIT_FAILED
    await client.erase(erased)
    printer.emit(
        {"event": "erased", "job_id": erased},
        f"{erased}  erased: its images are deleted; `imagemesh status` shows its record",
    )
    return EXIT_OK


def ask(question: str) -> bool:
    """The terminal's answer to `question`: yes only for `y` or `yes`."""
    try:
        return input(question).strip().lower() in {"y", "yes"}
    except EOFError:
        return False


def confirmation(yes: bool, interactive: bool) -> Confirm | None:
    """How `erase` confirms: not at all with `--yes`; by asking on a terminal; elsewhere
    it refuses (UsageError): erasing cannot be undone, so a script says `--yes`."""
    if yes:
        return None
    if not interactive:
        raise UsageError(
            "erase deletes the job's images for good: give --yes to erase "
            "without a question (stdin is not a terminal to ask on)"
        )
    return ask
