import resource

from servicekit import run_service

from .app import create_app
from .settings import Settings


def limit_memory(settings: Settings) -> None:
    """The worker's memory budget: past it, allocations fail and the job fails cleanly
    (`memory_budget_exceeded`) instead of the kernel killing the whole service."""
    if settings.imageproc_memory_limit_mb:
        limit = settings.imageproc_memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


if __name__ == "__main__":
    run_service(
        "imageproc", Settings, create_app, port=lambda s: s.imageproc_ops_port, prepare=limit_memory
    )
