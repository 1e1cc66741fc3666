"""A worker gives back the heap its jobs left only once it goes idle (`_worker._Heap`):
trimming after every job made each one fault its pages in again (~6 ms of system CPU per
fit-in-512 job). Pure logic: glibc stood in for, the worker's size given."""

from __future__ import annotations

import pytest

from imageproc import _worker
from imageproc._jobs import Setup

MB = 2**20


class Libc:
    def __init__(self) -> None:
        self.trims = 0

    def malloc_trim(self, pad: int) -> int:
        self.trims += 1
        return 1


@pytest.fixture
def resident(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The worker's private resident size, as the test sets it (`[size]`)."""
    size = [100 * MB]
    monkeypatch.setattr(_worker, "private_resident", lambda: size[0])
    return size


REAL_HEAP = _worker._Heap


def heap(libc: Libc) -> _worker._Heap:
    made = REAL_HEAP()
    made._libc = libc
    return made


def test_an_idle_worker_trims_once_after_jobs_that_grew_it(resident: list[int]) -> None:
    libc = Libc()
    tidy = heap(libc)
    tidy.tidy()
    assert libc.trims == 0  # no job yet
    tidy.used()
    resident[0] += REAL_HEAP.TRIM_SLACK + MB
    tidy.tidy()
    assert libc.trims == 1
    tidy.tidy()  # still idle, nothing ran since: the worker does not look again
    assert libc.trims == 1


def test_a_job_that_did_not_grow_the_worker_past_the_slack_leaves_it_be(
    resident: list[int],
) -> None:
    libc = Libc()
    tidy = heap(libc)
    tidy.used()
    resident[0] += REAL_HEAP.TRIM_SLACK // 2
    tidy.tidy()
    assert libc.trims == 0


class Pipe:
    """The worker's end of its pipe: `waiting` jobs queued, then the parent's stop."""

    def __init__(self, jobs: int, *, waiting: bool) -> None:
        self.jobs, self.waiting, self.polls = jobs, waiting, 0
        self.sent: list[tuple[object, ...]] = []

    def poll(self, timeout: float) -> bool:
        self.polls += 1
        return self.waiting

    def recv(self) -> object:
        if self.jobs == 0:
            return None
        self.jobs -= 1
        return "job"

    def recv_bytes(self) -> bytes:
        return b""

    def send(self, message: tuple[object, ...]) -> None:
        self.sent.append(message)


@pytest.mark.parametrize("waiting", [True, False])
def test_back_to_back_jobs_are_not_slowed_by_trims(
    monkeypatch: pytest.MonkeyPatch, resident: list[int], waiting: bool
) -> None:
    libc = Libc()
    monkeypatch.setattr(_worker, "_prepare", lambda setup: None)
    monkeypatch.setattr(_worker, "_Heap", lambda: heap(libc))

    def answer(conn: object, job: object, data: bytes) -> None:
        resident[0] += REAL_HEAP.TRIM_SLACK + MB  # every job grows the worker

    monkeypatch.setattr(_worker, "_answer", answer)
    pipe = Pipe(3, waiting=waiting)
    _worker.serve(pipe, Setup(vips_threads=1, address_space_bytes=0))  # type: ignore[arg-type]
    assert pipe.polls == 4
    assert [message[0] for message in pipe.sent] == ["hello"]
    # With each next job waiting, no trim; with none, a trim after each job (each grew
    # the worker past the slack).
    assert libc.trims == (0 if waiting else 3)
