from __future__ import annotations

import os

from pydantic import Field

from messaging import BrokerSettings
from pipeline import ImageRulesSettings
from servicekit import ServiceSettings


class Settings(ServiceSettings, BrokerSettings, ImageRulesSettings):
    imageproc_ops_port: int = Field(default=8102, ge=1, le=65535)
    imageproc_concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)
    """Pipelines run at once, one worker process each. Also the RPC prefetch."""
    pipeline_timeout_seconds: float = Field(default=60.0, gt=0)
    """Wall-clock budget per pipeline: libvips is stopped mid-work when it runs out, and a
    worker still busy a moment later (any other decoder) is killed and replaced. The job
    fails with `timeout`."""
    imageproc_memory_limit_mb: int = Field(default=1280, ge=0)
    """Resident-memory ceiling of all the worker processes together, each getting an equal
    share (0 = none). A worker over its share (sampled, or at its peak, read after each
    job) is killed and replaced; the job fails with `memory_budget_exceeded`. Keep it
    below the container's limit less ~300 MiB for the parent process and the forkserver."""
    imageproc_admission_mb: int = Field(default=128, ge=0)
    """What the jobs running at once may hold together, as estimated from each input's
    header before it is decoded (a 24 MP progressive JPEG: ~105 MB; a 2 MP photo: ~20 MB).
    A job that does not fit beside those running waits for one to end; one bigger than the
    whole budget runs alone (0 = no admission: every slot runs at once). See
    imageproc/admission.py."""
