"""Work already done is not done again.

A job whose input bytes, canonical pipeline (parsed, defaults filled in, in order) and
engine (what imageproc computes with: `imageproc/engine.py`) equal those of a job that
already succeeded takes that job's output as it is: no `job.processing-started`, no
imageproc call, one `image.reused` event naming the earlier job (`reused_from`) and its
computation, so status and provenance show what happened.

- The reuse key is the SHA-256 of the canonical JSON of `[input sha256, canonical
  pipeline, engine]` (`reuse_key`): a different parameter, input byte or engine is a
  different key, and so computed afresh.
- The index is one small JSON object per succeeded computation in the output bucket,
  `computations/<key>.json` (`Computation`), written after the output is stored and
  before `image.processed` is published: only a computation whose output exists is
  found. A miss costs one S3 GET (404), a hit one GET (or, for an entry this runner
  remembers, one HEAD: is it still there?); a job whose input bytes were new to the input
  store (`ImageUploaded.input_new`: upload's conditional put stored them) needs no lookup
  at all. The output itself is not checked: an erasure (`upload/erase.py`) deletes the
  entry pointing at an output before it deletes the output, so an erased output is never
  taken, even by a runner that remembered its entry.
- The engine: each `imageproc.run` reply names the one that computed it, and a lookup
  needs the current one before any work, so it is asked (`imageproc.engine`) and kept
  for `ENGINE_TTL_SECONDS`; a reply naming another engine replaces it at once. No
  answer: no lookup (the job is computed, as before).
- Principals: inputs are content-addressed, so a job of another principal with the same
  key uploaded the very same bytes and owns them as much: its job reuses the output (the
  earlier job stays unreadable to it). See SECURITY.md for what this tells it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from messaging import (
    Broker,
    MessageContext,
    RpcError,
    follow_up_id,
    topology,
)
from messaging.computations import INDEX_PREFIX, index_key, reuse_key
from messaging.contracts import EngineRequest
from messaging.events import (
    ImageProcessed,
    ImageRef,
    ImageReused,
    ImageUploaded,
    OperationTiming,
    TakenComputation,
)
from objectstore import ObjectNotFound, ObjectStore
from pipeline import canonical_pipeline

log = structlog.get_logger("imageproc_runner")

__all__ = ["INDEX_PREFIX", "Computation", "Reuse", "canonical_pipeline", "index_key", "reuse_key"]
REMEMBERED = 4096
"""Index entries this runner keeps in memory: a hit on one it wrote or read costs one S3
HEAD (the entry must still exist: its job may have been erased), not a GET. Misses are
never kept (another replica may compute). Kept as their JSON (~1 KB; parsed again on a
hit, tens of microseconds): as models, with the input's info, each took ~4.4 KB, and the
runner grew ~18 MB over its first 4096 jobs."""
ENGINE_TTL_SECONDS = 5.0
ENGINE_TIMEOUT_SECONDS = 2.0
SHA256 = r"^[0-9a-f]{64}$"

REUSE = Counter(
    "imagemesh_runner_reuse_total",
    "Reuse lookups before computing: hit (an earlier job's output taken), miss (computed), "
    "skipped (no engine known, or a pipeline that does not parse: computed), new_input "
    "(the upload stored these bytes for the first time: nothing to look up).",
    ["outcome"],
)


class Computation(BaseModel):
    """An index entry: a succeeded job's output for one reuse key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(pattern=SHA256)
    job_id: str
    computation: str
    """The `image.processed` event id of that job: the activity that made the output."""
    engine: str
    output: ImageRef
    input_info: dict[str, Any] | None = None
    """What imageproc read from the input (the same bytes in every job of this key)."""
    taken: TakenComputation | None = None
    """Its operations and time, as a reuse shows them (None in entries written before)."""


