"""What a replica keeps of the jobs it follows live (`LiveJobs`): a finished job's events
for `linger` seconds after its final one, unfinished jobs up to `recent_jobs`. A soak
saw upload grow ~30 MB over its first 4096 jobs while it kept every finished one."""

from __future__ import annotations

from messaging.events import Event
from tests.fuzz.samples import envelope, events
from upload.live import LiveJobs

TRAIL = ("upload.received", "image.uploaded", "job.processing-started", "image.processed")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def job_events(job_id: str, *types: str) -> list[tuple[str, Event]]:
    samples = events()
    return [(kind, samples[kind].model_copy(update={"job_id": job_id})) for kind in types]


def run(live: LiveJobs, job_id: str, *types: str) -> None:
    for kind, event in job_events(job_id, *types):
        live.on_event(envelope(kind), event)


def test_a_finished_job_is_kept_for_its_linger_then_provenance_answers() -> None:
    clock = Clock()
    live = LiveJobs(clock=clock, linger=60)
    run(live, "done", *TRAIL)
    status = live.status("done")
    assert status is not None
    assert status["status"] == "succeeded"
    clock.now += 59
    run(live, "next", "image.uploaded")
    assert live.status("done") is not None  # a follower reads its final status now
    clock.now += 2
    run(live, "next", "job.processing-started")
    assert live.status("done") is None  # forgotten: ask provenance
    assert live.status("next") is not None  # unfinished: kept
    assert live.remembered == 1


def test_after_thousands_of_jobs_only_the_recent_finished_and_the_unfinished_are_kept() -> None:
    clock = Clock()
    live = LiveJobs(recent_jobs=4096, clock=clock, linger=60)
    for n in range(5000):  # 5 jobs a second, each finished a second after it came
        clock.now += 0.2
        run(live, f"job-{n}", "image.uploaded")
        if n >= 5:
            run(live, f"job-{n - 5}", "job.processing-started", "image.processed")
    # 60 s of finished jobs (300) and the 5 still running, not the last 4096.
    assert 300 <= live.remembered <= 310
    assert live.waiting("local") == 5


def test_a_failed_job_is_finished_too_and_unfinished_ones_stay_within_the_cap() -> None:
    clock = Clock()
    live = LiveJobs(recent_jobs=100, clock=clock, linger=60)
    run(live, "failed", "image.uploaded", "job.failed")
    for n in range(50):
        run(live, f"stuck-{n}", "image.uploaded")
    clock.now += 61
    run(live, "last", "image.uploaded")
    assert live.status("failed") is None  # its linger is over, the cap is far
    assert live.remembered == 51
    for n in range(50, 500):  # never finished: the cap holds them
        run(live, f"stuck-{n}", "image.uploaded")
    assert live.remembered == 100
    assert live.waiting("local") == 100


def test_a_short_id_finds_the_jobs_seen_live_newest_first_and_only_the_owners() -> None:
    live = LiveJobs(clock=Clock(), linger=60)
    for job_id in ("abc123-1", "abc123-2", "abd999-3"):
        run(live, job_id, "image.uploaded")
    assert live.starting_with("abc123", "local") == ["abc123-2", "abc123-1"]
    assert live.starting_with("abc123", None) == ["abc123-2", "abc123-1"]
    assert live.starting_with("abc123", "someone-else") == []
    assert live.starting_with("ffffff", None) == []
