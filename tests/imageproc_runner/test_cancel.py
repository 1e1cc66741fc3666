"""Cancelling a job: the runner hears `job.cancel-requested` on its own live queue and
stops the job before it starts, or drops imageproc's output after it answered (never
stored), recording `job.cancelled` with who asked. The real runner and brokers in memory
(`messaging.testing`), imageproc answering as each test says, S3 a test double; against
the real mesh in tests/e2e/test_cancel.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from imageproc_runner.runner import Runner
from messaging import Envelope, MessageContext, RpcCall, RpcError, new_event_id, topology
from messaging.cancels import Cancellations, stopped, stopped_by
from messaging.contracts import RunReply, RunRequest
from messaging.events import ALL_EVENTS, CancelRequested, Event, ImageUploaded, JobCancelled
from messaging.jobs import fold_status, record
from messaging.testing import MemoryBroker, MemoryServer
from tests.imageproc_runner.test_metrics import REPLY, _jobs
from tests.messaging.test_memory_broker import uploaded
from tests.waiting import async_wait_for


class Store:
    def __init__(self) -> None:
        self.puts: list[str] = []

    async def get(self, bucket: str, key: str) -> bytes:
        return b"input"

    async def put(self, bucket: str, key: str, *_args: Any, **_kwargs: Any) -> None:
        self.puts.append(key)


class Mesh:
    def __init__(
        self,
        runner: Runner,
        broker: MemoryBroker,
        upload: MemoryBroker,
        store: Store,
        cancellations: Cancellations,
    ) -> None:
        self.runner, self.broker, self.upload, self.store = runner, broker, upload, store
        self.cancellations = cancellations
        self.recorded: list[tuple[Envelope, Event]] = []

    def job(self, job_id: str = "job-1") -> tuple[ImageUploaded, MessageContext]:
        event = uploaded(job_id)
        envelope = Envelope(id=new_event_id(), type=event.type, source="/imagemesh/upload")
        self.recorded.append((envelope, event))
        return event, MessageContext(envelope, self.broker, 1)

    async def cancel(self, job_id: str, principal: str = "alice") -> None:
        """Upload's request, through the broker; returns once the runner heard it."""
        await self.upload.publish(CancelRequested(job_id=job_id, principal=principal))
        await async_wait_for(
            lambda: self.cancellations.asked_by(job_id) == principal,
            timeout=5,
            what="the runner hears the cancellation",
        )

    def of_type(self, kind: type[Event]) -> list[Event]:
        return [event for _, event in self.recorded if isinstance(event, kind)]


@asynccontextmanager
async def _mesh(run: Callable[[Mesh], Any]) -> AsyncIterator[Mesh]:
    server = MemoryServer()
    async with (
        MemoryBroker(server, service="imageproc") as imageproc,
        MemoryBroker(server, service="provenancedb") as provenancedb,
        MemoryBroker(server, service="upload") as upload,
        MemoryBroker(server, service="imageproc_runner") as broker,
    ):
        store = Store()
        cancellations = Cancellations()
        runner = Runner(
            broker,
            store,  # type: ignore[arg-type]
            output_bucket="out",
            imageproc_timeout=5,
            cancellations=cancellations,
        )
        mesh = Mesh(runner, broker, upload, store, cancellations)

        async def serve(request: RunRequest, call: RpcCall) -> tuple[RunReply, bytes]:
            return await run(mesh), b"png"

        async def keep(event: Event, ctx: MessageContext) -> None:
            if not isinstance(event, ImageUploaded):  # the test keeps its own
                mesh.recorded.append((ctx.envelope, event))

        await imageproc.serve(topology.IMAGEPROC_RUN, serve)
        await provenancedb.subscribe(topology.PROVENANCE_EVENTS, keep, ALL_EVENTS)
        await broker.watch(mesh.cancellations.on_event, topology.CANCEL_REQUESTS)
        yield mesh
        await server.settled()


async def _answer(mesh: Mesh) -> RunReply:
    return REPLY


def _status(mesh: Mesh, job_id: str) -> dict[str, Any] | None:
    return fold_status(job_id, [record(envelope, event) for envelope, event in mesh.recorded])


