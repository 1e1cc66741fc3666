"""The order of a progress stream's events when provenance gets ahead of the live feed.

Provenance (read for the status) and the live queue (the steps) follow the mesh's events
separately, so the status read after `job.processing-started` may already say "succeeded"
while the job's last steps are still on their way to the stream. The end-to-end tests
meet this race only now and then; here it is made to happen every time."""

from __future__ import annotations

import json
from typing import Any, cast

from aiohttp import web

from messaging.events import Event
from tests.fuzz.samples import JOB, envelope, events
from upload.jobs import Jobs
from upload.live import Inbox
from upload.progress import _follow, _Stream


class Recorder:
    """Stands in for the HTTP response: keeps what the stream writes."""

    def __init__(self) -> None:
        self.text = ""

    async def write(self, data: bytes) -> None:
        self.text += data.decode()

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        parsed = []
        for block in self.text.strip().split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.splitlines())
            parsed.append((lines["event"], json.loads(lines["data"])))
        return parsed


class FinishedJobs:
    """Provenance that has recorded the whole job already."""

    async def status(self, job_id: str) -> dict[str, Any]:
        return {"id": job_id, "status": "succeeded"}


def queued(inbox: Inbox, *types: str) -> None:
    for event_type in types:
        event: Event = events()[event_type]
        inbox.put(envelope(event_type), event)


async def follow(inbox: Inbox) -> list[tuple[str, dict[str, Any]]]:
    recorder = Recorder()
    stream = _Stream(cast(web.StreamResponse, recorder))
    await _follow(stream, cast(Jobs, FinishedJobs()), inbox, {"id": JOB, "status": "queued"})
    return recorder.events()


async def test_steps_still_on_their_way_come_before_the_final_status() -> None:
    inbox = Inbox()
    queued(inbox, "job.processing-started", "operation.applied", "image.processed")
    sent = await follow(inbox)
    assert [(name, data["type"] if name == "step" else data["status"]) for name, data in sent] == [
        ("step", "job.processing-started"),
        ("step", "operation.applied"),
        ("step", "image.processed"),
        ("status", "succeeded"),
    ]
    assert sent[1][1]["service"] == "upload"  # as the sample envelope says


async def test_a_lost_final_event_delays_the_status_only_briefly(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr("upload.progress.CATCH_UP_SECONDS", 0.05)
    inbox = Inbox()
    queued(inbox, "job.processing-started", "operation.applied")
    sent = await follow(inbox)
    assert [name for name, _ in sent] == ["step", "step", "status"]
    assert sent[-1][1]["status"] == "succeeded"
    assert inbox.queue.empty()
