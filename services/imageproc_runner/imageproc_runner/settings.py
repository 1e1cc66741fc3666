from __future__ import annotations

from pydantic import Field, model_validator

from messaging import BrokerSettings
from objectstore import S3Settings
from servicekit import ServiceSettings


class Settings(ServiceSettings, BrokerSettings, S3Settings):
    runner_ops_port: int = Field(default=8101, ge=1, le=65535)
    runner_concurrency: int = Field(default=4, ge=1, le=256)
    """Jobs handled at once."""
    runner_prefetch: int = Field(default=250, ge=1, le=2000)
    """Jobs taken off the work queue at once into the per-principal buffers that workers
    take from round-robin (fair dispatch, see `dispatch.py`). Above upload's per-principal
    cap, so one principal's backlog cannot hide another's job in the queue behind it."""
    runner_max_hold_seconds: float = Field(default=900.0, gt=0, le=1500)
    """A buffered job not started after this long goes back to the tail of the queue: it
    must stay below the broker's consumer_timeout (RabbitMQ default 30 min) minus one
    attempt, or the broker closes the channel and hands back the whole buffer."""
    imageproc_timeout_seconds: float = Field(default=150.0, gt=0)
    """How long to wait for imageproc's answer. More than twice imageproc's pipeline deadline
    (+ its 2 s grace): a request may wait for a busy slot and then run, and imageproc's own
    `timeout` answer must come before this one (`rpc_timeout` is retried as transient)."""

    @model_validator(mode="after")
    def _prefetch_covers_workers(self) -> Settings:
        if self.runner_prefetch < self.runner_concurrency:
            raise ValueError(
                "RUNNER_PREFETCH must be at least RUNNER_CONCURRENCY (workers take jobs "
                "from the prefetched buffer)"
            )
        return self
