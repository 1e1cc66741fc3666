"""Job ids: UUIDs that carry the time they were made, so that a read of a job accepted
moments ago (which provenance may not have recorded yet) can wait for it instead of
answering 404."""

from __future__ import annotations

import os
import time
import uuid

RECENT_JOB_SECONDS = 30.0
"""Job ids (`new_job_id`: they carry their time) this young may be waited for."""
_MS_MASK = (1 << 48) - 1


def new_job_id() -> str:
    """A UUID (version 8, RFC 9562's custom layout) of random bits followed by the 48 bits
    of the Unix time in milliseconds: a job accepted moments ago is recognisable
    (`accepted_recently`), and the first characters, which people and the CLI shorten ids
    to, are random as in a version 4 UUID."""
    value = int.from_bytes(os.urandom(10)) << 48 | time.time_ns() // 1_000_000 & _MS_MASK
    value = (value & ~(0xF << 76)) | (0x8 << 76)  # version 8
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # the RFC variant
    return str(uuid.UUID(int=value))


def accepted_recently(job_id: str, *, now: float | None = None) -> bool:
    """Whether `job_id` is a `new_job_id` made within the last RECENT_JOB_SECONDS."""
    try:
        parsed = uuid.UUID(job_id)
    except ValueError:
        return False
    if parsed.version != 8:
        return False
    age = (time.time() if now is None else now) - (parsed.int & _MS_MASK) / 1000
    return -1.0 <= age <= RECENT_JOB_SECONDS
