from __future__ import annotations

from pydantic import Field

from messaging import BrokerSettings
from objectstore import S3Settings
from pipeline import ImageRulesSettings
from servicekit import ServiceSettings


class Settings(ServiceSettings, BrokerSettings, S3Settings, ImageRulesSettings):
    upload_port: int = Field(default=8000, ge=1, le=65535)
    upload_max_queued: int = Field(default=1000, ge=1)
    """New jobs are refused (503, Retry-After) while more than this many wait for a runner."""
    rpc_timeout_seconds: float = Field(default=10.0, gt=0)
    """How long the API waits for provenancedb (job status, recording a new job)."""
    upload_fauxton_url: str = "http://localhost:5984/_utils/#database/provenance"
    """Where operators browse provenance (linked from the job page)."""
    upload_rabbitmq_console_url: str = "http://localhost:15672/"
    """Where operators watch the queues (linked from the job page)."""
