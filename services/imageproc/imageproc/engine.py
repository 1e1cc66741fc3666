"""What imageproc computes with: the versions that decide an output's bytes.

The runner reuses an earlier job's output only for the same input bytes, canonical
pipeline and engine (`imageproc_runner/reuse.py`), so the engine must change whenever an
output could: imageproc's own code, the operation catalogue (defaults, validation), the
libvips it runs and the bindings and libraries around it. Every `imageproc.run` reply
carries it (`RunReply.engine`), and `imageproc.engine` answers it without any work.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata

from messaging import RpcCall
from messaging.contracts import EngineReply, EngineRequest

ENGINE_DISTRIBUTIONS = ("imagemesh-imageproc", "imagemesh-pipeline", "pyvips", "pillow")
"""Installed packages whose version changes what a pipeline produces."""


@cache
def engine_version() -> str:
    """E.g. `imagemesh-imageproc/0.1.0 imagemesh-pipeline/0.1.0 pyvips/3.2.0
    pillow/11.3.0 libvips/8.18.7`: read once, the process runs one engine."""
    import pyvips

    parts = [f"{name}/{_version(name)}" for name in ENGINE_DISTRIBUTIONS]
    libvips = ".".join(str(pyvips.version(n)) for n in range(3))
    return " ".join([*parts, f"libvips/{libvips}"])


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


async def on_engine(request: EngineRequest, call: RpcCall) -> EngineReply:
    """`imageproc.engine`: `{"engine": ...}`, so a caller can look up an earlier result
    before it asks for any work. It takes no parameters and no payload: its route's
    request model refuses any (`bad_request`)."""
    return EngineReply(engine=engine_version())
