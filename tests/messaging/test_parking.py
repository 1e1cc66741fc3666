"""The parking-lot CLI against the real broker: list, show, re-publish."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
import stack

from messaging import Broker, BrokerSettings, MessageContext, topology
from messaging.events import ImageUploaded
from tests.conftest import async_wait_for, management, settings_from

pytestmark = pytest.mark.integration


@pytest.fixture
def lonely_env(stack_config: dict[str, str]) -> Iterator[dict[str, str]]:
    """A vhost of its own: no mesh consumer competes for the runner's queue here."""
    env = {**stack_config, "RABBITMQ_VHOST": f"imagemesh-test-parking-{uuid.uuid4().hex[:8]}"}
    stack.provision_rabbitmq(env, vhost=env["RABBITMQ_VHOST"])
    yield env
    with contextlib.suppress(Exception):
        management(env, "DELETE", f"/api/vhosts/{env['RABBITMQ_VHOST']}")


def _cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "messaging.parking", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_list_show_and_republish(lonely_env: dict[str, str]) -> None:
    settings: BrokerSettings = settings_from(
        {**lonely_env, "AMQP_MAX_ATTEMPTS": "1"}, BrokerSettings
    )
    event = ImageUploaded.model_validate(
        {
            "job_id": "job-parked",
            "input": {
                "bucket": "in",
                "key": "k",
                "sha256": "a" * 64,
                "bytes": 1,
                "format": "png",
                "width": 1,
                "height": 1,
                "content_type": "image/png",
            },
            "pipeline": [],
            "created_at": "2026-01-01T00:00:00Z",
        }
    )

    async def broken(event: ImageUploaded, ctx: MessageContext) -> None:
        raise RuntimeError("S3 is on fire")

    async with Broker(settings, service="tests") as broker:
        await broker.subscribe(topology.RUNNER_UPLOADS, broken, ImageUploaded)
        sent = await broker.publish(event)

        async def parked() -> bool:
            count, _ = await broker.queue_depth(topology.RUNNER_UPLOADS.parking_name)
            return count == 1

        await async_wait_for(parked, timeout=10)

    listing = _cli(lonely_env, "list")
    assert "1 parked message(s)" in listing
    assert sent.id in listing
    assert "S3 is on fire" in listing
    shown = _cli(lonely_env, "show", sent.id)
    assert "job-parked" in shown
    assert "gave up after 1 attempts: RuntimeError: S3 is on fire" in shown
    assert "re-published" in _cli(lonely_env, "republish", "--all")
    async with Broker(settings, service="tests") as broker:
        assert (await broker.queue_depth(topology.RUNNER_UPLOADS.name))[0] == 1
        assert (await broker.queue_depth(topology.RUNNER_UPLOADS.parking_name))[0] == 0
