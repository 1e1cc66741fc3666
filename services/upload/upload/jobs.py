"""Jobs as the API sees them: submitted through the mesh, looked up in provenance."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import structlog

from messaging import Broker, Envelope, RpcError, RpcMessage, topology
from messaging.events import ErrorInfo, ImageRef, ImageUploaded, JobFailed
from objectstore import ObjectStore

from .errors import ApiError
from .intake import Upload

log = structlog.get_logger("upload")
RETRY_AFTER_SECONDS = 5
QUEUE_CHECK_INTERVAL = 1.0
"""Seconds a queue-depth reading is reused: one broker round trip per second at most."""


class Jobs:
    def __init__(
        self,
        broker: Broker,
        store: ObjectStore,
        *,
        input_bucket: str,
        rpc_timeout: float,
        max_queued: int,
    ) -> None:
        self._broker = broker
        self._store = store
        self._input_bucket = input_bucket
        self._rpc_timeout = rpc_timeout
        self._max_queued = max_queued
        self._queued = (0, -QUEUE_CHECK_INTERVAL)  # (ready messages, when checked)

    async def admit(self) -> None:
        """Backpressure: refuse a new job while the broker blocks publishers or too many
        jobs already wait. Also refuses while no runner queue exists, where an upload
        event would reach provenancedb alone and never be processed."""
        if not await self._broker.accepts_publishes():
            raise _unavailable("the message broker is not accepting new work right now")
        waiting = await self._waiting()
        if waiting > self._max_queued:
            raise ApiError(
                503,
                "busy",
                f"{waiting} jobs are waiting to be processed; try again shortly",
                retry_after=RETRY_AFTER_SECONDS,
            )

    async def _waiting(self) -> int:
        count, checked = self._queued
        now = time.monotonic()
        if now - checked < QUEUE_CHECK_INTERVAL:
            return count
        try:
            count, _ = await self._broker.queue_depth(topology.RUNNER_UPLOADS.name)
        except Exception as exc:
            log.warning("runner_queue_unavailable", error=repr(exc))
            raise _unavailable("no image runner is set up yet") from exc
        self._queued = (count, now)
        return count

    async def submit(self, upload: Upload) -> str:
        """Store the input, record the job, queue it. Returns the job id."""
        job_id = str(uuid.uuid4())
        with structlog.contextvars.bound_contextvars(job_id=job_id):
            image = await self._store_input(upload)
            event = ImageUploaded(
                job_id=job_id,
                input=image,
                pipeline=upload.pipeline,
                filename=upload.filename,
                created_at=datetime.now(UTC),
            )
            envelope = self._broker.envelope_for(event)
            # Recorded before 202, so GET /jobs/{id} never answers 404 for an accepted job.
            await self._call(
                topology.PROVENANCE_RECORD,
                {"envelope": envelope.as_dict(), "event": event.model_dump(mode="json")},
                job_id,
            )
            try:
                await self._broker.publish(event, envelope=envelope)
            except Exception as exc:
                await self._record_not_queued(event, envelope, exc)
                raise _unavailable("the job could not be queued") from exc
            log.info("job_accepted", input=image.uri, bytes=image.bytes, ops=len(upload.pipeline))
        return job_id

    async def _store_input(self, upload: Upload) -> ImageRef:
        # Content-addressed: the user influences nothing of the key but the bytes.
        key = f"sha256/{upload.sha256}{upload.info.format.extension}"
        content_type = upload.info.format.content_type
        try:
            if not await self._store.exists(self._input_bucket, key):
                await self._store.put(
                    self._input_bucket, key, upload.data, content_type=content_type
                )
        except Exception as exc:
            log.exception("input_store_failed")
            raise _unavailable("the image store is unavailable") from exc
        return ImageRef(
            bucket=self._input_bucket,
            key=key,
            sha256=upload.sha256,
            bytes=len(upload.data),
            format=upload.info.format.value,
            width=upload.info.width,
            height=upload.info.height,
            content_type=content_type,
        )

    async def _record_not_queued(
        self, event: ImageUploaded, cause: Envelope, exc: Exception
    ) -> None:
        """The job is recorded but could not be queued: say so in its provenance (best effort)."""
        failed = JobFailed(
            job_id=event.job_id,
            error=ErrorInfo(code="not_queued", message=f"could not be queued: {exc}"),
            input=event.input,
            pipeline=event.pipeline,
        )
        envelope = self._broker.envelope_for(failed, cause=cause)
        meta = {"envelope": envelope.as_dict(), "event": failed.model_dump(mode="json")}
        try:
            await self._call(topology.PROVENANCE_RECORD, meta, event.job_id)
        except ApiError:
            log.exception("job_lost_in_provenance")

    async def status(self, job_id: str) -> dict[str, Any] | None:
        reply = await self._call(topology.PROVENANCE_JOB_STATUS, {"job_id": job_id}, job_id)
        job = reply.get("job")
        return job if isinstance(job, dict) else None

    async def result(self, job_id: str) -> tuple[bytes, str]:
        job = await self.status(job_id)
        if job is None:
            raise ApiError(404, "not_found", f"no job {job_id}")
        if job["status"] == "failed":
            raise ApiError(409, "job_failed", f"the job failed: {job['error']['message']}")
        if job["status"] != "succeeded":
            raise ApiError(409, "not_finished", f"the job is {job['status']}; try again later")
        output = job["output_ref"]
        try:
            data = await self._store.get(output["bucket"], output["key"])
        except Exception as exc:
            log.exception("result_fetch_failed", job_id=job_id)
            raise _unavailable("the image store is unavailable") from exc
        return data, output["content_type"]

    async def _call(
        self, route: topology.RpcRoute, meta: dict[str, Any], job_id: str
    ) -> dict[str, Any]:
        try:
            reply = await self._broker.call(
                route, RpcMessage(meta), timeout=self._rpc_timeout, job_id=job_id
            )
        except RpcError as exc:
            log.warning(
                "provenance_unavailable", route=route.name, code=exc.code, reason=exc.message
            )
            raise _unavailable("the provenance service is unavailable") from exc
        return reply.meta


def _unavailable(message: str) -> ApiError:
    return ApiError(
        503, "unavailable", f"{message}; try again shortly", retry_after=RETRY_AFTER_SECONDS
    )
