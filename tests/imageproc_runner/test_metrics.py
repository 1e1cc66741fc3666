"""The runner counts each job attempt by outcome: the real runner on in-memory brokers
(`messaging.testing`), with imageproc answering as each test says; S3 is a test double."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client import REGISTRY

from imageproc_runner.runner import Runner
from messaging import Envelope, MessageContext, RpcCall, RpcError, new_event_id, topology
from messaging.contracts import RunReply, RunRequest
from messaging.events import ALL_EVENTS, Event, ImageUploaded
from messaging.testing import MemoryBroker, MemoryServer, memory_settings
from tests.messaging.test_memory_broker import uploaded

REPLY = RunReply(format="png", content_type="image/png", width=1, height=1)


def _jobs(outcome: str, error_code: str = "") -> float:
    labels = {"outcome": outcome, "error_code": error_code}
    return REGISTRY.get_sample_value("imagemesh_runner_jobs_total", labels) or 0.0


class FakeStore:
    async def get(self, bucket: str, key: str) -> bytes:
        return b"input"

    async def put(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class Mesh:
    """The runner, an imageproc answering `answer()` and a provenancedb recording every
    event, on one in-memory broker; the runner's brokers allow 3 attempts."""

    def __init__(self, runner: Runner, broker: MemoryBroker, recorded: list[Event]) -> None:
        self.runner, self.broker, self.recorded = runner, broker, recorded

    def job(self, attempt: int = 1) -> tuple[ImageUploaded, MessageContext]:
        event = uploaded("job-1")
        envelope = Envelope(id=new_event_id(), type=event.type, source="/imagemesh/upload")
        return event, MessageContext(envelope, self.broker, attempt)


@asynccontextmanager
async def _mesh(answer: Callable[[], RunReply]) -> AsyncIterator[Mesh]:
    server = MemoryServer()
    recorded: list[Event] = []

    async def run(request: RunRequest, call: RpcCall) -> tuple[RunReply, bytes]:
        return answer(), b"png"

    async def record(event: Event, ctx: MessageContext) -> None:
        recorded.append(event)

    runner_settings = memory_settings("imageproc_runner", amqp_max_attempts=3)
    async with (
        MemoryBroker(server, service="imageproc") as imageproc,
        MemoryBroker(server, service="provenancedb") as provenancedb,
        MemoryBroker(server, service="imageproc_runner", settings=runner_settings) as broker,
    ):
        await imageproc.serve(topology.IMAGEPROC_RUN, run)
        await provenancedb.subscribe(topology.PROVENANCE_EVENTS, record, ALL_EVENTS)
        store: Any = FakeStore()
        runner = Runner(broker, store, output_bucket="out", imageproc_timeout=5)
        yield Mesh(runner, broker, recorded)
        await server.settled()


def _raise(code: str) -> Callable[[], RunReply]:
    def answer() -> RunReply:
        raise RpcError(code, "no")

    return answer


async def test_a_successful_job_is_counted_and_timed() -> None:
    before = _jobs("succeeded")
    timed = REGISTRY.get_sample_value(
        "imagemesh_runner_job_seconds_count", {"outcome": "succeeded"}
    )
    async with _mesh(lambda: REPLY) as mesh:
        await mesh.runner.on_uploaded(*mesh.job())
    assert _jobs("succeeded") == before + 1
    assert [event.type for event in mesh.recorded] == [
        "job.processing-started",
        "image.processed",
    ]
    after = REGISTRY.get_sample_value(
        "imagemesh_runner_job_seconds_count", {"outcome": "succeeded"}
    )
    assert after == (timed or 0) + 1


async def test_a_job_that_fails_for_good_is_counted_by_its_error_code() -> None:
    before = _jobs("failed", "undecodable")
    async with _mesh(_raise("undecodable")) as mesh:
        await mesh.runner.on_uploaded(*mesh.job())
    assert _jobs("failed", "undecodable") == before + 1
    assert mesh.recorded[-1].type == "job.failed"


async def test_a_transient_failure_counts_as_retried_unless_it_was_the_last_attempt() -> None:
    before = _jobs("retried", "rpc_timeout")
    async with _mesh(_raise("rpc_timeout")) as mesh:
        with pytest.raises(RpcError):
            await mesh.runner.on_uploaded(*mesh.job(attempt=1))
        assert _jobs("retried", "rpc_timeout") == before + 1

        event, last = mesh.job(attempt=3)
        with pytest.raises(RpcError):
            await mesh.runner.on_uploaded(event, last)
        assert _jobs("retried", "rpc_timeout") == before + 1  # parked instead: on_parked counts

        parked = _jobs("parked", "retries_exhausted")
        await mesh.runner.on_parked(event, last, "gave up after 3 attempts: rpc_timeout: no")
        assert _jobs("parked", "retries_exhausted") == parked + 1
