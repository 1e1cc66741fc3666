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
