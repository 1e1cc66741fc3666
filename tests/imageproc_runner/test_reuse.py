"""Work already done is not done again (reuse): the reuse key, and the runner
taking an earlier job's output instead of computing. The runner on an in-memory broker
(`messaging.testing`) with a stand-in imageproc, S3 a test double; end to end in
tests/e2e/test_reuse.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import pytest

from imageproc_runner import reuse as reuse_module
from imageproc_runner.reuse import (
    INDEX_PREFIX,
    Reuse,
    canonical_pipeline,
    index_key,
    reuse_key,
)
from imageproc_runner.runner import Runner
from messaging import (
    Envelope,
    MessageContext,
    RpcCall,
    RpcError,
    follow_up_id,
    topology,
)
from messaging.contracts import EngineReply, EngineRequest, RunReply, RunRequest
from messaging.events import (
    ALL_EVENTS,
    Event,
    ImageProcessed,
    ImageRef,
    ImageReused,
    ImageUploaded,
    JobFailed,
    ProcessingStarted,
    StepTiming,
)
from messaging.testing import MemoryBroker, MemoryServer
from objectstore import ObjectNotFound

SHA = "ab" * 32
OTHER_SHA = "cd" * 32
ENGINE = "imagemesh-imageproc/1 libvips/8.18.7"
THUMB = [{"op": "thumbnail", "width": 64, "height": 64}]


# --------------------------------------------------------------------------- the key


def _key(pipeline: list[dict[str, Any]], sha: str = SHA, engine: str = ENGINE) -> str:
    canonical = canonical_pipeline(pipeline)
    assert canonical is not None
    return reuse_key(sha, canonical, engine)


def test_the_same_work_has_the_same_key() -> None:
    assert _key(THUMB) == _key([{"height": 64, "op": "thumbnail", "width": 64}])


def test_defaults_filled_in_equal_the_same_defaults_given() -> None:
    explicit = canonical_pipeline(THUMB)
    assert explicit is not None
    assert explicit[0] == THUMB[0] | {"fit": "inside", "upscale": False}  # defaults added
    assert _key(THUMB) == _key(explicit)
    assert _key([{"op": "blur", "sigma": 1}]) == _key([{"op": "blur", "sigma": 1.0}])


@pytest.mark.parametrize(
    "other",
    [
        [{"op": "thumbnail", "width": 65, "height": 64}],
        [{"op": "thumbnail", "width": 64, "height": 64, "fit": "cover"}],
        [*THUMB, {"op": "grayscale"}],
        [{"op": "grayscale"}, *THUMB],
        [],
    ],
)
def test_a_different_pipeline_has_another_key(other: list[dict[str, Any]]) -> None:
    assert _key(other) != _key(THUMB)
    assert _key([{"op": "grayscale"}, *THUMB]) != _key([*THUMB, {"op": "grayscale"}])


def test_another_input_or_engine_has_another_key() -> None:
    assert _key(THUMB, sha=OTHER_SHA) != _key(THUMB)
    assert _key(THUMB, engine=ENGINE + " pillow/12") != _key(THUMB)


def test_a_pipeline_that_does_not_parse_has_no_canonical_form() -> None:
    assert canonical_pipeline([{"op": "no-such-operation"}]) is None
    assert canonical_pipeline([{"op": "thumbnail", "width": "64"}]) is None


# --------------------------------------------------------------------------- the runner


class Imageproc:
    """imageproc as the runner sees it, served on the in-memory broker: `imageproc.engine`
    and `imageproc.run`, answering as a test sets it."""

    def __init__(self) -> None:
        self.engine: str | None = ENGINE
        """What `imageproc.engine` answers (None: an error, as when nobody serves it)."""
        self.run_engine: str | None = None
        """The engine `imageproc.run` replies name (default: `engine`)."""
        self.fail_run: str | None = None
        """An error code `imageproc.run` answers with."""
        self.calls: list[str] = []

    async def on_engine(self, request: EngineRequest, call: RpcCall) -> EngineReply:
        self.calls.append(topology.IMAGEPROC_ENGINE.name)
        if self.engine is None:
            raise RpcError("rpc_unavailable", "nobody serves imageproc.engine")
        return EngineReply(engine=self.engine)

    async def on_run(self, request: RunRequest, call: RpcCall) -> tuple[RunReply, bytes]:
        self.calls.append(topology.IMAGEPROC_RUN.name)
        if self.fail_run:
            raise RpcError(self.fail_run, "imageproc refused it")
        output = b"output of " + repr(request.pipeline).encode()
        engine = self.run_engine or self.engine
        steps = [StepTiming(op="thumbnail", params={}, duration_ms=1.5)]
        reply = RunReply(
            format="png", width=1, height=1, input_info={"bands": 3}, engine=engine, steps=steps
        )
        return reply, output

    def runs(self) -> int:
        return self.calls.count(topology.IMAGEPROC_RUN.name)


class FakeStore:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {("in", "sha256/x"): b"input"}

    async def get(self, bucket: str, key: str) -> bytes:
        try:
            return self.objects[(bucket, key)]
        except KeyError:
            raise ObjectNotFound(f"s3://{bucket}/{key}") from None

    async def put(self, bucket: str, key: str, data: bytes, **_: Any) -> None:
        self.objects[(bucket, key)] = data

    async def exists(self, bucket: str, key: str) -> bool:
        return (bucket, key) in self.objects

    async def metadata(self, bucket: str, key: str) -> dict[str, str]:
        if (bucket, key) not in self.objects:
            raise ObjectNotFound(f"s3://{bucket}/{key}")
        return {}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Mesh:
    """One runner with reuse on an in-memory broker of its own, with the imageproc it
    calls, a provenancedb recording every event, a store double and a clock for the
    engine."""

    def __init__(self, server: MemoryServer, runner: MemoryBroker, store: Any) -> None:
        self.server, self.broker, self.store = server, runner, store
        self.imageproc, self.clock, self.recorded = Imageproc(), Clock(), list[Event]()
        self.reuse = Reuse(runner, store, bucket="out", clock=self.clock)
        self.runner = Runner(
            runner, store, output_bucket="out", imageproc_timeout=5, reuse=self.reuse
        )

    async def job(
        self,
        job_id: str,
        pipeline: list[dict[str, Any]] = THUMB,
        *,
        sha: str = SHA,
        principal: str = "local",
        attempt: int = 1,
    ) -> list[Event]:
        """Run a job; the events it published."""
        event = ImageUploaded(
            job_id=job_id,
            input=ImageRef(
                bucket="in",
                key="sha256/x",
                sha256=sha,
                bytes=5,
                format="png",
                width=1,
                height=1,
                content_type="image/png",
            ),
            pipeline=pipeline,
            created_at=datetime.now(UTC),
            principal=principal,
        )
        envelope = Envelope(id=f"uploaded-{job_id}", type=event.type, source="/imagemesh/upload")
        before = len(self.recorded)
        await self.runner.on_uploaded(event, MessageContext(envelope, self.broker, attempt))
        await self.server.settled()
        return list(self.recorded[before:])


MeshFactory = Callable[..., Awaitable[Mesh]]


@pytest.fixture
async def meshes() -> AsyncIterator[MeshFactory]:
    """Makes meshes (`await meshes()`; `await meshes(store)` for another runner replica
    sharing S3); closes their brokers at the end."""
    async with AsyncExitStack() as stack:

        async def make(store: Any = None) -> Mesh:
            server = MemoryServer()
            runner = await stack.enter_async_context(
                MemoryBroker(server, service="imageproc_runner")
            )
            mesh = Mesh(server, runner, store or FakeStore())
            imageproc = await stack.enter_async_context(MemoryBroker(server, service="imageproc"))
            await imageproc.serve(topology.IMAGEPROC_ENGINE, mesh.imageproc.on_engine)
            await imageproc.serve(topology.IMAGEPROC_RUN, mesh.imageproc.on_run)
            recorder = await stack.enter_async_context(MemoryBroker(server, service="provenancedb"))

            async def record(event: Event, ctx: MessageContext) -> None:
                mesh.recorded.append(event)

            await recorder.subscribe(topology.PROVENANCE_EVENTS, record, ALL_EVENTS)
            return mesh

        yield make


def _one(events: list[Event], kind: type[Event]) -> Any:
    (found,) = [e for e in events if isinstance(e, kind)]
    return found


async def test_an_identical_job_reuses_the_output_without_imageproc(meshes: MeshFactory) -> None:
    mesh = await meshes()
    first = await mesh.job("job-1")
    processed = _one(first, ImageProcessed)
    assert mesh.imageproc.runs() == 1
    second = await mesh.job("job-2", [{"op": "thumbnail", "height": 64, "width": 64}])
    assert mesh.imageproc.runs() == 1  # no imageproc work
    assert not [e for e in second if isinstance(e, ProcessingStarted | ImageProcessed)]
    reused = _one(second, ImageReused)
    assert reused.reused_from == "job-1"
    assert reused.output == processed.output  # same bucket, key and sha256
    assert reused.engine == ENGINE
    assert reused.input.info == {"bands": 3}  # what imageproc read from the same bytes
    # The earlier job's image.processed: the activity that made the output.
    assert reused.computation == follow_up_id("uploaded-job-1", ImageProcessed.type)
    # What it took, as a progress view shows it without reading job-1's record back.
    assert reused.taken is not None
    assert reused.taken.duration_ms == processed.duration_ms
    assert reused.taken.attempt == processed.attempt
    assert [(o.op, o.duration_ms) for o in reused.taken.operations] == [
        (s.op, s.duration_ms) for s in processed.steps
    ]
    assert reused.taken.operations  # the stand-in imageproc said it applied one


async def test_a_different_parameter_or_input_computes_afresh(meshes: MeshFactory) -> None:
    mesh = await meshes()
    await mesh.job("job-1")
    other = await mesh.job("job-2", [{"op": "thumbnail", "width": 64, "height": 63}])
    another = await mesh.job("job-3", sha=OTHER_SHA)
    assert mesh.imageproc.runs() == 3
    assert not [e for e in [*other, *another] if isinstance(e, ImageReused)]


async def test_another_principal_with_the_same_bytes_reuses(meshes: MeshFactory) -> None:
    mesh = await meshes()
    await mesh.job("job-1", principal="alice")
    reused = _one(await mesh.job("job-2", principal="bob"), ImageReused)
    assert reused.reused_from == "job-1"
    assert mesh.imageproc.runs() == 1


async def test_a_new_engine_computes_afresh(meshes: MeshFactory) -> None:
    mesh = await meshes()
    await mesh.job("job-1")
    mesh.imageproc.engine = ENGINE + " pillow/99"
    mesh.clock.now += 60  # the cached engine is old: asked again
    again = await mesh.job("job-2")
    assert mesh.imageproc.runs() == 2
    assert not [e for e in again if isinstance(e, ImageReused)]
    # ... and that computation is found under the new engine.
    assert _one(await mesh.job("job-3"), ImageReused).reused_from == "job-2"


async def test_a_reply_from_another_engine_replaces_the_cached_one_at_once(
    meshes: MeshFactory,
) -> None:
    mesh = await meshes()
    await mesh.job("job-1")  # engine cached: ENGINE
    mesh.imageproc.engine = mesh.imageproc.run_engine = "imagemesh-imageproc/2"
    await mesh.job("job-2", [{"op": "grayscale"}])  # computed by engine 2, within the TTL
    again = await mesh.job("job-3")  # job-1's work, but engine 2 is current now
    assert not [e for e in again if isinstance(e, ImageReused)]
    assert mesh.imageproc.runs() == 3


async def test_without_an_engine_the_job_is_computed(meshes: MeshFactory) -> None:
    mesh = await meshes()
    await mesh.job("job-1")
    mesh.imageproc.engine = None
    mesh.clock.now += 60
    await mesh.job("job-2")
    assert mesh.imageproc.runs() == 2


async def test_a_redelivered_job_finding_its_own_entry_computes_again(meshes: MeshFactory) -> None:
    mesh = await meshes()
    await mesh.job("job-1")
    again = await mesh.job("job-1", attempt=2)
    assert mesh.imageproc.runs() == 2
    assert not [e for e in again if isinstance(e, ImageReused)]


async def test_another_replica_finds_the_entry_in_s3_and_an_invalid_one_is_a_miss(
    meshes: MeshFactory,
) -> None:
    mesh = await meshes()
    await mesh.job("job-1")
    replica = await meshes(mesh.store)
    assert _one(await replica.job("job-2"), ImageReused).reused_from == "job-1"
    key = _key(THUMB)
    mesh.store.objects[("out", index_key(key))] = b"{not json"
    await (await meshes(mesh.store)).job("job-3")
    entry = json.loads(mesh.store.objects[("out", index_key(key))])
    assert entry["job_id"] == "job-3"  # computed and indexed again
    mesh.store.objects[("out", index_key(key))] = json.dumps(entry | {"key": "0" * 64}).encode()
    fresh = await meshes(mesh.store)
    assert not [e for e in await fresh.job("job-4") if isinstance(e, ImageReused)]
    assert fresh.imageproc.runs() == 1


async def test_the_index_holds_only_succeeded_computations(meshes: MeshFactory) -> None:
    mesh = await meshes()
    mesh.imageproc.fail_run = "undecodable"
    assert _one(await mesh.job("job-1"), JobFailed).error.code == "undecodable"
    assert not [key for _, key in mesh.store.objects if key.startswith(INDEX_PREFIX)]
    mesh.imageproc.fail_run = None
    await mesh.job("job-2")
    assert [key for _, key in mesh.store.objects if key.startswith(INDEX_PREFIX)] == [
        index_key(_key(THUMB))
    ]
    assert not [e for e in await mesh.job("job-3") if isinstance(e, JobFailed)]
    assert mesh.imageproc.runs() == 2


async def test_the_runner_keeps_at_most_remembered_entries_and_an_older_one_is_read_from_s3(
    meshes: MeshFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reuse_module, "REMEMBERED", 8)
    mesh = await meshes()
    for n in range(20):
        await mesh.job(f"job-{n}", sha=f"{n:064x}")
    assert mesh.reuse.remembered == 8
    reads: list[str] = []
    get = mesh.store.get

    async def counted(bucket: str, key: str) -> bytes:
        reads.append(key)
        return bytes(await get(bucket, key))

    mesh.store.get = counted
    recent = _one(await mesh.job("again-19", sha=f"{19:064x}"), ImageReused)
    assert (recent.reused_from, reads) == ("job-19", [])  # kept: no GET (a HEAD)
    older = _one(await mesh.job("again-0", sha=f"{0:064x}"), ImageReused)
    assert older.reused_from == "job-0"
    assert reads == [index_key(_key(THUMB, sha=f"{0:064x}"))]  # forgotten: read from S3
    assert mesh.reuse.remembered == 8
    assert mesh.imageproc.runs() == 20


async def test_a_remembered_entry_deleted_by_an_erasure_is_not_reused(
    meshes: MeshFactory,
) -> None:
    """An erasure deletes the index entry before the output (`upload/erase.py`): a runner
    that remembers the entry must not hand the erased output to a later job."""
    mesh = await meshes()
    await mesh.job("job-1")
    assert mesh.reuse.remembered == 1
    del mesh.store.objects[("out", index_key(_key(THUMB)))]
    again = await mesh.job("job-2")
    assert not [e for e in again if isinstance(e, ImageReused)]
    assert mesh.imageproc.runs() == 2
    entry = json.loads(mesh.store.objects[("out", index_key(_key(THUMB)))])
    assert entry["job_id"] == "job-2"  # computed afresh, and indexed under the new job


async def test_a_job_whose_input_is_no_longer_stored_fails_at_once(meshes: MeshFactory) -> None:
    """Its input was erased in the moment it was accepted (another job of the same bytes,
    `upload/erase.py`): no attempt brings it back, so no retries, one job.failed."""
    mesh = await meshes()
    del mesh.store.objects[("in", "sha256/x")]
    events = await mesh.job("job-1", sha=f"{7:064x}")
    failed = _one(events, JobFailed)
    assert (failed.error.code, failed.attempt) == ("input_missing", 1)
    assert "no longer stored" in failed.error.message
    assert mesh.imageproc.runs() == 0