class Reuse:
    """Looks up, takes and records computations for the runner (`Runner._process`)."""

    def __init__(
        self,
        broker: Broker,
        store: ObjectStore,
        *,
        bucket: str,
        engine_ttl: float = ENGINE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._broker = broker
        self._store = store
        self._bucket = bucket
        self._ttl = engine_ttl
        self._clock = clock
        self._engine: str | None = None
        self._engine_until = 0.0
        self._known: OrderedDict[str, bytes] = OrderedDict()

    async def engine(self) -> str | None:
        """The engine imageproc computes with now (cached), or None when it does not say."""
        if self._engine is not None and self._clock() < self._engine_until:
            return self._engine
        try:
            reply, _ = await self._broker.call(
                topology.IMAGEPROC_ENGINE, EngineRequest(), timeout=ENGINE_TIMEOUT_SECONDS
            )
        except RpcError as exc:
            log.info("engine_unknown", code=exc.code)
            return None
        self.observe_engine(reply.engine)
        return self._engine

    def observe_engine(self, engine: str | None) -> None:
        """An engine imageproc named (in any reply): the current one from now on."""
        if engine:
            if engine != self._engine and self._engine is not None:
                log.info("engine_changed", was=self._engine, now=engine)
            self._engine, self._engine_until = engine, self._clock() + self._ttl

    async def reused(self, event: ImageUploaded, ctx: MessageContext) -> bool:
        """Take an earlier job's output when there is one (publishing `image.reused`);
        False when the job must be computed."""
        found = await self._find(event)
        if found is None:
            return False
        await ctx.publish(
            ImageReused(
                job_id=event.job_id,
                input=event.input.model_copy(update={"info": found.input_info}),
                output=found.output,
                pipeline=event.pipeline,
                reused_from=found.job_id,
                computation=found.computation,
                engine=found.engine,
                reuse_key=found.key,
                taken=found.taken,
            )
        )
        REUSE.labels("hit").inc()
        log.info("job_reused", reused_from=found.job_id, output=found.output.uri)
        return True

    async def _find(self, event: ImageUploaded) -> Computation | None:
        if event.input_new:  # bytes no earlier job had: nothing to find, no S3 request
            REUSE.labels("new_input").inc()
            return None
        pipeline = canonical_pipeline(event.pipeline)
        engine = await self.engine() if pipeline is not None else None
        if pipeline is None or engine is None:
            REUSE.labels("skipped").inc()
            return None
        key = reuse_key(event.input.sha256, pipeline, engine)
        found = await self._read(key)
        # Its own entry: a redelivery after the index was written computes again (same ids).
        if found is None or found.job_id == event.job_id:
            REUSE.labels("miss").inc()
            return None
        return found

    async def _read(self, key: str) -> Computation | None:
        known = self._known.get(key)
        if known is not None:
            if not await self._still_indexed(key):
                return None
            self._known.move_to_end(key)
            return Computation.model_validate_json(known)
        try:
            raw = await self._store.get(self._bucket, index_key(key))
            found = Computation.model_validate_json(raw)
        except ObjectNotFound:
            return None
        except ValidationError as exc:
            log.warning("reuse_index_invalid", key=key, error=str(exc)[:500])
            return None
        if found.key != key or found.output.bucket != self._bucket:
            log.warning("reuse_index_invalid", key=key, error="names another key or bucket")
            return None
        self._keep(key, raw)
        return found

    async def _still_indexed(self, key: str) -> bool:
        """Whether a remembered entry is still in the index (one HEAD): an erasure deletes
        it, and a runner must not hand out the output it pointed at. A gone entry is
        forgotten; an S3 that cannot say is a miss (the job is computed)."""
        try:
            await self._store.metadata(self._bucket, index_key(key))
        except ObjectNotFound:
            self._known.pop(key, None)
            log.info("reuse_entry_gone", key=key)
            return False
        except Exception as exc:
            log.warning("reuse_index_unavailable", key=key, error=repr(exc))
            return False
        return True

    @property
    def remembered(self) -> int:
        """How many index entries this runner keeps in memory."""
        return len(self._known)

    def _keep(self, key: str, raw: bytes) -> None:
        self._known[key] = raw
        self._known.move_to_end(key)
        while len(self._known) > REMEMBERED:
            self._known.popitem(last=False)

    async def remember(
        self,
        event: ImageUploaded,
        ctx: MessageContext,
        processed: ImageProcessed,
        engine: str | None,
    ) -> None:
        """Index a computation that succeeded (output stored, `processed` published with
        it) under the engine that computed it. Best effort: without its entry, the next
        identical job is computed."""
        self.observe_engine(engine)
        pipeline = canonical_pipeline(event.pipeline)
        if not engine or pipeline is None:
            return
        key = reuse_key(event.input.sha256, pipeline, engine)
        entry = Computation(
            key=key,
            job_id=event.job_id,
            computation=follow_up_id(ctx.envelope.id, ImageProcessed.type),
            engine=engine,
            output=processed.output,
            input_info=processed.input.info,
            taken=TakenComputation(
                duration_ms=processed.duration_ms,
                attempt=processed.attempt,
                operations=[
                    OperationTiming(op=step.op, duration_ms=step.duration_ms)
                    for step in processed.steps
                ],
            ),
        )
        raw = entry.model_dump_json().encode()
        try:
            await self._store.put(
                self._bucket,
                index_key(key),
                raw,
                content_type="application/json",
                metadata={"job-id": event.job_id},
            )
        except Exception as exc:  # the job succeeded all the same
            log.warning("reuse_index_not_written", key=key, error=repr(exc))
            return
        self._keep(key, raw)
