"""Job ids carry the time they were made (so a read of a job accepted moments ago, by
another replica, may wait for its intake) without giving up random leading characters."""

from __future__ import annotations

import time
import uuid

from upload.job_ids import RECENT_JOB_SECONDS, accepted_recently, new_job_id


def test_a_new_job_id_is_a_version_8_uuid_accepted_recently() -> None:
    job_id = new_job_id()
    parsed = uuid.UUID(job_id)
    assert parsed.version == 8
    assert parsed.variant == uuid.RFC_4122
    assert accepted_recently(job_id)


def test_ids_made_together_differ_in_their_first_characters() -> None:
    # People and the CLI shorten ids to their first 8 characters.
    prefixes = {new_job_id()[:8] for _ in range(50)}
    assert len(prefixes) == 50


def test_an_old_or_foreign_id_is_not_recent() -> None:
    job_id = new_job_id()
    assert not accepted_recently(job_id, now=time.time() + RECENT_JOB_SECONDS + 1)
    assert not accepted_recently(str(uuid.uuid4()))  # no time in it
    assert not accepted_recently("not-a-uuid")
