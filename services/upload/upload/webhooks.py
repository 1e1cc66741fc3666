"""Webhooks: telling a job's owner that the job ended, at the `callback_url` it gave.

Every replica of upload consumes `upload.webhooks` (competing consumers), a work queue
bound to every job's end (`image.processed`, `image.reused`, `job.failed`,
`job.cancelled`). For each, the job's status (`Jobs.status`: the replica's live view
first, provenance otherwise) says whether the job has a callback and who owns it; most
jobs have none, and cost a dictionary lookup. A job with one gets a POST of a JSON body
(`notification`), signed with its owner's key (`signing`), sent by `webhook_http.Sender`
to vetted addresses only (`ssrf`).

The broker does the retrying: a delivery that may work later (5xx, 408, 429, a timeout
or connection error) raises, and the message waits in the queue's delay queues
(`AMQP_RETRY_DELAYS`, exponential) before it is tried again; after `AMQP_MAX_ATTEMPTS`
it is parked in `upload.webhooks.parking`, where operators see it (and may re-publish it
with `python -m messaging.parking`). Any other answer (3xx, which is never followed, or
4xx) or a refused target is final: recorded `failed`, not retried. Each attempt is
recorded in provenance (`webhook.attempted`: attempt, URL without its query, status code
or error, duration, outcome). Receivers get at-least-once delivery and de-duplicate on
`X-Imagemesh-Delivery`, the same for every attempt of one notification.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from messaging import MessageContext
from messaging.events import (
    LOCAL_PRINCIPAL,
    Event,
    ImageProcessed,
    ImageReused,
    JobCancelled,
    JobFailed,
    WebhookAttempted,
    WebhookOutcome,
)
from messaging.jobs import EVENT_STATUS, public_image, rfc3339

from .errors import ApiError
from .settings import Settings
from .signing import signature
from .ssrf import RefusedTarget, TargetRules, checked_url, vetted_addresses
from .webhook_http import Answer, Sender

log = structlog.get_logger("upload")

FINISHED_EVENTS: tuple[type[Event], ...] = (ImageProcessed, ImageReused, JobFailed, JobCancelled)
"""What `upload.webhooks` is bound to (`topology.UPLOAD_WEBHOOKS`)."""
USER_AGENT = "imagemesh-webhooks/1"


def target_rules(settings: Settings) -> TargetRules:
    """Where webhooks may go: global addresses, and WEBHOOK_ALLOWED_NETWORKS."""
    return TargetRules(allowed=settings.webhook_allowed_networks)


async def vetted_callback(text: str, settings: Settings) -> str:
    """The `callback_url` a job may carry (normalised), or 400 `bad_callback_url` naming
    why not: webhooks off (no secret: nothing would be signed), a URL of the wrong form,
    or a host that resolves to an address webhooks may not reach (`ssrf`)."""
    if settings.upload_webhook_secret is None:
        raise ApiError(
            400,
            "bad_callback_url",
            "callback_url: webhooks are off on this server (no UPLOAD_WEBHOOK_SECRET to sign them)",
        )
    try:
        url = checked_url(text)
        await vetted_addresses(url.host or "", url.port or 0, target_rules(settings))
    except RefusedTarget as exc:
        raise ApiError(400, "bad_callback_url", f"callback_url refused: {exc}") from exc
    return str(url)


class JobLookup(Protocol):
    async def status(self, job_id: str) -> dict[str, Any] | None: ...


class NotDelivered(Exception):
    """A delivery that may work later: the broker tries it again after a back-off."""


class Webhooks:
    """The `upload.webhooks` handler."""

    def __init__(
        self,
        jobs: JobLookup,
        sender: Sender,
        *,
        keys: Callable[[str], str | None],
        public_url: str = "",
    ) -> None:
        self._jobs = jobs
        self._sender = sender
        self._keys = keys
        """A principal's current signing key (`Settings.webhook_key`); None: no secret."""
        self._public_url = public_url

    async def on_finished(self, event: Event, ctx: MessageContext) -> None:
        job = await self._jobs.status(event.job_id)
        if job is None:
            # Its end passed before provenance or this replica knew its start: later.
            raise NotDelivered("the job is not known yet")
        url = job.get("callback_ref")
        if not url:
            return
        owner = job.get("owner") or LOCAL_PRINCIPAL
        delivery = ctx.envelope.id
        with structlog.contextvars.bound_contextvars(job_id=event.job_id, delivery=delivery):
            answer = await self._attempt(event, ctx, job, url, owner)
            outcome = _outcome(answer, last=ctx.last_attempt)
            attempted = WebhookAttempted(
                job_id=event.job_id,
                principal=owner,
                delivery=delivery,
                attempt=ctx.attempt,
                url=without_query(url),
                job_status=EVENT_STATUS[event.type],
                status_code=answer.status_code,
                error=answer.error[:1000] if answer.error else None,  # a host may be long
                duration_ms=answer.duration_ms,
                outcome=outcome,
            )
            await ctx.publish(attempted, key=f"attempt-{ctx.attempt}")
            log.info(
                "webhook_attempted",
                attempt=ctx.attempt,
                outcome=outcome,
                status_code=answer.status_code,
                error=answer.error,
                duration_ms=answer.duration_ms,
            )
        if outcome in {"retrying", "parked"}:
            raise NotDelivered(answer.error or f"the receiver answered {answer.status_code}")

    async def _attempt(
        self, event: Event, ctx: MessageContext, job: dict[str, Any], url: str, owner: str
    ) -> Answer:
        key = self._keys(owner)
        if key is None:
            # Accepted while a secret was configured; never sent unsigned.
            return Answer(None, "UPLOAD_WEBHOOK_SECRET is not set: not sent unsigned", 0.0, True)
        sent_at = datetime.now(UTC)
        name, body = notification(event, ctx, job, public_url=self._public_url, sent_at=sent_at)
        data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Imagemesh-Event": name,
            "X-Imagemesh-Delivery": ctx.envelope.id,
            "X-Imagemesh-Timestamp": str(int(sent_at.timestamp())),
            "X-Imagemesh-Signature": signature(key, data),
        }
        return await self._sender.post(url, data, headers)


