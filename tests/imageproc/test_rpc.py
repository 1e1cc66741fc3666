"""imageproc's RPC endpoint on the real broker: it re-checks everything it is sent."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imageproc._version import engine_version
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


async def test_makes_the_outputs_thumbnail_in_the_same_call_when_asked(
    imageproc: None, broker: Broker
) -> None:
    pipeline = [{"op": "thumbnail", "width": 120}, {"op": "convert", "format": "png"}]
    plain, output = await broker.call(
        topology.IMAGEPROC_RUN, RunRequest(pipeline=pipeline), payload=_png(300, 150), timeout=30
    )
    assert plain.thumbnail_bytes == 0
    reply, payload = await broker.call(
        topology.IMAGEPROC_RUN,
        RunRequest(pipeline=pipeline, thumbnail=True),
        payload=_png(300, 150),
        timeout=30,
    )
    assert 0 < reply.thumbnail_bytes < len(payload)
    made, thumbnail = payload[: -reply.thumbnail_bytes], payload[-reply.thumbnail_bytes :]
    assert made == output  # the output itself is what it is without a thumbnail
    assert reply.bytes == len(made)
    image = Image.open(io.BytesIO(thumbnail))
    assert (image.format, image.size) == ("WEBP", (96, 96))
    # An output that cannot be thumbnailed fails nothing: the job gets no thumbnail.
    gif = [{"op": "convert", "format": "gif"}]
    reply, payload = await broker.call(
        topology.IMAGEPROC_RUN,
        RunRequest(pipeline=gif, thumbnail=True),
        payload=_png(30, 20),
        timeout=30,
    )
    assert reply.format == "gif"
    assert Image.open(io.BytesIO(payload[: len(payload) - reply.thumbnail_bytes])).size == (30, 20)
