"""Handles one uploaded image: S3 in, imageproc over RPC, S3 out, outcome published."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import structlog
from prometheus_client import Counter, Histogram

from messaging import Broker, MessageContext, PermanentError, RpcError, topology
from messaging.cancels import Cancellations, stopped_by
from messaging.contracts import RunReply, RunRequest
from messaging.events import (
    ErrorInfo,
    ImageProcessed,
    ImageRef,
    ImageUploaded,
    JobCancelled,
    JobFailed,
    ProcessingStarted,
)
from messaging.formats import content_type_of
from objectstore import ObjectNotFound, ObjectStore

from .reuse import Reuse
from .thumbnails import Thumbnails

log = structlog.get_logger("imageproc_runner")
A = TypeVar("A")
B = TypeVar("B")

JOBS = Counter(
    "imagemesh_runner_jobs_total",
    "Job attempts by outcome: succeeded; failed (for good, with the error code the job "
    "reports); retried (a transient failure, tried again after a back-off; error_code is "
    "the RPC code or the exception's type); parked (no attempts left: retries_exhausted); "
    "cancelled (its owner cancelled it: error_code is when, before or after imageproc).",
    ["outcome", "error_code"],
)
JOB_SECONDS = Histogram(
    "imagemesh_runner_job_seconds",
    "One attempt at a job that ended it (succeeded or failed): S3 get, imageproc, S3 put "
    "and the published outcome.",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)

# Worth trying again later; everything else is the input's fault.
TRANSIENT_RPC_CODES = frozenset({"rpc_timeout", "rpc_unavailable", "internal"})
# imageproc stopped the pipeline (deadline, memory ceiling, a crashed decoder): a property
# of the input, tried once more only in case other jobs starved it, then failed with that
# code. Never the full round of attempts: each one holds an imageproc slot to the deadline.
INLINE_HASH_BYTES = 256 * 1024
"""Outputs up to this size are hashed on the event loop (~0.1 ms), larger ones in a thread."""
INPUT_BOUND_RPC_CODES = frozenset({"timeout", "memory_budget_exceeded", "worker_crashed"})
CANCELLED_BEFORE, CANCELLED_WHILE = "cancelled_before_start", "cancelled_while_processing"
CANCELLED_CODES = frozenset({CANCELLED_BEFORE, CANCELLED_WHILE})
INPUT_MISSING = "input_missing"
"""The input is no longer stored: upload stores it before the job is queued, so it was
deleted since (an erasure of another job of the same bytes, in the very moment this one
was accepted: `upload/erase.py`). No attempt brings it back: the job fails at once."""
_EXTENSIONS = {
    "jpeg": ".jpg",
    "png": ".png",
    "webp": ".webp",
    "gif": ".gif",
    "tiff": ".tiff",
    "avif": ".avif",
}


class Runner:
    def __init__(
        self,
        broker: Broker,
        store: ObjectStore,
        *,
        output_bucket: str,
        imageproc_timeout: float,
        reuse: Reuse | None = None,
        thumbnails: Thumbnails | None = None,
        cancellations: Cancellations | None = None,
    ) -> None:
        self._broker = broker
        self._store = store
        self._output_bucket = output_bucket
        self._timeout = imageproc_timeout
        self._reuse = reuse
        """Takes an earlier job's output for work already done (`reuse.py`)."""
        self._thumbnails = thumbnails
        """Makes the history's thumbnail of each output (`thumbnails.py`)."""
        self._cancellations = cancellations or Cancellations()
        """The jobs their owners asked to cancel (`cancels.py`)."""

    async def on_uploaded(self, event: ImageUploaded, ctx: MessageContext) -> None:
        started = time.monotonic()
        try:
            error_code = await self._process(event, ctx, started)
        except Exception as exc:
            # Retried unless this was the last attempt: then `on_parked` counts it.
            if not isinstance(exc, PermanentError) and not ctx.last_attempt:
                JOBS.labels("retried", _error_code(exc)).inc()
            raise
        if error_code in CANCELLED_CODES:
            JOBS.labels("cancelled", error_code).inc()
            return
        outcome = "failed" if error_code else "succeeded"
        JOBS.labels(outcome, error_code).inc()
        JOB_SECONDS.labels(outcome).observe(time.monotonic() - started)

    async def _process(self, event: ImageUploaded, ctx: MessageContext, started: float) -> str:
        """One attempt at the job: "" when it succeeded, the error code when it failed for
        good (or `CANCELLED_CODES` when its owner cancelled it); raises when it is worth
        trying again."""
        if await self._cancelled(event, ctx, while_processing=False):
            return CANCELLED_BEFORE
        if self._reuse is not None and await self._reuse.reused(event, ctx):
            return ""
        try:
            reply, data = await self._compute(event, ctx)
        except (ObjectNotFound, RpcError) as exc:
            return await self._not_computed(event, ctx, exc)
        # Cancelled while imageproc worked: its output is dropped, never stored.
        if await self._cancelled(event, ctx, while_processing=True):
            return CANCELLED_WHILE
        data, thumbnail = _split(reply, data)
        content_type = content_type_of(reply.format)
        if content_type is None:
            # Stored and served with a type from the allow-list only: never imageproc's word.
            await self._fail(
                event,
                ctx,
                "bad_output",
                f"imageproc answered format {reply.format!r}, not an image format",
            )
            return "bad_output"
        # No event of its own for the stored output: `image.processed` names it.
        output = await self._store_output(event.job_id, event.input, reply, data, content_type)
        processed = ImageProcessed(
            job_id=event.job_id,
            input=event.input.model_copy(update={"info": reply.input_info}),
            output=output,
            pipeline=event.pipeline,
            steps=reply.steps,
            duration_ms=round((time.monotonic() - started) * 1000, 2),
            attempt=ctx.attempt,
            engine=_engine(reply.engine),
        )
        # The reuse index entry (only for an output that is stored) and the outcome go
        # together: a job that reuses this output in between finds a complete output whose
        # own job's success is on its way.
        await _together(
            self._reuse.remember(event, ctx, processed, reply.engine)
            if self._reuse is not None
            else asyncio.sleep(0),
            ctx.publish(processed),
        )
        log.info("job_succeeded", output=output.uri, bytes=output.bytes)
        if self._thumbnails is not None:  # in the background: the job does not wait for it
            self._thumbnails.start(event.job_id, output, data, made=thumbnail)
        return ""

    async def _not_computed(
        self, event: ImageUploaded, ctx: MessageContext, exc: ObjectNotFound | RpcError
    ) -> str:
        """The input could not be read or imageproc did not answer with an output: the
        error code the job failed with (or was cancelled with); raises (`exc`) when it is
        worth trying again."""
        if isinstance(exc, ObjectNotFound):
            message = "the input image is no longer stored (erased meanwhile): upload it again"
            await self._fail(event, ctx, INPUT_MISSING, message)
            return INPUT_MISSING
        principal = stopped_by(exc)
        if principal is not None and self._cancellations.asked_by(event.job_id) is None:
            # imageproc heard the request this replica missed (started after it).
            self._cancellations.add(event.job_id, principal)
        if await self._cancelled(event, ctx, while_processing=True):
            return CANCELLED_WHILE
        if exc.code in TRANSIENT_RPC_CODES or _retry_once(exc, ctx):
            raise exc
        await self._fail(event, ctx, exc.code, exc.message)
        return exc.code

    async def _compute(self, event: ImageUploaded, ctx: MessageContext) -> tuple[RunReply, bytes]:
        """Record the attempt and fetch the input (together: neither waits for the other),
        then have imageproc run the pipeline: its reply and the output's bytes."""
        # One record per attempt (a redelivery of the same attempt publishes the same id).
        _, data = await _together(
            ctx.publish(
                ProcessingStarted(
                    job_id=event.job_id,
                    input=event.input,
                    pipeline=event.pipeline,
                    attempt=ctx.attempt,
                ),
                key=f"attempt-{ctx.attempt}",
            ),
            self._store.get(event.input.bucket, event.input.key),
        )
        # imageproc records nothing: its reply lists the operations it applied. It makes
        # the output's thumbnail in the same call (no second round trip with the output).
        return await self._broker.call(
            topology.IMAGEPROC_RUN,
            RunRequest(pipeline=event.pipeline, thumbnail=self._thumbnails is not None),
            payload=data,
            timeout=self._timeout,
            job_id=event.job_id,
        )

    async def _cancelled(
        self, event: ImageUploaded, ctx: MessageContext, *, while_processing: bool
    ) -> bool:
        """Whether the job's owner asked to cancel it; if so, record that it is cancelled
        (one `job.cancelled` per job: its id derives from the upload's)."""
        principal = self._cancellations.asked_by(event.job_id)
        if principal is None:
            return False
        log.info("job_cancelled", principal=principal, while_processing=while_processing)
        cancelled = JobCancelled(
            job_id=event.job_id,
            principal=principal,
            input=event.input,
            pipeline=event.pipeline,
            attempt=ctx.attempt,
            while_processing=while_processing,
        )
        await ctx.publish(cancelled)
        return True

    async def on_parked(self, event: ImageUploaded, ctx: MessageContext, error: str) -> None:
        """The upload is parked after its last attempt: tell the job's owner it failed
        (or, if they cancelled it meanwhile, that it is cancelled). Re-published from the
        parking lot and then successful, the job ends succeeded."""
        if await self._cancelled(event, ctx, while_processing=False):
            JOBS.labels("cancelled", CANCELLED_BEFORE).inc()
            return
        JOBS.labels("parked", "retries_exhausted").inc()
        await self._fail(event, ctx, "retries_exhausted", error)

    async def _fail(
        self, event: ImageUploaded, ctx: MessageContext, code: str, message: str
    ) -> None:
        log.info("job_failed", code=code, reason=message)
        failed = JobFailed(
            job_id=event.job_id,
            error=ErrorInfo(code=code, message=message),
            input=event.input,
            pipeline=event.pipeline,
            attempt=ctx.attempt,
        )
        await ctx.publish(failed)

    async def _store_output(
        self, job_id: str, source: ImageRef, reply: RunReply, data: bytes, content_type: str
    ) -> ImageRef:
        if len(data) > INLINE_HASH_BYTES:
            digest = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        else:  # less than a thread hop costs
            digest = hashlib.sha256(data).hexdigest()
        # One key per job: unique across jobs, and a redelivery rewrites the same object.
        key = f"{job_id}/output{_EXTENSIONS.get(reply.format, '.bin')}"
        await self._store.put(
            self._output_bucket,
            key,
            data,
            content_type=content_type,
            metadata={"job-id": job_id, "sha256": digest, "derived-from-sha256": source.sha256},
        )
        return ImageRef(
            bucket=self._output_bucket,
            key=key,
            sha256=digest,
            bytes=len(data),
            format=reply.format,
            width=reply.width,
            height=reply.height,
            content_type=content_type,
            info=reply.output_info,
        )


