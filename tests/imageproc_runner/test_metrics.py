"""The runner counts each job attempt by outcome (test doubles for the broker and S3)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from imageproc_runner.runner import Runner
from messaging import Envelope, MessageContext, RpcError, RpcMessage, new_event_id
from messaging.events import Event, ImageRef, ImageUploaded

SHA = "ab" * 32
REPLY = RpcMessage(
    {"format": "png", "content_type": "image/png", "width": 1, "height": 1, "steps": []},
    b"png",
)


def _jobs(outcome: str, error_code: str = "") -> float:
    labels = {"outcome": outcome, "error_code": error_code}
    return REGISTRY.get_sample_value("imagemesh_runner_jobs_total", labels) or 0.0


class FakeBroker:
    """What the runner and its MessageContext use of a Broker."""

    def __init__(self, answer: Callable[[], RpcMessage]) -> None:
        self.settings = SimpleNamespace(amqp_max_attempts=3)
        self.answer = answer
        self.published: list[Event] = []

    async def publish(self, event: Event, *, cause: Envelope, key: str = "") -> Envelope:
        self.published.append(event)
        return Envelope(id=new_event_id(), type=event.type, source="/imagemesh/tests")

    async def call(self, *_args: Any, **_kwargs: Any) -> RpcMessage:
        return self.answer()


class FakeStore:
    async def get(self, bucket: str, key: str) -> bytes:
        return b"input"

    async def put(self, *_args: Any, **_kwargs: Any) -> None:
        return None


def _run(answer: Callable[[], RpcMessage], attempt: int = 1) -> tuple[Runner, Any, Any]:
    broker: Any = FakeBroker(answer)
    runner = Runner(broker, FakeStore(), output_bucket="out", imageproc_timeout=5)  # type: ignore[arg-type]
    event = ImageUploaded(
        job_id="job-1",
        input=ImageRef(
            bucket="in",
            key="k",
            sha256=SHA,
            bytes=5,
            format="png",
            width=1,
            height=1,
            content_type="image/png",
        ),
        pipeline=[],
        created_at=datetime.now(UTC),
    )
    envelope = Envelope(id=new_event_id(), type=event.type, source="/imagemesh/upload")
    return runner, event, MessageContext(envelope, broker, attempt)


def _raise(code: str) -> Callable[[], RpcMessage]:
    def answer() -> RpcMessage:
        raise RpcError(code, "no")

    return answer


async def test_a_successful_job_is_counted_and_timed() -> None:
    before = _jobs("succeeded")
    timed = REGISTRY.get_sample_value(
        "imagemesh_runner_job_seconds_count", {"outcome": "succeeded"}
    )
    runner, event, ctx = _run(lambda: REPLY)
    await runner.on_uploaded(event, ctx)
    assert _jobs("succeeded") == before + 1
    after = REGISTRY.get_sample_value(
        "imagemesh_runner_job_seconds_count", {"outcome": "succeeded"}
    )
    assert after == (timed or 0) + 1


async def test_a_job_that_fails_for_good_is_counted_by_its_error_code() -> None:
    before = _jobs("failed", "undecodable")
    runner, event, ctx = _run(_raise("undecodable"))
    await runner.on_uploaded(event, ctx)
    assert _jobs("failed", "undecodable") == before + 1


async def test_a_transient_failure_counts_as_retried_unless_it_was_the_last_attempt() -> None:
    before = _jobs("retried", "rpc_timeout")
    runner, event, ctx = _run(_raise("rpc_timeout"), attempt=1)
    with pytest.raises(RpcError):
        await runner.on_uploaded(event, ctx)
    assert _jobs("retried", "rpc_timeout") == before + 1

    runner, event, last = _run(_raise("rpc_timeout"), attempt=3)
    with pytest.raises(RpcError):
        await runner.on_uploaded(event, last)
    assert _jobs("retried", "rpc_timeout") == before + 1  # parked instead: on_parked counts

    parked = _jobs("parked", "retries_exhausted")
    await runner.on_parked(event, last, "gave up after 3 attempts: rpc_timeout: no")
    assert _jobs("parked", "retries_exhausted") == parked + 1
