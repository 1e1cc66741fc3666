import os
import resource

import pyvips

from servicekit import run_service

from .app import create_app
from .settings import Settings


def prepare(settings: Settings) -> None:
    """Process-wide set-up. The worker's memory budget: past it, allocations fail and the
    job fails cleanly (`memory_budget_exceeded`) instead of the kernel killing the whole
    service. And libvips' threads: the pipelines already run in parallel, one per core, so
    more threads per pipeline only add CPU (~10 % per image, benchmarks/results/memory.md)
    and buffers (VIPS_CONCURRENCY, when set, wins)."""
    if "VIPS_CONCURRENCY" not in os.environ:
        pyvips.concurrency_set(max(1, (os.cpu_count() or 1) // settings.imageproc_concurrency))
    if settings.imageproc_memory_limit_mb:
        limit = settings.imageproc_memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


if __name__ == "__main__":
    run_service(
        "imageproc", Settings, create_app, port=lambda s: s.imageproc_ops_port, prepare=prepare
    )
