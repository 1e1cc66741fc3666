"""Services cannot impersonate each other (service identity), against the real services:
provenancedb records only the event types the calling service publishes, and the runner
stores a result with a content type from the allow-list, whatever imageproc says."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
import stack

from messaging import Broker, BrokerSettings, RpcError, RpcMessage, topology
from messaging.events import (
    ImageProcessed,
    ImageRef,
    ImageUploaded,
    JobFailed,
    ProcessingStarted,
    StepTiming,
)
from tests.conftest import (
    Mesh,
    free_port,
    isolated_env,
    job_documents,
    running_mesh,
    service_broker_env,
    settings_from,
)
from tests.waiting import async_wait_for

pytestmark = pytest.mark.integration

PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)


@pytest.fixture(scope="module")
def identity_mesh(
    stack_config: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    """The four services on a vhost, database and buckets of their own: these tests record
    forged and partial trails (an outcome without its intake), which the session mesh's
    completeness check (tests/e2e/test_provenance.py) would rightly report as gaps."""
    with (
        isolated_env(stack_config, "identity") as env,
        running_mesh(env, tmp_path_factory.mktemp("identity-logs")) as running,
    ):
        yield running


def as_service(env: dict[str, str], service: str) -> BrokerSettings:
    settings: BrokerSettings = settings_from(
        {**env, **service_broker_env(env, service)}, BrokerSettings
    )
    return settings.model_copy(update={"amqp_declare_exchanges": False})


def image(sha256: str = "0" * 64, **fields: Any) -> ImageRef:
    values: dict[str, Any] = {
        "bucket": "in",
        "key": "k",
        "sha256": sha256,
        "bytes": 1,
        "format": "png",
        "width": 1,
        "height": 1,
        "content_type": "image/png",
    }
    return ImageRef.model_validate({**values, **fields})


def png_input(env: dict[str, str], job_id: str) -> ImageRef:
    sha256 = hashlib.sha256(PNG_1X1).hexdigest()
    key = f"{job_id}/input.png"
    return image(sha256, bucket=env["S3_INPUT_BUCKET"], key=key, bytes=len(PNG_1X1))


def record_request(broker: Broker, *events: Any) -> RpcMessage:
    return RpcMessage(
        {
            "events": [
                {
                    "envelope": broker.envelope_for(event).as_dict(),
                    "event": event.model_dump(mode="json"),
                }
                for event in events
            ]
        }
    )


async def test_provenancedb_records_only_event_types_the_caller_publishes(
    identity_mesh: Mesh,
) -> None:
    """upload may record a job's intake, never its outcome: `image.processed` is the
    runner's to publish (and the broker's topic permissions refuse it to upload)."""
    mesh = identity_mesh
    job_id = f"job-forged-{uuid.uuid4().hex[:8]}"
    processed = ImageProcessed(
        job_id=job_id,
        input=image(),
        output=image("1" * 64),
        pipeline=[],
        steps=[StepTiming(op="grayscale", params={}, duration_ms=1.0)],
        duration_ms=1.0,
    )
    failed = JobFailed.model_validate(
        {"job_id": job_id, "error": {"code": "x", "message": "upload may say this"}}
    )
    async with Broker(as_service(mesh.env, "upload"), service="upload") as upload:
        for forged in (processed, ProcessingStarted(job_id=job_id, input=image(), pipeline=[])):
            request = record_request(upload, failed, forged)  # one bad event spoils all
            with pytest.raises(RpcError) as refused:
                await upload.call_raw(topology.PROVENANCE_RECORD, request, timeout=30)
            assert refused.value.code == "forbidden"
            assert f"upload may not record {forged.type}" in refused.value.message
        assert job_documents(mesh.env, job_id) == []
        # What upload publishes it may record.
        reply = await upload.call_raw(
            topology.PROVENANCE_RECORD, record_request(upload, failed), timeout=30
        )
    assert reply.meta["created"] == 1
    assert [doc["type"] for doc in job_documents(mesh.env, job_id)] == [JobFailed.type]


# --- the result's content type comes from the allow-list ---------------------------------


async def test_upload_serves_a_result_with_the_type_of_its_format(
    identity_mesh: Mesh, http: aiohttp.ClientSession
) -> None:
    """Whatever content type the `image.processed` record names (here `text/html`, as a
    compromised runner could), `/result` answers the type of the output's format."""
    mesh = identity_mesh
    env = mesh.env
    job_id = str(uuid.uuid4())
    key = f"{job_id}/output.png"
    stack.s3_client(stack.Config.of(env)).put_object(
        Bucket=env["S3_OUTPUT_BUCKET"], Key=key, Body=b"<script>alert(1)</script>"
    )
    input_ref = image()
    uploaded = ImageUploaded(
        job_id=job_id, input=input_ref, pipeline=[], created_at=datetime.now(UTC)
    )
    output = image("1" * 64, bucket=env["S3_OUTPUT_BUCKET"], key=key, content_type="text/html")
    processed = ImageProcessed(
        job_id=job_id, input=input_ref, output=output, pipeline=[], steps=[], duration_ms=1.0
    )
    admin: BrokerSettings = settings_from(env, BrokerSettings)
    async with Broker(admin, service="tests") as operator:  # records what a runner would
        request = record_request(operator, uploaded, processed)
        await operator.call_raw(topology.PROVENANCE_RECORD, request, timeout=30)
    async with http.get(f"{mesh.upload_url}/api/v1/jobs/{job_id}/result") as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "image/png"
        assert await response.read() == b"<script>alert(1)</script>"


