"""What imageproc computes with: the versions that decide an output's bytes.

The runner reuses an earlier job's output only for the same input bytes, canonical
pipeline and engine (`imageproc_runner/reuse.py`), so the engine must change whenever an
output could: imageproc's own code, the operation catalogue (defaults, validation), the
libvips it runs and the bindings and libraries around it. Every `imageproc.run` reply
carries it (`RunReply.engine`), and `imageproc.engine` answers it without any work. Its
string is read in each worker process (`_version.engine_version`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from messaging import RpcCall
from messaging.contracts import EngineReply, EngineRequest

__all__ = ["EngineHandler", "engine_handler"]

EngineHandler = Callable[[EngineRequest, RpcCall], Awaitable[EngineReply]]


def engine_handler(engine: Callable[[], str]) -> EngineHandler:
    """`imageproc.engine`'s handler, answering `{"engine": engine()}` (what the worker
    pool computes with), so a caller can look up an earlier result before it asks for any
    work. It takes no parameters and no payload: its route's request model refuses any
    (`bad_request`)."""

    async def on_engine(request: EngineRequest, call: RpcCall) -> EngineReply:
        return EngineReply(engine=engine())

    return on_engine
