"""Following a job: every job reads the same, however late the client starts following.

The server's stream sends the steps already recorded first (a job may be over before the
CLI follows it: `submit --wait` with three files follows the second and third only once
they are sent), then the current status. The CLI shows each status the job went
through, from its steps, and each step once (by its event id) across reconnections."""

from __future__ import annotations

import uuid
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from imagemesh_cli.api import ApiClient
from imagemesh_cli.follow import StatusChanged, StepRecorded, Update, follow
from tests.conftest import Mesh

from .fake import DROP, FakeApi, job, sse, succeeded
from .test_e2e import SUBMITTED, imagemesh, make_image

JOB = str(uuid.uuid4())


def recorded(kind: str, at: str, **fields: Any) -> str:
    """A step as the stream sends it, named by its event id."""
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{JOB}/{kind}"))
    step = {"id": event_id, "type": kind, "time": at, "service": "upload", **fields}
    return sse("step", step, event_id=event_id)


TRAIL = [
    recorded("upload.received", "2026-01-01T00:00:00.001000Z", stored=True),
    recorded("image.uploaded", "2026-01-01T00:00:00.002000Z"),
    recorded("job.processing-started", "2026-01-01T00:00:00.010000Z", attempt=1),
    recorded(
        "image.processed",
        "2026-01-01T00:00:00.050000Z",
        attempt=1,
        operations=[{"operation": "thumbnail", "index": 0, "duration_ms": 3.25}],
    ),
]


async def updates(fake: FakeApi) -> list[Update]:
    async with ApiClient(fake.url, retry_for=2) as client, aclosing(follow(client, JOB)) as stream:
        return [update async for update in stream]


def shown(seen: list[Update]) -> list[str]:
    return [
        f"status {u.status}" if isinstance(u, StatusChanged) else str(u.step["type"]) for u in seen
    ]


async def test_a_job_followed_after_it_ended_shows_every_status_it_went_through(
    fake: FakeApi,
) -> None:
    fake.snapshots[JOB] = [succeeded(JOB)]
    fake.streams[JOB] = [[*TRAIL, sse("status", succeeded(JOB))]]
    assert shown(await updates(fake)) == [
        "upload.received",
        "image.uploaded",
        "status queued",
        "job.processing-started",
        "status processing",
        "operation.applied",
        "image.processed",
        "status succeeded",
    ]


async def test_a_job_followed_from_its_start_shows_each_status_once(fake: FakeApi) -> None:
    fake.snapshots[JOB] = [job(JOB, "queued")]
    live = [TRAIL[2], sse("status", job(JOB, "processing")), TRAIL[3]]
    fake.streams[JOB] = [
        [*TRAIL[:2], sse("status", job(JOB, "queued")), *live, sse("status", succeeded(JOB))]
    ]
    statuses = [u.status for u in await updates(fake) if isinstance(u, StatusChanged)]
    assert statuses == ["queued", "processing", "succeeded"]


async def test_a_reconnection_repeats_no_step(fake: FakeApi) -> None:
    fake.snapshots[JOB] = [job(JOB, "processing")]
    # The second connection starts over: the same steps (their times written otherwise).
    again = [chunk.replace("000Z", "Z") for chunk in TRAIL]
    fake.streams[JOB] = [
        [*TRAIL[:3], sse("status", job(JOB, "processing")), DROP],
        [*again, sse("status", succeeded(JOB))],
    ]
    steps = [u.step["type"] for u in await updates(fake) if isinstance(u, StepRecorded)]
    assert steps == [
        "upload.received",
        "image.uploaded",
        "job.processing-started",
        "operation.applied",
        "image.processed",
    ]


@pytest.mark.e2e
def test_every_job_of_a_submit_wait_shows_queued_against_the_real_mesh(
    mesh: Mesh, tmp_path: Path
) -> None:
    files = [make_image(tmp_path / f"photo-{n}.jpg", (320, 240), "JPEG") for n in range(3)]
    run = imagemesh(mesh, "submit", *files, "--op", "thumbnail:width=64", "--wait", "-o", tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    ids = [job_id for job_id, _ in SUBMITTED.findall(run.stdout)]
    assert len(ids) == 3
    for job_id in ids:
        shown = [
            line.split("  ", 2)[2]
            for line in run.stdout.splitlines()
            if line.startswith(f"{job_id[:8]}  +")
        ]
        said = [text.split(" (")[0].split(":")[0] for text in shown]
        assert said[:-1] == [
            "upload received",
            "image uploaded",
            "queued",
            "processing started",
            "processing",
            "thumbnail applied",
            "image processed",
            "succeeded",
        ], shown