@pytest.fixture
def runner_alone(stack_config: dict[str, str], tmp_path: Path) -> Iterator[Mesh]:
    """The real runner, as its own broker user, in a vhost of its own where no real
    imageproc serves: the test answers imageproc.run itself."""
    with isolated_env(stack_config, "ctype") as env:
        stack.provision_service_users(stack.Config.of(env))
        env = {**env, "AMQP_DECLARE_EXCHANGES": "false", "RUNNER_OPS_PORT": str(free_port())}
        running = Mesh(env, tmp_path)
        running.start("imageproc_runner")
        try:
            running.wait_ready("imageproc_runner")
            yield running
        finally:
            running.stop("imageproc_runner")


async def run_job_with_imageproc(
    env: dict[str, str], answer: dict[str, Any]
) -> tuple[aio_pika.abc.AbstractIncomingMessage, list[str | None]]:
    """A job through the real runner, with a compromised imageproc answering `answer` (and
    an HTML body): the job's outcome event and who called imageproc."""
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    stack.s3_client(stack.Config.of(env)).put_object(
        Bucket=env["S3_INPUT_BUCKET"], Key=f"{job_id}/input.png", Body=PNG_1X1
    )
    callers: list[str | None] = []

    async def evil(request: RpcMessage) -> RpcMessage:
        callers.append(request.caller)
        meta = {**answer, "width": 1, "height": 1, "steps": []}
        return RpcMessage(meta, b"<script>alert(1)</script>")

    admin: BrokerSettings = settings_from(env, BrokerSettings)
    async with (
        Broker(as_service(env, "imageproc"), service="imageproc") as imageproc,
        Broker(admin, service="tests") as tests,
    ):
        await imageproc.serve_raw(topology.IMAGEPROC_RUN, evil)
        channel = await tests.channel()
        outcomes = await channel.declare_queue(exclusive=True)
        await outcomes.bind(env["AMQP_EXCHANGE_EVENTS"], ImageProcessed.type)
        await outcomes.bind(env["AMQP_EXCHANGE_EVENTS"], JobFailed.type)
        # Provenance records are published mandatory: someone must take them.
        await (await channel.declare_queue(exclusive=True)).bind(env["AMQP_EXCHANGE_PROV"], "#")
        await tests.publish(
            ImageUploaded(
                job_id=job_id,
                input=png_input(env, job_id),
                pipeline=[{"op": "grayscale"}],
                created_at=datetime.now(UTC),
            )
        )
        outcome = await async_wait_for(lambda: outcomes.get(fail=False), timeout=30)
        assert isinstance(outcome, aio_pika.abc.AbstractIncomingMessage)
        await outcome.ack()
    return outcome, callers


async def test_the_result_content_type_comes_from_the_output_format(
    runner_alone: Mesh,
) -> None:
    """A compromised imageproc answers `content_type: text/html` (and an HTML body): the
    runner stores the result as the PNG its format says, and every later reader (upload's
    /result reads the `image.processed` output) gets `image/png`."""
    env = runner_alone.env
    answer = {"format": "png", "content_type": "text/html"}
    outcome, callers = await run_job_with_imageproc(env, answer)
    # The job's pipeline, then (best effort) the history thumbnail of its output.
    assert set(callers) == {"imageproc_runner"}
    assert outcome.type == ImageProcessed.type, outcome.body
    processed = ImageProcessed.model_validate_json(outcome.body)
    assert processed.output.content_type == "image/png"
    stored = stack.s3_client(stack.Config.of(env)).head_object(
        Bucket=processed.output.bucket, Key=processed.output.key
    )
    assert stored["ContentType"] == "image/png"


async def test_an_output_format_outside_the_allow_list_fails_the_job(
    runner_alone: Mesh,
) -> None:
    env = runner_alone.env
    outcome, _ = await run_job_with_imageproc(env, {"format": "html", "content_type": "text/html"})
    assert outcome.type == JobFailed.type
    assert JobFailed.model_validate_json(outcome.body).error.code == "bad_output"
    listed = stack.s3_client(stack.Config.of(env)).list_objects_v2(Bucket=env["S3_OUTPUT_BUCKET"])
    assert listed.get("Contents", []) == []
