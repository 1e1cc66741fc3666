"""imageproc against the hostile corpus, over the real broker: each input ends with its
documented outcome, and the worker goes on serving."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from messaging import Broker, RpcError, RpcMessage, topology
from tests.hostile import Hostile, corpus

pytestmark = pytest.mark.integration
PIPELINE = [{"op": "thumbnail", "width": 64}]


async def _run(broker: Broker, data: bytes) -> RpcMessage:
    return await broker.call_raw(
        topology.IMAGEPROC_RUN, RpcMessage({"pipeline": PIPELINE}, data), timeout=60
    )


@pytest.mark.parametrize("item", corpus(), ids=lambda item: item.name)
async def test_documented_outcome(imageproc: None, broker: Broker, item: Hostile) -> None:
    if item.job == "succeeded":
        reply = await _run(broker, item.data)
        image = Image.open(io.BytesIO(reply.payload))
        image.load()
        assert image.width <= 64
        assert b"PK\x03\x04" not in reply.payload  # re-encoded: nothing smuggled through
        return
    with pytest.raises(RpcError) as caught:
        await _run(broker, item.data)
    assert caught.value.code == item.job, caught.value.message
    assert caught.value.message


async def test_worker_still_serves_after_the_corpus(imageproc: None, broker: Broker) -> None:
    codes = []
    for item in corpus():
        try:
            await _run(broker, item.data)
            codes.append("succeeded")
        except RpcError as exc:
            codes.append(exc.code)
    assert codes == [item.job for item in corpus()]
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (1, 2, 3)).save(buffer, "JPEG")
    reply = await _run(broker, buffer.getvalue())
    assert (reply.meta["width"], reply.meta["height"]) == (64, 43)
