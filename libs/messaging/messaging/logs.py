"""Per-message log context: every line logged while handling a message names its job."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from ._envelope import Envelope


@contextmanager
def message_context(envelope: Envelope, *, queue: str) -> Iterator[None]:
    with structlog.contextvars.bound_contextvars(
        job_id=envelope.job_id,
        event_id=envelope.id,
        event_type=envelope.type,
        queue=queue,
    ):
        yield