async def test_a_job_cancelled_while_queued_never_starts() -> None:
    before = _jobs("cancelled", "cancelled_before_start")
    async with _mesh(_answer) as mesh:
        await mesh.cancel("job-1")
        await mesh.runner.on_uploaded(*mesh.job("job-1"))
    (cancelled,) = mesh.of_type(JobCancelled)
    assert isinstance(cancelled, JobCancelled)
    assert (cancelled.principal, cancelled.while_processing) == ("alice", False)
    assert [e.type for _, e in mesh.recorded if e.type.startswith("job.processing")] == []
    assert mesh.store.puts == []
    job = _status(mesh, "job-1")
    assert job is not None
    assert (job["status"], job["cancelled_by"]) == ("cancelled", "alice")
    assert "output" not in job
    assert _jobs("cancelled", "cancelled_before_start") == before + 1


async def test_a_job_cancelled_while_imageproc_works_stores_no_output() -> None:
    started = asyncio.Event()
    heard = asyncio.Event()

    async def slow(mesh: Mesh) -> RunReply:
        started.set()
        await heard.wait()  # imageproc answers only after the runner heard the request
        return REPLY

    async with _mesh(slow) as mesh:
        work = asyncio.create_task(mesh.runner.on_uploaded(*mesh.job("job-2")))
        await asyncio.wait_for(started.wait(), 5)
        await mesh.cancel("job-2", principal="bob")
        heard.set()
        await asyncio.wait_for(work, 5)
    (cancelled,) = mesh.of_type(JobCancelled)
    assert isinstance(cancelled, JobCancelled)
    assert (cancelled.principal, cancelled.while_processing) == ("bob", True)
    assert mesh.store.puts == []
    assert [e.type for _, e in mesh.recorded if e.type == "image.processed"] == []
    job = _status(mesh, "job-2")
    assert job is not None
    assert job["status"] == "cancelled"


async def test_another_jobs_cancellation_changes_nothing() -> None:
    async with _mesh(_answer) as mesh:
        await mesh.cancel("job-other")
        await mesh.runner.on_uploaded(*mesh.job("job-3"))
    assert mesh.of_type(JobCancelled) == []
    assert mesh.store.puts == ["job-3/output.png"]
    job = _status(mesh, "job-3")
    assert job is not None
    assert job["status"] == "succeeded"


def test_the_remembered_cancellations_are_bounded_newest_kept() -> None:
    cancellations = Cancellations(limit=2)
    for job_id in ("a", "b", "c"):
        cancellations.add(job_id, "alice")
    assert [cancellations.asked_by(j) for j in ("a", "b", "c")] == [None, "alice", "alice"]


def test_a_cancelled_job_outranks_nothing_it_did_not_reach() -> None:
    """The fold: `job.cancelled` is final, as final as success or failure (rank 2)."""
    uploaded_event = uploaded("job-4")
    at = Envelope(id=new_event_id(), type=uploaded_event.type, source="/imagemesh/upload")
    cancelled = JobCancelled(
        job_id="job-4", principal="alice", input=uploaded_event.input, pipeline=[]
    )
    later = Envelope(
        id=new_event_id(),
        type=cancelled.type,
        source="/imagemesh/imageproc_runner",
        time=datetime.now(UTC),
    )
    job = fold_status("job-4", [record(at, uploaded_event), record(later, cancelled)])
    assert job is not None
    assert (job["status"], job["cancelled_by"], job["owner"]) == ("cancelled", "alice", "local")


async def test_a_cancellation_only_imageproc_heard_still_ends_the_job_cancelled() -> None:
    async def stopped_there(mesh: Mesh) -> RunReply:
        raise stopped("bob")  # imageproc stopped the pipeline; this replica missed it

    async with _mesh(stopped_there) as mesh:
        await mesh.runner.on_uploaded(*mesh.job("job-1"))
    (cancelled,) = mesh.of_type(JobCancelled)
    assert isinstance(cancelled, JobCancelled)
    assert (cancelled.principal, cancelled.while_processing) == ("bob", True)
    assert mesh.store.puts == []
    assert (_status(mesh, "job-1") or {}).get("status") == "cancelled"


def test_only_a_stopped_answer_names_who_cancelled() -> None:
    assert stopped_by(stopped("alice@example.org")) == "alice@example.org"
    assert stopped_by(RpcError("cancelled", "something else")) is None
    assert stopped_by(RpcError("timeout", "cancelled by alice")) is None
    assert stopped_by(RpcError("cancelled", "cancelled by not a principal")) is None
