"""The history's thumbnail of each output (`messaging.thumbnails`): made by imageproc from
the output's bytes and stored beside the output, so that upload serves it with a plain S3
read and never decodes an image itself. imageproc makes it in the job's own call
(`RunRequest.thumbnail`), so it costs only its S3 PUT here; only when the reply carries
none (an imageproc older than that, or one short of time) is it asked for in a call of its
own, with the output's bytes.

In the background, after the job's outcome is published: a job never waits for its
thumbnail (imageproc admits work in arrival order, so under load a thumbnail would wait
behind every queued job), and no runner worker is held by one. Bounded: at most
`MAX_PENDING_BYTES` of outputs wait for their thumbnail; past that, an output gets none.
Best effort: a thumbnail that cannot be made or stored is logged and counted, never a
reason to fail or retry the job; upload then sends the result itself instead."""

from __future__ import annotations

import asyncio

import structlog
from prometheus_client import Counter

from messaging import Broker, topology
from messaging.contracts import RunRequest
from messaging.events import ImageRef
from messaging.thumbnails import THUMBNAIL_CONTENT_TYPE, THUMBNAIL_PIPELINE, thumbnail_key
from objectstore import ObjectStore

log = structlog.get_logger("imageproc_runner")

THUMBNAILS = Counter(
    "imagemesh_runner_thumbnails_total",
    "History thumbnails by outcome: stored, skipped (output too large, or too many "
    "waiting), failed (imageproc or S3 refused; the job succeeded all the same).",
    ["outcome"],
)
THUMBNAIL_TIMEOUT_SECONDS = 10.0
"""How long the runner waits for imageproc's thumbnail: a 96 px WebP of an image imageproc
just wrote takes milliseconds; more means imageproc is busy, and the job should not wait."""
MAX_OUTPUT_BYTES = 32 * 1024 * 1024
"""Outputs larger than this get no thumbnail: sending them to imageproc again costs more
than a placeholder in the history."""
MAX_PENDING_BYTES = 64 * 1024 * 1024
"""Most output bytes held in memory for thumbnails not made yet."""


class Thumbnails:
    """Makes and stores the thumbnails of outputs, in the output bucket."""

    def __init__(self, broker: Broker, store: ObjectStore, *, bucket: str) -> None:
        self._broker = broker
        self._store = store
        self._bucket = bucket
        self._pending: set[asyncio.Task[None]] = set()
        self._pending_bytes = 0

    def start(self, job_id: str, output: ImageRef, data: bytes, made: bytes = b"") -> None:
        """Store the thumbnail of `output` in the background: `made`, the one imageproc
        made with it, or else one made now from the output's bytes (`data`)."""
        held = len(made) or len(data)
        too_large = not made and len(data) > MAX_OUTPUT_BYTES
        if too_large or self._pending_bytes + held > MAX_PENDING_BYTES:
            THUMBNAILS.labels("skipped").inc()
            return
        self._pending_bytes += held
        work = self.store(job_id, output, made) if made else self._make(job_id, output, data)
        task = asyncio.create_task(work)
        self._pending.add(task)
        task.add_done_callback(lambda done: self._done(done, held))

    def _done(self, task: asyncio.Task[None], size: int) -> None:
        self._pending.discard(task)
        self._pending_bytes -= size

    async def stop(self, timeout: float) -> None:
        """Let the thumbnails under way finish for up to `timeout` seconds, then drop the
        rest (their jobs have succeeded: they are served their result instead)."""
        if self._pending:
            _, late = await asyncio.wait(set(self._pending), timeout=timeout)
            for task in late:
                task.cancel()

    async def _make(self, job_id: str, output: ImageRef, data: bytes) -> None:
        thumbnail = await self.render(job_id, data)
        if thumbnail is not None:
            await self.store(job_id, output, thumbnail)

    async def render(self, job_id: str, output: bytes) -> bytes | None:
        """The thumbnail of an output (its bytes), or None when there is none to be had."""
        try:
            reply, data = await self._broker.call(
                topology.IMAGEPROC_RUN,
                RunRequest(pipeline=THUMBNAIL_PIPELINE),
                payload=output,
                timeout=THUMBNAIL_TIMEOUT_SECONDS,
                job_id=job_id,
            )
        except Exception as exc:  # any failure: the job goes on without a thumbnail
            THUMBNAILS.labels("failed").inc()
            log.warning("thumbnail_failed", step="render", reason=str(exc)[:300])
            return None
        if reply.format != "webp":  # stored and served as WebP: nothing else
            THUMBNAILS.labels("failed").inc()
            log.warning("thumbnail_failed", step="render", reason=f"format {reply.format!r}")
            return None
        return data

    async def store(self, job_id: str, output: ImageRef, thumbnail: bytes) -> None:
        """Store `thumbnail` as the thumbnail of `output` (never raises)."""
        try:
            await self._store.put(
                self._bucket,
                thumbnail_key(output.sha256),
                thumbnail,
                content_type=THUMBNAIL_CONTENT_TYPE,
                metadata={"job-id": job_id, "derived-from-sha256": output.sha256},
            )
        except Exception as exc:
            THUMBNAILS.labels("failed").inc()
            log.warning("thumbnail_failed", step="store", reason=str(exc)[:300])
            return
        THUMBNAILS.labels("stored").inc()
