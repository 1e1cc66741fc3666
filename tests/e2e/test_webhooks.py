"""Webhooks through the real mesh: a job submitted with a `callback_url` is POSTed to a
local HTTP receiver (127.0.0.1, allowed by WEBHOOK_ALLOWED_NETWORKS as .env.example
allows it) when it ends, signed with its owner's key, retried through RabbitMQ's delay
queues, parked after the last attempt, and every attempt recorded in provenance. Targets
that resolve to private, link-local, unspecified or loopback addresses outside the allowed
networks are refused at intake, however they are spelt.

The mesh has API tokens (each principal its own key) and short back-offs (0.5 s, 1 s;
three attempts), so a parked delivery takes seconds."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import Mesh, complete_trail, isolated_env, queue_counts, running_mesh
from tests.e2e.helpers import bearer_sessions, photo, wait_finished
from tests.waiting import async_wait_for
from tests.webhook_receiver import Receiver, receiving
from upload.signing import principal_key, verify
from upload.tokens import token_hash

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TOKENS = {name: f"{name}-webhooks-test-token-0123456789" for name in ("alice", "bob", "eve")}
MASTER = "webhooks-test-master-secret"
ATTEMPTS = 3
PARKING = "upload.webhooks.parking"
THUMBNAIL = json.dumps([{"op": "thumbnail", "width": 32, "height": 32}])
FAILING = json.dumps([{"op": "thumbnail", "width": 10000, "height": 10000, "upscale": True}])
"""Valid at intake, refused by imageproc (its output would be too many pixels): failed."""


@pytest.fixture(scope="module")
def hook_mesh(
    stack_config: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    settings = {
        "UPLOAD_API_TOKEN_HASHES": ",".join(
            f"{name}:{token_hash(token)}" for name, token in TOKENS.items()
        ),
        "UPLOAD_SESSION_SECRET": "webhooks-test-session-secret",
        "UPLOAD_AUDITORS": "eve",
        "UPLOAD_WEBHOOK_SECRET": MASTER,
        "UPLOAD_WEBHOOK_KEY_GENERATIONS": "bob:2",  # bob's key was rotated once
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "AMQP_RETRY_DELAYS": "0.5,1",
        "AMQP_MAX_ATTEMPTS": str(ATTEMPTS),
    }
    with (
        isolated_env(stack_config, "hooks") as env,
        running_mesh({**env, **settings}, tmp_path_factory.mktemp("hooks-logs")) as mesh,
    ):
        yield mesh


@pytest.fixture
async def sessions() -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    async with bearer_sessions(TOKENS) as opened:
        yield opened


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as found:
        yield found


async def _submit(
    session: aiohttp.ClientSession, mesh: Mesh, callback: str
) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("file", photo(64, 48), filename="hook.jpg", content_type="image/jpeg")
    form.add_field("pipeline", THUMBNAIL)
    form.add_field("callback_url", callback)
    return await session.post(f"{mesh.upload_url}/api/v1/jobs", data=form)


async def _job(session: aiohttp.ClientSession, mesh: Mesh, callback: str) -> str:
    response = await _submit(session, mesh, callback)
    assert response.status == 202, await response.text()
    return str((await response.json())["id"])


async def _key(session: aiohttp.ClientSession, mesh: Mesh) -> str:
    async with session.get(f"{mesh.upload_url}/api/v1/webhooks/secret") as response:
        assert response.status == 200, await response.text()
        assert response.headers["Cache-Control"] == "private, no-store"
        return str((await response.json())["secret"])


def _attempts(mesh: Mesh, job_id: str, count: int) -> list[dict[str, Any]] | None:
    """The job's `webhook.attempted` documents once there are `count` and its trail is
    complete (a webhook is not a step a job needs), oldest first."""
    docs = complete_trail(mesh.env, job_id)
    found = [d for d in docs or [] if d["type"] == "webhook.attempted"]
    if len(found) < count:
        return None
    return sorted(found, key=lambda d: d["data"]["attempt"])


async def test_the_owner_is_told_the_end_signed_with_its_own_key(
    hook_mesh: Mesh, sessions: dict[str, aiohttp.ClientSession], receiver: Receiver
) -> None:
    alice = sessions["alice"]
    job_id = await _job(alice, hook_mesh, f"{receiver.url}/hook?token=abc")
    job = await wait_finished(alice, hook_mesh.upload_url, job_id)
    assert job["status"] == "succeeded"
    assert "callback_ref" not in job
    assert "callback_url" not in json.dumps(job)

    await async_wait_for(lambda: receiver.received, timeout=30, what="the webhook")
    ((headers, body),) = receiver.received
    alice_key, bob_key = await _key(alice, hook_mesh), await _key(sessions["bob"], hook_mesh)
    assert alice_key != bob_key
    assert verify(alice_key, body, headers["X-Imagemesh-Signature"])
    assert not verify(bob_key, body, headers["X-Imagemesh-Signature"])
    assert headers["X-Imagemesh-Event"] == "job.succeeded"
    sent = json.loads(body)
    assert (sent["job"]["id"], sent["job"]["status"], sent["job"]["owner"]) == (
        job_id,
        "succeeded",
        "alice",
    )
    assert sent["job"]["output"]["sha256"] == job["output"]["sha256"]
    assert sent["job"]["links"]["result"] == f"/api/v1/jobs/{job_id}/result"
    assert sent["delivery"] == headers["X-Imagemesh-Delivery"]

    (attempt,) = await async_wait_for(
        lambda: _attempts(hook_mesh, job_id, 1), timeout=30, interval=0.5, what="the attempt"
    )
    assert attempt["data"]["outcome"] == "delivered"
    assert attempt["data"]["status_code"] == 200
    assert attempt["data"]["url"] == f"{receiver.url}/hook"  # no query: it may hold a token
    assert attempt["service"] == "upload"
    assert attempt["principal"] == "alice"


async def test_an_auditor_reads_its_own_key_only(
    hook_mesh: Mesh, sessions: dict[str, aiohttp.ClientSession]
) -> None:
    keys = {name: await _key(session, hook_mesh) for name, session in sessions.items()}
    assert len(set(keys.values())) == 3
    url = f"{hook_mesh.upload_url}/api/v1/webhooks/secret"
    async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as response:
        assert response.status == 401


async def test_a_rotated_key_is_the_one_read_and_signed_with(
    hook_mesh: Mesh, sessions: dict[str, aiohttp.ClientSession], receiver: Receiver
) -> None:
    url = f"{hook_mesh.upload_url}/api/v1/webhooks/secret"
    read = {}
    for name in ("alice", "bob"):
        async with sessions[name].get(url) as response:
            read[name] = await response.json()
    assert (read["bob"]["generation"], read["alice"]["generation"]) == (2, 1)
    assert read["bob"]["secret"] == principal_key(MASTER, "bob", 2)
    assert read["alice"]["secret"] == principal_key(MASTER, "alice")  # not rotated
    await _job(sessions["bob"], hook_mesh, f"{receiver.url}/hook")
    await async_wait_for(lambda: receiver.received, timeout=60, what="the webhook")
    ((headers, body),) = receiver.received
    assert verify(read["bob"]["secret"], body, headers["X-Imagemesh-Signature"])
    assert not verify(principal_key(MASTER, "bob"), body, headers["X-Imagemesh-Signature"])


async def test_a_receiver_failing_twice_gets_a_third_attempt_through_the_broker(
    hook_mesh: Mesh, sessions: dict[str, aiohttp.ClientSession], receiver: Receiver
) -> None:
    receiver.answers = [500, 500, 200]
    job_id = await _job(sessions["bob"], hook_mesh, f"{receiver.url}/hook")
    attempts = await async_wait_for(
        lambda: _attempts(hook_mesh, job_id, 3), timeout=60, interval=0.5, what="three attempts"
    )
    assert [a["data"]["outcome"] for a in attempts] == ["retrying", "retrying", "delivered"]
    assert [a["data"]["status_code"] for a in attempts] == [500, 500, 200]
    assert len({headers["X-Imagemesh-Delivery"] for headers, _ in receiver.received}) == 1
    assert len(receiver.received) == 3


async def test_a_receiver_always_failing_ends_parked_with_every_attempt_recorded(
    hook_mesh: Mesh, sessions: dict[str, aiohttp.ClientSession], receiver: Receiver
) -> None:
    receiver.answers = [503]
    before = queue_counts(hook_mesh.env).get(PARKING, 0)
    job_id = await _job(sessions["alice"], hook_mesh, f"{receiver.url}/hook")
    attempts = await async_wait_for(
        lambda: _attempts(hook_mesh, job_id, ATTEMPTS), timeout=60, interval=0.5, what="all"
    )
    assert [a["data"]["outcome"] for a in attempts] == ["retrying"] * (ATTEMPTS - 1) + ["parked"]
    await async_wait_for(
        lambda: queue_counts(hook_mesh.env).get(PARKING, 0) == before + 1,
        timeout=20,
        what=f"the delivery in {PARKING}",
    )
    assert len(receiver.received) == ATTEMPTS


async def test_a_redirect_is_not_followed(
    hook_mesh: Mesh, sessions: dict[str, aiohttp.ClientSession], receiver: Receiver
) -> None:
    receiver.answers = [302]
    job_id = await _job(sessions["alice"], hook_mesh, f"{receiver.url}/hook")
    (attempt,) = await async_wait_for(
        lambda: _attempts(hook_mesh, job_id, 1), timeout=30, interval=0.5, what="the attempt"
    )
    assert (attempt["data"]["status_code"], attempt["data"]["outcome"]) == (302, "failed")
    assert len(receiver.received) == 1  # /elsewhere was never asked


async def test_a_retry_tells_the_same_webhook_of_its_end(
    hook_mesh: Mesh, sessions: dict[str, aiohttp.ClientSession], receiver: Receiver
) -> None:
    alice = sessions["alice"]
    form = aiohttp.FormData()
    form.add_field("file", photo(64, 48, "PNG"), filename="hook.png", content_type="image/png")
    form.add_field("pipeline", FAILING)
    form.add_field("callback_url", f"{receiver.url}/hook")
    async with alice.post(f"{hook_mesh.upload_url}/api/v1/jobs", data=form) as response:
        assert response.status == 202, await response.text()
        old = str((await response.json())["id"])
    assert (await wait_finished(alice, hook_mesh.upload_url, old))["status"] == "failed"
    fixed = {"pipeline": json.loads(THUMBNAIL)}
    async with alice.post(f"{hook_mesh.upload_url}/api/v1/jobs/{old}/retry", json=fixed) as answer:
        assert answer.status == 202, await answer.text()
        new = str((await answer.json())["id"])

    await async_wait_for(lambda: len(receiver.received) >= 2, timeout=30, what="both ends")
    told = {json.loads(body)["job"]["id"]: json.loads(body)["job"] for _, body in receiver.received}
    assert told[old]["status"] == "failed"
    assert told[old]["error"]["code"] == "too_many_pixels"
    assert told[new]["status"] == "succeeded"


@pytest.mark.parametrize(
    "callback",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://0.0.0.0:8000/hook",
        "http://167772161/hook",  # 10.0.0.1, in decimal
        "http://2852039166/",  # 169.254.169.254, in decimal
        "http://[::ffff:10.0.0.1]/hook",  # IPv4-mapped IPv6
        "http://0xa9.0xfe.0xa9.0xfe/",  # 169.254.169.254, in hex
        "ftp://127.0.0.1/hook",
        "http://user:secret@127.0.0.1/hook",
    ],
)
async def test_targets_that_are_not_allowed_are_refused_at_intake(
    hook_mesh: Mesh, sessions: dict[str, aiohttp.ClientSession], callback: str
) -> None:
    response = await _submit(sessions["alice"], hook_mesh, callback)
    body = await response.json()
    assert response.status == 400, body
    assert body["error"]["code"] == "bad_callback_url"
    assert body["error"]["message"].startswith("callback_url refused: ")
