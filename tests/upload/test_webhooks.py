"""Delivering webhooks (`upload.webhooks`): upload's real handler on the real `Broker` in
memory (`messaging.testing`: retries through the delay queues, parking after the last
attempt), POSTing to a real HTTP receiver on 127.0.0.1; the job's status comes from a
test double. Against the real mesh: tests/e2e/test_webhooks.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from ipaddress import ip_network
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from pydantic import ValidationError

from messaging import topology
from messaging.events import (
    ErrorInfo,
    Event,
    ImageProcessed,
    ImageRef,
    ImageReused,
    JobCancelled,
    JobFailed,
    WebhookAttempted,
)
from messaging.testing import MemoryBroker, MemoryServer, memory_settings
from tests.security.test_guard import settings as upload_settings
from tests.waiting import async_wait_for
from tests.webhook_receiver import Receiver, receiving
from upload.errors import ApiError
from upload.guard import PRINCIPAL, Principal
from upload.keys import SETTINGS
from upload.settings import Settings
from upload.signing import principal_key, verify
from upload.ssrf import TargetRules
from upload.webhook_http import Sender
from upload.webhook_views import webhook_secret
from upload.webhooks import FINISHED_EVENTS, Webhooks

MASTER = "a-master-secret-for-tests"
OWNER = "alice"
SHA = "ab" * 32
ATTEMPTS = 3
LOOPBACK = TargetRules(allowed=(ip_network("127.0.0.0/8"),))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as found:
        yield found


class Jobs:
    def __init__(self, job: dict[str, Any] | None) -> None:
        self.job = job

    async def status(self, job_id: str) -> dict[str, Any] | None:
        return self.job


def _job(callback: str | None) -> dict[str, Any]:
    job: dict[str, Any] = {"id": "job-1", "status": "succeeded", "owner": OWNER}
    job["created_at"] = "2026-12-02T07:00:00.000000Z"
    if callback is not None:
        job["callback_ref"] = callback
    return job


def _ref(key: str) -> ImageRef:
    return ImageRef(
        bucket="b",
        key=key,
        sha256=SHA,
        bytes=5,
        format="png",
        width=1,
        height=1,
        content_type="image/png",
    )


PROCESSED = ImageProcessed(
    job_id="job-1", input=_ref("in"), output=_ref("out"), pipeline=[], steps=[], duration_ms=1
)


async def _deliver(
    job: dict[str, Any] | None,
    event: Event = PROCESSED,
    *,
    rules: TargetRules = LOOPBACK,
    secret: str | None = MASTER,
    generations: dict[str, int] | None = None,
) -> tuple[MemoryServer, list[WebhookAttempted]]:
    """Publish the job's end as the runner would and let upload's handler deliver it (with
    every retry); the attempts recorded."""
    server = MemoryServer(delay_scale=1.0)  # back-offs of 10 ms, counted by settled()
    settings = memory_settings("upload", amqp_retry_delays=(0.01,), amqp_max_attempts=ATTEMPTS)
    async with (
        MemoryBroker(server, service="upload", settings=settings) as upload,
        MemoryBroker(server, service="imageproc_runner") as runner,
        MemoryBroker(server, service="provenancedb") as provenancedb,
        Sender(rules) as sender,
    ):
        await provenancedb.provision()  # every queue, as a provisioned broker holds them
        handler = Webhooks(
            Jobs(job),
            sender,
            keys=upload_settings(
                upload_webhook_secret=secret or "",
                upload_webhook_key_generations=",".join(
                    f"{name}:{n}" for name, n in (generations or {}).items()
                ),
            ).webhook_key,
            public_url="https://images.example.org",
        )
        await upload.subscribe(topology.UPLOAD_WEBHOOKS, handler.on_finished, FINISHED_EVENTS)
        await runner.publish(event)
        await server.settled()
    attempts = [
        WebhookAttempted.model_validate_json(message.body)
        for _, key, message in server.published
        if key == WebhookAttempted.type
    ]
    return server, sorted(attempts, key=lambda a: a.attempt)


async def test_a_delivery_is_signed_with_the_owners_key_and_says_the_jobs_end(
    receiver: Receiver,
) -> None:
    _, attempts = await _deliver(_job(f"{receiver.url}/hook?token=s3cret"))

    ((headers, body),) = receiver.received
    key = principal_key(MASTER, OWNER)
    assert verify(key, body, headers["X-Imagemesh-Signature"])
    assert not verify(principal_key(MASTER, "bob"), body, headers["X-Imagemesh-Signature"])
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Imagemesh-Event"] == "job.succeeded"
    sent = json.loads(body)
    assert sent["delivery"] == headers["X-Imagemesh-Delivery"]
    assert sent["event"] == "job.succeeded"
    assert sent["job"]["id"] == "job-1"
    assert sent["job"]["status"] == "succeeded"
    assert sent["job"]["output"]["sha256"] == SHA
    assert sent["job"]["links"]["result"] == "https://images.example.org/api/v1/jobs/job-1/result"
    assert "bucket" not in json.dumps(sent)  # where images are stored is never said
    (attempt,) = attempts
    assert (attempt.outcome, attempt.status_code, attempt.attempt) == ("delivered", 200, 1)
    assert attempt.url == f"{receiver.url}/hook"  # the query (a token) is not kept
    assert attempt.principal == OWNER


async def test_a_principal_whose_key_was_rotated_is_signed_for_with_the_new_key(
    receiver: Receiver,
) -> None:
    await _deliver(_job(f"{receiver.url}/hook"), generations={OWNER: 3, "bob": 2})
    ((headers, body),) = receiver.received
    signed = headers["X-Imagemesh-Signature"]
    assert verify(principal_key(MASTER, OWNER, 3), body, signed)
    assert not verify(principal_key(MASTER, OWNER), body, signed)


def test_raising_one_principals_generation_rotates_its_key_alone() -> None:
    before = upload_settings(upload_webhook_secret=MASTER)
    after = upload_settings(upload_webhook_secret=MASTER, upload_webhook_key_generations="alice:2")
    assert after.webhook_key("alice") != before.webhook_key("alice")
    assert after.webhook_key("alice") == principal_key(MASTER, "alice", 2)
    assert after.webhook_key("bob") == before.webhook_key("bob") == principal_key(MASTER, "bob")
    # Generation 1 is the original derivation: keys given out before stay valid.
    assert upload_settings(
        upload_webhook_secret=MASTER, upload_webhook_key_generations="alice:1"
    ).webhook_key("alice") == before.webhook_key("alice")
    assert upload_settings(upload_webhook_secret="").webhook_key("alice") is None  # off


@pytest.mark.parametrize(
    "value", ["alice", "alice:0", "alice:two", "alice:2,alice:3", "not a name:2", ":2"]
)
def test_a_malformed_key_generation_is_refused_naming_the_form(value: str) -> None:
    with pytest.raises(ValidationError, match=r"principal:N pairs|named twice"):
        upload_settings(upload_webhook_secret=MASTER, upload_webhook_key_generations=value)


async def test_a_failing_receiver_is_tried_again_with_the_same_delivery_id(
    receiver: Receiver,
) -> None:
    receiver.answers = [500, 503, 200]
    _, attempts = await _deliver(_job(f"{receiver.url}/hook"))

    assert [a.outcome for a in attempts] == ["retrying", "retrying", "delivered"]
    assert [a.status_code for a in attempts] == [500, 503, 200]
    deliveries = {headers["X-Imagemesh-Delivery"] for headers, _ in receiver.received}
    assert len(receiver.received) == 3
    assert len(deliveries) == 1
    assert [json.loads(body)["attempt"] for _, body in receiver.received] == [1, 2, 3]


async def test_a_receiver_failing_every_attempt_parks_the_message(receiver: Receiver) -> None:
    receiver.answers = [502]
    server, attempts = await _deliver(_job(f"{receiver.url}/hook"))

    assert [a.outcome for a in attempts] == ["retrying"] * (ATTEMPTS - 1) + ["parked"]
    assert len(receiver.received) == ATTEMPTS
    (parked,) = server.waiting(topology.UPLOAD_WEBHOOKS.parking_name)
    assert parked.type == ImageProcessed.type


@pytest.mark.parametrize(("answer", "tried"), [(404, 1), (410, 1), (429, ATTEMPTS)])
async def test_a_client_error_is_final_but_408_and_429_are_retried(
    receiver: Receiver, answer: int, tried: int
) -> None:
    receiver.answers = [answer]
    server, attempts = await _deliver(_job(f"{receiver.url}/hook"))
    assert len(receiver.received) == tried
    assert attempts[-1].outcome == ("failed" if tried == 1 else "parked")
    assert bool(server.waiting(topology.UPLOAD_WEBHOOKS.parking_name)) == (tried > 1)


async def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.answers = [302]
    _, attempts = await _deliver(_job(f"{receiver.url}/hook"))
    assert len(receiver.received) == 1  # /elsewhere never asked
    (attempt,) = attempts
    assert (attempt.status_code, attempt.outcome) == (302, "failed")


async def test_a_target_refused_at_delivery_is_never_connected_to(receiver: Receiver) -> None:
    # As if the name had been rebound to loopback since the intake: nothing allowed.
    for url in (f"{receiver.url}/hook", receiver.url.replace("127.0.0.1", "localhost") + "/hook"):
        receiver.received.clear()
        _, attempts = await _deliver(_job(url), rules=TargetRules())
        assert receiver.received == []
        (attempt,) = attempts
        assert attempt.outcome == "failed"
        assert attempt.error is not None
        assert "loopback" in attempt.error


async def test_a_failed_job_is_told_with_its_error_and_jobs_without_callback_cost_nothing(
    receiver: Receiver,
) -> None:
    failed = JobFailed(job_id="job-1", error=ErrorInfo(code="undecodable", message="no"))
    _, attempts = await _deliver(_job(f"{receiver.url}/hook"), failed)
    ((headers, body),) = receiver.received
    assert headers["X-Imagemesh-Event"] == "job.failed"
    assert json.loads(body)["job"]["error"] == {"code": "undecodable", "message": "no"}
    assert attempts[0].job_status == "failed"

    receiver.received.clear()
    _, attempts = await _deliver(_job(None))
    assert receiver.received == []
    assert attempts == []


async def test_nothing_is_sent_unsigned(receiver: Receiver) -> None:
    _, attempts = await _deliver(_job(f"{receiver.url}/hook"), secret=None)
    assert receiver.received == []
    assert [(a.outcome, a.status_code) for a in attempts] == [("failed", None)]


async def test_an_unknown_job_is_looked_up_again_later(receiver: Receiver) -> None:
    server, attempts = await _deliver(None)
    assert attempts == []
    await async_wait_for(
        lambda: bool(server.waiting(topology.UPLOAD_WEBHOOKS.parking_name)),
        timeout=5,
        what="the message parked after its attempts",
    )


@pytest.mark.parametrize(
    ("event", "told"),
    [
        (
            JobCancelled(job_id="job-1", principal="bob", input=_ref("in"), pipeline=[]),
            {"status": "cancelled", "cancelled_by": "bob"},
        ),
        (
            ImageReused(
                job_id="job-1",
                input=_ref("in"),
                output=_ref("out"),
                pipeline=[],
                reused_from="job-0",
                computation="event-0",
                engine="e",
                reuse_key=SHA,
            ),
            {"status": "succeeded", "reused_from": "job-0"},
        ),
    ],
    ids=["cancelled", "reused"],
)
async def test_every_end_is_told_as_its_status_says(
    receiver: Receiver, event: Event, told: dict[str, str]
) -> None:
    _, attempts = await _deliver(_job(f"{receiver.url}/hook"), event)
    ((headers, body),) = receiver.received
    sent = json.loads(body)["job"]
    assert headers["X-Imagemesh-Event"] == f"job.{told['status']}"
    assert {name: sent.get(name) for name in told} == told
    assert [a.outcome for a in attempts] == ["delivered"]


# --- GET /api/v1/webhooks/secret ------------------------------------------------------


async def _read_key(settings: Settings, principal: str) -> web.Response:
    app = web.Application()
    app[SETTINGS] = settings
    request = make_mocked_request("GET", "/api/v1/webhooks/secret", app=app)
    request[PRINCIPAL] = Principal(principal)
    answer = await webhook_secret(request)
    assert isinstance(answer, web.Response)
    return answer


async def test_a_principal_reads_its_own_current_key_never_cached() -> None:
    settings = upload_settings(
        upload_webhook_secret="a-master-secret-of-16+", upload_webhook_key_generations="bob:3"
    )
    answer = await _read_key(settings, "bob")
    assert answer.headers["Cache-Control"] == "private, no-store"
    body = json.loads(answer.text or "")
    assert body["principal"] == "bob"
    assert body["generation"] == 3
    assert body["secret"] == principal_key("a-master-secret-of-16+", "bob", 3)
    assert body["secret"] != json.loads((await _read_key(settings, "alice")).text or "")["secret"]


async def test_without_a_server_secret_there_is_no_key_to_read() -> None:
    with pytest.raises(ApiError) as refused:
        await _read_key(upload_settings(upload_webhook_secret=None), "alice")
    assert (refused.value.status, refused.value.code) == (404, "webhooks_off")
