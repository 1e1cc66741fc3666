"""The engine string (`engine.py` says why it matters), read without the messaging
stack: each worker process says it when it starts (``_worker``), and the forkserver
computes it once while it preloads the worker's module, so new workers inherit it."""

from __future__ import annotations

from functools import cache
from importlib import metadata

__all__ = ["ENGINE_DISTRIBUTIONS", "engine_version"]

ENGINE_DISTRIBUTIONS = ("imagemesh-imageproc", "imagemesh-pipeline", "pyvips", "pillow")
"""Installed packages whose version changes what a pipeline produces."""


@cache
def engine_version() -> str:
    """E.g. `imagemesh-imageproc/0.1.0 imagemesh-pipeline/0.1.0 pyvips/3.2.0
    pillow/11.3.0 libvips/8.18.7`: read once, the process runs one engine. Loads pyvips:
    each worker says it when it starts (`workers.WorkerPool.engine`)."""
    import pyvips

    parts = [f"{name}/{_version(name)}" for name in ENGINE_DISTRIBUTIONS]
    libvips = ".".join(str(pyvips.version(n)) for n in range(3))
    return " ".join([*parts, f"libvips/{libvips}"])


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
