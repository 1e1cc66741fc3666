"""A new job's intake, published: what a submission and a retry both send the mesh.

Two events per intake: `upload.received` (who sent what, and where it is stored) and
`image.uploaded` (the job). Each is confirmed by the broker (persistent, to durable
queues) before the 202: provenancedb records them from there, as it records every other
step, and the replica remembers the job at once (`LiveJobs.remember`), so its status never
depends on how far provenance has got. A job whose intake could not be published in full
is marked not accepted in the background (some of it may be recorded), so that it never
looks queued forever.

A retry (`Intake.retry_of`) is a new job on the retried job's stored input: its
`image.uploaded` names the retried job, and the retried job gets a `job.retried` naming the
new one, caused by that `image.uploaded` (in PROV: the retry was informed by the new
intake). The new job is queued once its intake is confirmed: if the broker then refuses
`job.retried`, the 202 stands and the link is published in the background.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from messaging import Broker, Envelope
from messaging.events import (
    ClientInfo,
    ErrorInfo,
    Event,
    ImageRef,
    ImageUploaded,
    JobFailed,
    JobRetried,
    UploadReceived,
)

from .errors import ApiError
from .live import LiveJobs

log = structlog.get_logger("upload")
RETRY_AFTER_SECONDS = 5
BACKGROUND_SECONDS = 120.0
"""How long upload keeps trying to publish what a 202 or 503 already answered for (a
refused job's `not_accepted`, a retry's `job.retried`) while the broker is away."""
_MEASURED = ("sha256", "bytes", "format", "width", "height")
"""What the intake measured of the image: the stored input's reference and the received
event both say it."""


@dataclass(frozen=True, slots=True)
class Intake:
    """A new job, its input stored: who asked for what, from where."""

    job_id: str
    input: ImageRef
    pipeline: list[dict[str, Any]]
    filename: str | None
    principal: str
    """The job's owner."""
    client: ClientInfo
    """Who sent the request that made it (for a retry: the retry's request)."""
    input_new: bool = False
    """The input store had no object with these bytes before this job."""
    retry_of: str | None = None
    """The failed or cancelled job this one retries."""
    callback_url: str | None = None
    """Where to tell the owner of the job's end (vetted: `webhooks.vetted_callback`)."""


class IntakePublisher:
    def __init__(self, broker: Broker, live: LiveJobs | None) -> None:
        self._broker = broker
        self._live = live
        self._background: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Stop publishing in the background (at shutdown); what is unpublished the audit
        reports."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def publish(self, intake: Intake) -> None:
        """Publish the job's intake (and for a retry the retried job's `job.retried`), and
        remember the job live; 503 when the intake could not be published."""
        image = intake.input
        received = UploadReceived(
            job_id=intake.job_id,
            client=intake.client,
            principal=intake.principal,
            filename=intake.filename,
            input=image,
            **{name: getattr(image, name) for name in _MEASURED},
        )
        received_envelope = self._broker.envelope_for(received)
        uploaded = ImageUploaded(
            job_id=intake.job_id,
            input=image,
            pipeline=intake.pipeline,
            filename=intake.filename,
            created_at=datetime.now(UTC),
            principal=intake.principal,
            input_new=intake.input_new,
            retry_of=intake.retry_of,
            callback_url=intake.callback_url,
        )
        envelope = self._broker.envelope_for(uploaded, cause=received_envelope)
        try:
            await self._broker.publish(received, envelope=received_envelope)
            await self._broker.publish(uploaded, envelope=envelope)
        except Exception as exc:
            log.warning("job_not_queued", error=repr(exc))
            refused = _not_accepted(uploaded)
            self._in_background(refused, self._broker.envelope_for(refused, cause=envelope))
            raise unavailable("the job could not be queued") from exc
        if self._live is not None:
            self._live.note(received_envelope, received)
            self._live.remember(envelope, uploaded)
        if intake.retry_of is not None:
            await self._retried(intake, intake.retry_of, envelope)

    async def _retried(self, intake: Intake, retried_id: str, cause: Envelope) -> None:
        """The retried job's mark, naming the new job; shown live at once on this replica
        (`LiveJobs.mark`), published in the background if the broker refuses it now."""
        retried = JobRetried(job_id=retried_id, retry=intake.job_id, principal=intake.principal)
        envelope = self._broker.envelope_for(retried, cause=cause)
        if self._live is not None:
            self._live.mark(envelope, retried)
        try:
            await self._broker.publish(retried, envelope=envelope)
        except Exception as exc:
            log.warning("job_retried_not_published", retried=retried_id, error=repr(exc))
            self._in_background(retried, envelope)

    def _in_background(self, event: Event, envelope: Envelope) -> None:
        task = asyncio.create_task(self._keep_publishing(event, envelope))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _keep_publishing(self, event: Event, envelope: Envelope) -> None:
        """Publish `event`, retrying while the broker is away, for BACKGROUND_SECONDS. Its
        envelope (its id) is fixed, so it is recorded once however often it is sent."""
        deadline = time.monotonic() + BACKGROUND_SECONDS
        pause = 0.5
        with structlog.contextvars.bound_contextvars(job_id=event.job_id):
            while True:
                try:
                    await self._broker.publish(event, envelope=envelope)
                except Exception as exc:
                    if time.monotonic() + pause > deadline:
                        log.error("background_publish_failed", event=event.type, error=repr(exc))
                        return
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 10.0)
                    continue
                log.info("background_published", event=event.type)
                return


def _not_accepted(uploaded: ImageUploaded) -> JobFailed:
    """`job.failed` (not_accepted) for a job whose intake was refused: its id derives from
    the intake's, and for a job provenance never recorded it is the whole (complete)
    trail."""
    return JobFailed(
        job_id=uploaded.job_id,
        error=ErrorInfo(
            code="not_accepted",
            message="the upload was refused (503): the job could not be queued",
        ),
        input=uploaded.input,
        pipeline=uploaded.pipeline,
    )


def unavailable(message: str) -> ApiError:
    return ApiError(
        503, "unavailable", f"{message}; try again shortly", retry_after=RETRY_AFTER_SECONDS
    )