async def _together(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Both results; if either fails, the other is cancelled and the failure raised as it
    is (the caller's retry rules look at its type)."""
    one, two = asyncio.ensure_future(first), asyncio.ensure_future(second)
    try:
        return await asyncio.gather(one, two)
    except BaseException:
        for task in (one, two):
            task.cancel()
            task.add_done_callback(_retrieved)
        raise


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark a failed task's exception as seen (the first failure is the one raised)."""
    if not task.cancelled():
        task.exception()


def _retry_once(exc: RpcError, ctx: MessageContext) -> bool:
    return exc.code in INPUT_BOUND_RPC_CODES and ctx.attempt == 1 and not ctx.last_attempt


def _error_code(exc: Exception) -> str:
    return exc.code if isinstance(exc, RpcError) else type(exc).__name__


def _engine(engine: str | None) -> str | None:
    """What applied the operations, as imageproc's reply names it (at most 512 characters,
    what `image.processed` holds)."""
    return engine[:512] if engine is not None else None


def _split(reply: RunReply, payload: bytes) -> tuple[bytes, bytes]:
    """The output's bytes and its thumbnail's: the payload's last `thumbnail_bytes`
    (none when imageproc made none, or says something impossible)."""
    size = reply.thumbnail_bytes
    if not 0 < size < len(payload):
        return payload, b""
    return payload[:-size], payload[-size:]
