"""The parking-lot CLI against the real broker: list, show, re-publish."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import stack

from messaging import Broker, BrokerSettings, MessageContext, topology
from messaging.events import ImageUploaded, MessageParked
from tests.conftest import ROOT, management, settings_from
from tests.messaging.crashing_consumer import CRASH_EXIT_CODE
from tests.waiting import async_wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def lonely_env(stack_config: dict[str, str]) -> Iterator[dict[str, str]]:
    """A vhost of its own: no mesh consumer competes for the runner's queue here."""
    env = {**stack_config, "RABBITMQ_VHOST": f"imagemesh-test-parking-{uuid.uuid4().hex[:8]}"}
    stack.provision_rabbitmq(stack.Config.of(env), vhost=env["RABBITMQ_VHOST"])
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


def uploaded(job_id: str) -> ImageUploaded:
    return ImageUploaded.model_validate(
        {
            "job_id": job_id,
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


async def test_republish_sends_a_message_only_to_the_queue_it_was_parked_from(
    lonely_env: dict[str, str],
) -> None:
    """A parked message's `x-imagemesh-queue` header was written by whoever published it:
    the tool sends it back to its parking lot's own queue, never where the header says."""
    settings: BrokerSettings = settings_from(lonely_env, BrokerSettings)
    async with Broker(settings, service="tests") as broker:
        channel = await broker.channel()
        for spec in (topology.RUNNER_UPLOADS, topology.PROVENANCE_EVENTS):
            await topology.declare_work_queue(channel, settings, spec)
        event = uploaded("job-misdirected")
        envelope = broker.envelope_for(event)
        headers = {"x-imagemesh-queue": topology.PROVENANCE_EVENTS.name}
        message = envelope.to_message(event.model_dump_json().encode(), headers=headers)
        await broker._publish(topology.DEAD_LETTER_EXCHANGE, message, topology.RUNNER_UPLOADS.name)

        async def parked() -> bool:
            count, _ = await broker.queue_depth(topology.RUNNER_UPLOADS.parking_name)
            return count == 1

        await async_wait_for(parked, timeout=10)
    assert topology.RUNNER_UPLOADS.name in _cli(lonely_env, "list")
    output = _cli(lonely_env, "republish", "--all")
    assert f"its header names {topology.PROVENANCE_EVENTS.name!r}" in output
    assert f"re-published {envelope.id} to {topology.RUNNER_UPLOADS.name}" in output
    async with Broker(settings, service="tests") as broker:
        assert (await broker.queue_depth(topology.RUNNER_UPLOADS.name))[0] == 1
        assert (await broker.queue_depth(topology.PROVENANCE_EVENTS.name))[0] == 0


@pytest.mark.timeout(180)
async def test_a_message_that_keeps_crashing_its_consumer_is_parked_by_imagemesh(
    lonely_env: dict[str, str], tmp_path: Path
) -> None:
    """Each delivery kills the consumer process. Before the broker would dead-letter it
    bare (the quorum queue's delivery limit), the consumer parks it itself, as any other
    failure: imagemesh's headers, `on_park`, and a `job.parked` record of the job."""
    settings: BrokerSettings = settings_from(lonely_env, BrokerSettings)
    parked_file = tmp_path / "parked"
    limit = topology.RUNNER_UPLOADS.delivery_limit
    async with Broker(settings, service="tests") as broker:
        channel = await broker.channel()
        await topology.declare_work_queue(channel, settings, topology.RUNNER_UPLOADS)
        records = await channel.declare_queue(exclusive=True)
        await records.bind(settings.amqp_exchange_prov, MessageParked.type)
        sent = await broker.publish(uploaded("job-crashing"))
        crashes = 0
        for _ in range(limit + 3):  # bounded: the limit, and a little slack
            code = await _run_until_crash_or_park(lonely_env, parked_file)
            if code is None:
                break
            assert code == CRASH_EXIT_CODE
            crashes += 1
        assert parked_file.read_text().startswith("job-crashing\n")
        assert crashes == limit
        record = await async_wait_for(lambda: records.get(fail=False, no_ack=True), timeout=10)
        count, _ = await broker.queue_depth(topology.RUNNER_UPLOADS.parking_name)
        assert count == 1
        parking = await channel.get_queue(topology.RUNNER_UPLOADS.parking_name, ensure=False)
        parked = await parking.get(no_ack=True)
    assert parked.message_id == sent.id
    headers = parked.headers
    assert "delivery limit" in str(headers["x-imagemesh-error"])
    assert str(headers["x-imagemesh-queue"]) == topology.RUNNER_UPLOADS.name
    assert "x-imagemesh-parked-at" in headers
    assert "x-first-death-reason" not in headers  # not the broker's bare dead-lettering
    job_parked = MessageParked.model_validate_json(record.body)
    assert job_parked.job_id == "job-crashing"
    assert job_parked.parking_queue == topology.RUNNER_UPLOADS.parking_name
    assert "delivery limit" in job_parked.error


async def _run_until_crash_or_park(env: dict[str, str], parked_file: Path) -> int | None:
    """Start the crashing consumer; its exit code once it crashed, or None once it parked
    the message (then it is stopped)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.messaging.crashing_consumer",
        str(parked_file),
        env={**os.environ, **env},
        cwd=ROOT,
    )
    exited = asyncio.create_task(process.wait())
    try:
        await async_wait_for(lambda: exited.done() or parked_file.exists(), timeout=30)
    finally:
        if not exited.done():
            process.terminate()
        code = await asyncio.wait_for(exited, 30)
    return None if await asyncio.to_thread(parked_file.exists) else code