def notification(
    event: Event,
    ctx: MessageContext,
    job: dict[str, Any],
    *,
    public_url: str,
    sent_at: datetime,
) -> tuple[str, dict[str, Any]]:
    """(`X-Imagemesh-Event`, body) for the end `event` reports. The body's `sent_at` is
    signed with it (a receiver may refuse old ones); `delivery` and `attempt` are the
    headers' (the first names the notification, the same for every attempt)."""
    status = EVENT_STATUS[event.type]
    location = f"{public_url}/api/v1/jobs/{event.job_id}"
    links = {
        "self": location,
        "page": f"{public_url}/jobs/{event.job_id}",
        "provenance": f"{location}/provenance",
    }
    summary: dict[str, Any] = {
        "id": event.job_id,
        "status": status,
        "created_at": job.get("created_at"),
        "finished_at": rfc3339(ctx.envelope.time),
        "filename": job.get("filename"),
        "owner": job.get("owner") or LOCAL_PRINCIPAL,
        "links": links,
    }
    if isinstance(event, ImageProcessed | ImageReused):
        output = event.output.model_dump(mode="json")
        summary["output"] = {**public_image(output), "content_type": output["content_type"]}
        links["result"] = f"{location}/result"
        if isinstance(event, ImageReused):
            summary["reused_from"] = event.reused_from
    elif isinstance(event, JobFailed):
        summary["error"] = event.error.model_dump(mode="json")
    elif isinstance(event, JobCancelled):
        summary["cancelled_by"] = event.principal
    body = {
        "event": f"job.{status}",
        "delivery": ctx.envelope.id,
        "attempt": ctx.attempt,
        "sent_at": rfc3339(sent_at),
        "job": summary,
    }
    return f"job.{status}", body


def _outcome(answer: Answer, *, last: bool) -> WebhookOutcome:
    if answer.delivered:
        return "delivered"
    if not answer.worth_retrying:
        return "failed"
    return "parked" if last else "retrying"


def without_query(url: str) -> str:
    """The URL as provenance may keep it: no query, no fragment (they may carry a token).
    The intake refused userinfo already."""
    return url.split("#", 1)[0].split("?", 1)[0]
