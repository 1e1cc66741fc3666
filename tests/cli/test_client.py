"""The API client and job following against a scripted stand-in for the API (no mesh):
503 retries, event streams that drop or end early, and the polling fallback."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from imagemesh_cli.api import ApiClient, ApiError, Unavailable, Unreachable
from imagemesh_cli.follow import StatusChanged, StepRecorded, Update, follow

from .fake import DROP, FakeApi, failed, job, sse, succeeded

JOB = "6f1c2b3a-0000-4000-8000-000000000001"
STEP = {
    "type": "operation.applied",
    "time": "t1",
    "service": "imageproc",
    "operation": "thumbnail",
    "index": 0,
    "duration_ms": 3.2,
}
STARTED = {
    "type": "job.processing-started",
    "time": "t0",
    "service": "imageproc_runner",
    "attempt": 1,
}


async def updates_of(api: FakeApi, job_id: str = JOB, **client: Any) -> list[Update]:
    async with ApiClient(api.url, **client) as session:
        return [update async for update in follow(session, job_id)]


def summary(updates: list[Update]) -> list[str]:
    return [
        f"status {update.status}"
        if isinstance(update, StatusChanged)
        else f"step {update.step['type']}"
        for update in updates
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- requests ----------------------------------------------------------------------------


async def test_503_is_retried_as_retry_after_asks(fake: FakeApi) -> None:
    fake.snapshots[JOB] = [job(JOB, "queued")]
    fake.unavailable = 2
    async with ApiClient(fake.url, retry_for=5) as client:
        answer = await client.job(JOB)
    assert answer["status"] == "queued"
    assert fake.paths() == [f"/api/v1/jobs/{JOB}"] * 3


async def test_503_past_the_deadline_is_unavailable_with_the_servers_message(
    fake: FakeApi,
) -> None:
    fake.unavailable, fake.retry_after = 100, "30"
    started = time.monotonic()
    async with ApiClient(fake.url, retry_for=5) as client:
        with pytest.raises(Unavailable, match="the broker is down"):
            await client.job(JOB)
    assert time.monotonic() - started < 2, "a Retry-After past the deadline is not waited for"
    assert len(fake.paths()) == 1


async def test_api_errors_carry_status_code_and_message(fake: FakeApi) -> None:
    async with ApiClient(fake.url) as client:
        with pytest.raises(ApiError) as caught:
            await client.job(JOB)
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    assert caught.value.message == f"no job {JOB}"


async def test_a_refused_upload_is_retried_after_503_with_the_whole_form(fake: FakeApi) -> None:
    fake.unavailable = 1
    async with ApiClient(fake.url, retry_for=5) as client:
        accepted = await client.submit(b"\x89PNG...", "a.png", [{"op": "grayscale"}])
    assert fake.uploads == [
        {"id": accepted["id"], "filename": "a.png", "pipeline": [{"op": "grayscale"}]}
    ]


async def test_nothing_listening_is_unreachable_at_once() -> None:
    started = time.monotonic()
    async with ApiClient(f"http://127.0.0.1:{free_port()}", retry_for=30) as client:
        with pytest.raises(Unreachable, match="cannot reach imagemesh"):
            await client.operations()
    assert time.monotonic() - started < 5


# --- following a job ---------------------------------------------------------------------


async def test_stream_gives_statuses_and_steps_then_ends(fake: FakeApi) -> None:
    fake.snapshots[JOB] = [job(JOB, "queued")]
    fake.streams[JOB] = [
        [
            sse("status", job(JOB, "queued")),
            ": keep-alive\n\n",
            sse("status", job(JOB, "processing")),
            sse("step", STARTED),
            sse("step", STEP),
            sse("ping", {}),
            sse("status", succeeded(JOB)),
            sse("status", job(JOB, "queued")),  # never read: the job ended
        ]
    ]
    updates = await updates_of(fake)
    assert summary(updates) == [
        "status queued",
        "status processing",
        "step job.processing-started",
        "step operation.applied",
        "status succeeded",
    ]
    assert isinstance(updates[3], StepRecorded)
    assert updates[3].step == STEP
    assert fake.paths() == [f"/api/v1/jobs/{JOB}/events"]


PROCESSED = {
    "type": "image.processed",
    "time": "t2",
    "service": "imageproc_runner",
    "duration_ms": 20.0,
    "attempt": 2,
    "operations": [
        {"operation": "thumbnail", "index": 0, "duration_ms": 3.2},
        {"operation": "grayscale", "index": 1, "duration_ms": 0.5},
    ],
}


async def test_the_processed_steps_operations_are_each_a_step_before_it(fake: FakeApi) -> None:
    # The server records the operations in image.processed (no operation.applied steps).
    fake.snapshots[JOB] = [job(JOB, "processing")]
    fake.streams[JOB] = [
        [
            sse("status", job(JOB, "processing")),
            sse("step", STARTED),
            sse("step", PROCESSED),
            sse("status", succeeded(JOB)),
        ]
    ]
    updates = await updates_of(fake)
    assert summary(updates) == [
        "status processing",
        "step job.processing-started",
        "step operation.applied",
        "step operation.applied",
        "step image.processed",
        "status succeeded",  # the job's steps are not repeated from its snapshot
    ]
    shown = [u.step for u in updates[2:4] if isinstance(u, StepRecorded)]
    assert shown == [
        {
            "type": "operation.applied",
            "operation": name,
            "index": index,
            "duration_ms": took,
            "service": "imageproc",
            "attempt": 2,
        }
        for index, (name, took) in enumerate([("thumbnail", 3.2), ("grayscale", 0.5)])
    ]


async def test_dropped_stream_is_reconnected_with_last_event_id(fake: FakeApi) -> None:
    fake.snapshots[JOB] = [job(JOB, "processing")]
    fake.streams[JOB] = [
        [
            sse("status", job(JOB, "processing"), event_id="1"),
            sse("step", STEP, event_id="2"),
            'event: step\ndata: {"type": "half',  # the connection dies mid-event
            DROP,
        ],
        [
            # A fresh snapshot first; the step seen before is not shown twice.
            sse("status", job(JOB, "processing"), event_id="3"),
            sse("step", STEP, event_id="2"),
            sse("status", failed(JOB), event_id="4"),
        ],
    ]
    updates = await updates_of(fake)
    assert summary(updates) == ["status processing", "step operation.applied", "status failed"]
    headers = [headers for _, path, headers in fake.requests if path.endswith("/events")]
    assert len(headers) == 2
    assert "Last-Event-ID" not in headers[0]
    assert headers[1]["Last-Event-ID"] == "2"


async def test_stream_closed_before_the_end_is_reconnected(fake: FakeApi) -> None:
    fake.snapshots[JOB] = [job(JOB, "queued")]
    fake.streams[JOB] = [
        [sse("status", job(JOB, "queued"))],
        [sse("status", job(JOB, "queued"))],
        [sse("status", succeeded(JOB))],
    ]
    updates = await updates_of(fake)
    # The job's steps are in its final snapshot when the stream never sent them.
    assert summary(updates) == ["status queued", "step operation.applied", "status succeeded"]
    assert len(fake.paths()) == 3


async def test_server_without_event_stream_is_polled(fake: FakeApi) -> None:
    fake.events_supported = False
    fake.snapshots[JOB] = [
        job(JOB, "queued"),
        job(JOB, "queued"),
        job(JOB, "processing"),
        succeeded(JOB),
    ]
    updates = await updates_of(fake)
    assert summary(updates) == [
        "status queued",
        "status processing",
        "step operation.applied",
        "status succeeded",
    ]
    step = updates[2]
    assert isinstance(step, StepRecorded)
    assert step.step == {
        "type": "operation.applied",
        "operation": "thumbnail",
        "index": 0,
        "duration_ms": 3.25,
    }
    assert fake.paths() == [f"/api/v1/jobs/{JOB}/events"] + [f"/api/v1/jobs/{JOB}"] * 4


async def test_unknown_job_is_not_found_not_polled(fake: FakeApi) -> None:
    with pytest.raises(ApiError, match=f"no job {JOB}"):
        await updates_of(fake)


async def test_polling_retries_503s(fake: FakeApi) -> None:
    fake.events_supported = False
    fake.snapshots[JOB] = [failed(JOB)]
    fake.unavailable = 2
    updates = await updates_of(fake, retry_for=5)
    assert summary(updates) == ["status failed"]


async def test_server_gone_for_good_while_following_is_unavailable() -> None:
    async with ApiClient(f"http://127.0.0.1:{free_port()}", retry_for=0.3) as client:
        with pytest.raises(Unavailable, match="cannot reach"):
            [update async for update in follow(client, JOB)]
