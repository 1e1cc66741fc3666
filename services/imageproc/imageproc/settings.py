from __future__ import annotations

import os

from pydantic import Field

from messaging import BrokerSettings
from pipeline import ImageRulesSettings
from servicekit import ServiceSettings


class Settings(ServiceSettings, BrokerSettings, ImageRulesSettings):
    imageproc_ops_port: int = Field(default=8102, ge=1, le=65535)
    imageproc_concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)
    """Pipelines run at once (threads; libvips releases the GIL). Also the RPC prefetch."""
    pipeline_timeout_seconds: float = Field(default=60.0, gt=0)
    """Wall-clock budget per pipeline; libvips is stopped mid-work when it runs out."""
    imageproc_memory_limit_mb: int = Field(default=3072, ge=0)
    """Virtual-memory ceiling of the process (RLIMIT_AS); 0 = none. Over it, the job fails
    with `memory_budget_exceeded` and the worker lives on."""
