"""The history thumbnail of each output: the real runner on in-memory brokers, imageproc
answering as each test says, S3 a test double. The job never waits for its thumbnail, a
thumbnail that cannot be made never fails a job, and what is stored is only ever WebP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from imageproc_runner.runner import Runner
from imageproc_runner.thumbnails import Thumbnails
from messaging import Envelope, MessageContext, RpcCall, RpcError, new_event_id, topology
from messaging.contracts import RunReply, RunRequest
from messaging.events import ALL_EVENTS, Event
from messaging.testing import MemoryBroker, MemoryServer, memory_settings
from messaging.thumbnails import THUMBNAIL_PIPELINE, thumbnail_key
from tests.messaging.test_memory_broker import uploaded
from tests.waiting import async_wait_for


class Store:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}

    async def get(self, bucket: str, key: str) -> bytes:
        return b"input"

    async def put(self, bucket: str, key: str, data: bytes, **kwargs: Any) -> None:
        self.objects[(bucket, key)] = (data, kwargs["content_type"])


class Imageproc:
    """Answers the job's pipeline at once, with its thumbnail when `inline` (as today's
    imageproc does); else (an older imageproc) the thumbnail's own request when `release`
    is set, as `thumbnail_format` (None: an error)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.thumbnail_format: str | None = "webp"
        self.inline = False
        self.requests: list[RunRequest] = []

    async def run(self, request: RunRequest, call: RpcCall) -> tuple[RunReply, bytes]:
        self.requests.append(request)
        if request.pipeline != THUMBNAIL_PIPELINE:
            if self.inline and request.thumbnail:
                reply = RunReply(format="png", width=300, height=200, thumbnail_bytes=7)
                return reply, b"the output" + b"inthumb"
            return RunReply(format="png", width=300, height=200), b"the output"
        await self.release.wait()
        if self.thumbnail_format is None:
            raise RpcError("undecodable", "no")
        return RunReply(format=self.thumbnail_format, width=96, height=96), b"thumb"


@asynccontextmanager
async def _mesh() -> AsyncIterator[tuple[Runner, MemoryBroker, Imageproc, Store, list[Event]]]:
    server, imageproc, store, recorded = MemoryServer(), Imageproc(), Store(), []

    async def record(event: Event, ctx: MessageContext) -> None:
        recorded.append(event)

    async with (
        MemoryBroker(server, service="imageproc") as serving,
        MemoryBroker(server, service="provenancedb") as provenancedb,
        MemoryBroker(
            server, service="imageproc_runner", settings=memory_settings("imageproc_runner")
        ) as broker,
    ):
        await serving.serve(topology.IMAGEPROC_RUN, imageproc.run)
        await provenancedb.subscribe(topology.PROVENANCE_EVENTS, record, ALL_EVENTS)
        any_store: Any = store
        thumbnails = Thumbnails(broker, any_store, bucket="out")
        runner = Runner(
            broker, any_store, output_bucket="out", imageproc_timeout=5, thumbnails=thumbnails
        )
        yield runner, broker, imageproc, store, recorded
        imageproc.release.set()
        await thumbnails.stop(5)
        await server.settled()


def _job(broker: MemoryBroker) -> tuple[Any, MessageContext]:
    event = uploaded("job-1")
    envelope = Envelope(id=new_event_id(), type=event.type, source="/imagemesh/upload")
    return event, MessageContext(envelope, broker, 1)


async def test_the_job_succeeds_without_waiting_and_the_thumbnail_follows() -> None:
    async with _mesh() as (runner, broker, imageproc, store, recorded):
        await runner.on_uploaded(*_job(broker))  # returns while the thumbnail is held
        await async_wait_for(lambda: [e for e in recorded if e.type == "image.processed"])
        processed: Any = next(e for e in recorded if e.type == "image.processed")
        key = ("out", thumbnail_key(processed.output.sha256))
        assert key not in store.objects
        imageproc.release.set()
        await async_wait_for(lambda: key in store.objects, what="the thumbnail stored")
        assert store.objects[key] == (b"thumb", "image/webp")


async def test_a_thumbnail_that_fails_or_is_not_webp_is_not_stored() -> None:
    for answer in (None, "png"):
        async with _mesh() as (runner, broker, imageproc, store, recorded):
            imageproc.thumbnail_format = answer
            imageproc.release.set()
            await runner.on_uploaded(*_job(broker))
            await async_wait_for(lambda: [e for e in recorded if e.type == "image.processed"])
            await asyncio.wait_for(runner._thumbnails.stop(5), 5)  # type: ignore[union-attr]
            assert [key for _, key in store.objects if key.startswith("thumbnails/")] == []
            assert [e.type for e in recorded if e.type == "job.failed"] == []


async def test_imageproc_makes_the_thumbnail_in_the_jobs_own_call() -> None:
    async with _mesh() as (runner, broker, imageproc, store, recorded):
        imageproc.inline = True
        await runner.on_uploaded(*_job(broker))
        processed: Any = next(e for e in recorded if e.type == "image.processed")
        key = ("out", thumbnail_key(processed.output.sha256))
        await async_wait_for(lambda: key in store.objects, what="the thumbnail stored")
        assert store.objects[key] == (b"inthumb", "image/webp")
        # The output is the payload without the thumbnail, and nothing else was asked.
        (output,) = [data for (_, k), (data, _) in store.objects.items() if k != key[1]]
        assert output == b"the output"
        assert processed.output.bytes == len(b"the output")
        assert [r.thumbnail for r in imageproc.requests] == [True]
