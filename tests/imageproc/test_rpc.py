"""imageproc's RPC endpoint on the real broker: it re-checks everything it is sent."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imageproc.engine import engine_version
from messaging import Broker, RpcError, RpcMessage, topology
from messaging.contracts import RunRequest

pytestmark = pytest.mark.integration


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 100, 50)).save(buffer, "PNG")
    return buffer.getvalue()


async def _run(broker: Broker, pipeline: object, payload: bytes) -> RpcMessage:
    return await broker.call_raw(
        topology.IMAGEPROC_RUN, RpcMessage({"pipeline": pipeline}, payload), timeout=30
    )


async def test_runs_a_pipeline_and_reports_the_output(imageproc: None, broker: Broker) -> None:
    pipeline = [{"op": "thumbnail", "width": 40}, {"op": "convert", "format": "webp"}]
    reply, output = await broker.call(
        topology.IMAGEPROC_RUN, RunRequest(pipeline=pipeline), payload=_png(200, 100), timeout=30
    )
    assert reply.format == "webp"
    assert (reply.width, reply.height) == (40, 20)
    assert reply.bytes == len(output)
    assert [step.op for step in reply.steps] == ["thumbnail", "convert"]
    assert Image.open(io.BytesIO(output)).format == "WEBP"
    assert reply.engine == engine_version()  # what made it: the runner's reuse key


async def test_names_its_engine_without_work_and_takes_no_parameters(
    imageproc: None, broker: Broker
) -> None:
    reply = await broker.call_raw(topology.IMAGEPROC_ENGINE, RpcMessage({}), timeout=30)
    assert reply.meta == {"engine": engine_version()}
    assert "libvips/8." in reply.meta["engine"]
    assert "imagemesh-imageproc/" in reply.meta["engine"]
    with pytest.raises(RpcError) as refused:
        await broker.call_raw(topology.IMAGEPROC_ENGINE, RpcMessage({"pipeline": []}), timeout=30)
    assert refused.value.code == "bad_request"


@pytest.mark.parametrize(
    ("pipeline", "payload", "code"),
    [
        ([{"op": "thumbnail", "width": 0}], _png(10, 10), "invalid_pipeline"),
        ([{"op": "explode"}], _png(10, 10), "invalid_pipeline"),
        ("not a list", _png(10, 10), "invalid_pipeline"),
        ([], b"%PDF-1.7 definitely not an image", "unsupported_type"),
        ([], _png(10, 10)[:30], "undecodable"),
    ],
)
async def test_refuses_what_upload_should_have_refused(
    imageproc: None, broker: Broker, pipeline: object, payload: bytes, code: str
) -> None:
    with pytest.raises(RpcError) as caught:
        await _run(broker, pipeline, payload)
    assert caught.value.code == code
    assert caught.value.message
