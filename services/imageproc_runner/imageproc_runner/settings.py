from __future__ import annotations

from pydantic import Field

from messaging import BrokerSettings
from objectstore import S3Settings
from servicekit import ServiceSettings


class Settings(ServiceSettings, BrokerSettings, S3Settings):
    runner_ops_port: int = Field(default=8101, ge=1, le=65535)
    runner_concurrency: int = Field(default=4, ge=1, le=256)
    """Jobs handled at once (the consumer prefetch)."""
    imageproc_timeout_seconds: float = Field(default=120.0, gt=0)
