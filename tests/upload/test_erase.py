"""The erasure's decisions and its failure modes, without servers: what is deleted or kept
(and said so in `job.erased`), the reuse entry first, a 503 when the record cannot be
published after the deletions (and a repeat that completes it under the same event id),
a 503 with nothing deleted when provenance cannot say who else uses the objects, and 410
for an image S3 no longer has. The real mesh: tests/e2e/test_erase.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from messaging import Envelope, RpcError
from messaging.computations import index_key
from messaging.contracts import JobObjects, ObjectUse
from messaging.events import Event, JobErased
from objectstore import ObjectNotFound
from upload.erase import Eraser
from upload.errors import ApiError
from upload.gone import refuse_erased, refuse_missing
from upload.live import LiveJobs

JOB, OTHER = "00000000-0000-4000-8000-0000000000e1", "00000000-0000-4000-8000-0000000000e2"
IN, OUT, KEY = "a" * 64, "b" * 64, "c" * 64
INPUT = {"bucket": "in", "key": f"sha256/{IN}.jpg", "sha256": IN}
OUTPUT = {"bucket": "out", "key": f"{JOB}/output.png", "sha256": OUT}
STATUS = {
    "id": JOB,
    "status": "succeeded",
    "owner": "alice",
    "input_ref": INPUT,
    "output_ref": OUTPUT,
    "pipeline": [{"op": "grayscale"}],
}


def _facts(*, input_users: list[str], output_users: list[str]) -> JobObjects:
    return JobObjects(
        found=True,
        objects=[
            ObjectUse(role="input", used_by=input_users, **INPUT),
            ObjectUse(role="output", used_by=output_users, **OUTPUT),
            ObjectUse(
                role="thumbnail",
                bucket="out",
                key=f"thumbnails/{OUT}.webp",
                sha256=OUT,
                used_by=output_users,
            ),
        ],
        reuse_key=KEY,
    )


class _Broker:
    def __init__(self, facts: JobObjects | Exception) -> None:
        self.facts = facts
        self.published: list[tuple[Envelope, Event]] = []
        self.fail_publish = False

    async def call(self, route: Any, request: Any, **_: Any) -> tuple[JobObjects, bytes]:
        if isinstance(self.facts, Exception):
            raise self.facts
        return self.facts, b""

    def envelope_for(self, event: Event) -> Envelope:
        return Envelope(id="random", type=event.type, source="/imagemesh/upload")

    async def publish(self, event: Event, *, envelope: Envelope) -> Envelope:
        if self.fail_publish:
            raise ConnectionError("the broker is away")
        self.published.append((envelope, event))
        return envelope


class _Store:
    def __init__(self, entry_job: str = JOB) -> None:
        entry = {"job_id": entry_job, "output": OUTPUT}
        self.objects = {
            ("in", INPUT["key"]): b"input",
            ("out", OUTPUT["key"]): b"output",
            ("out", f"thumbnails/{OUT}.webp"): b"thumbnail",
            ("out", index_key(KEY)): json.dumps(entry).encode(),
        }
        self.deleted: list[str] = []

    async def get(self, bucket: str, key: str) -> bytes:
        try:
            return self.objects[(bucket, key)]
        except KeyError:
            raise ObjectNotFound(key) from None

    async def delete(self, bucket: str, key: str) -> None:
        self.deleted.append(key)
        self.objects.pop((bucket, key), None)


def _eraser(broker: _Broker, store: _Store) -> Eraser:
    return Eraser(broker, store, LiveJobs(), rpc_timeout=1)  # type: ignore[arg-type]


def _recorded(broker: _Broker) -> dict[str, tuple[bool, str | None]]:
    ((_, event),) = broker.published
    assert isinstance(event, JobErased)
    return {o.role: (o.deleted, o.kept_because) for o in event.objects}


async def test_everything_goes_when_no_other_job_uses_it_the_index_entry_first() -> None:
    broker, store = _Broker(_facts(input_users=[], output_users=[])), _Store()
    await _eraser(broker, store).erase(STATUS, "alice")
    assert store.deleted == [index_key(KEY), OUTPUT["key"], f"thumbnails/{OUT}.webp", INPUT["key"]]
    assert _recorded(broker) == {
        "computation": (True, None),
        "output": (True, None),
        "thumbnail": (True, None),
        "input": (True, None),
    }


async def test_what_another_job_uses_stays_and_says_why() -> None:
    broker = _Broker(_facts(input_users=[OTHER, "x"], output_users=[OTHER]))
    store = _Store()
    await _eraser(broker, store).erase(STATUS, "alice")
    # The entry names this job: it goes (no later job reuses an erased job's computation),
    # while the output it pointed at stays for the job that reused it.
    assert store.deleted == [index_key(KEY)]
    assert _recorded(broker) == {
        "computation": (True, None),
        "output": (False, "used by 1 other job"),
        "thumbnail": (False, "used by 1 other job"),
        "input": (False, "used by 2 other jobs"),
    }


async def test_another_jobs_entry_stays_with_the_output_it_points_at() -> None:
    broker = _Broker(_facts(input_users=[], output_users=[OTHER]))
    store = _Store(entry_job=OTHER)  # this job reused OTHER's computation
    await _eraser(broker, store).erase(STATUS, "alice")
    assert index_key(KEY) not in store.deleted
    assert "computation" not in _recorded(broker)


async def test_a_failed_publish_is_503_and_a_repeat_completes_it_under_the_same_id() -> None:
    broker, store = _Broker(_facts(input_users=[], output_users=[])), _Store()
    broker.fail_publish = True
    with pytest.raises(ApiError) as refused:
        await _eraser(broker, store).erase(STATUS, "alice")
    assert (refused.value.status, refused.value.code) == (503, "unavailable")
    assert "a repeated DELETE completes the erasure" in refused.value.message
    assert len(store.deleted) == 4  # the deletions were done: S3 deletes are idempotent
    broker.fail_publish = False
    await _eraser(broker, store).erase(STATUS, "alice")
    await _eraser(broker, store).erase(STATUS, "alice")  # two replicas, say
    first, second = (envelope.id for envelope, _ in broker.published)
    assert first == second != "random"  # one record in provenance


async def test_nothing_is_deleted_blind_when_provenance_cannot_say() -> None:
    store = _Store()
    for facts in (RpcError("timeout", "no answer"), JobObjects(found=False)):
        broker = _Broker(facts)
        with pytest.raises(ApiError) as refused:
            await _eraser(broker, store).erase(STATUS, "alice")
        assert refused.value.status == 503
    assert store.deleted == []


def test_an_erased_job_and_an_image_s3_no_longer_has_are_gone() -> None:
    refuse_erased(STATUS)  # not erased: nothing to refuse
    with pytest.raises(ApiError) as erased:
        refuse_erased(STATUS | {"erased_at": "2026-12-02T07:35:00Z", "erased_by": "alice"})
    assert (erased.value.status, erased.value.code) == (410, "gone")
    assert "erased by alice" in erased.value.message
    refuse_missing(ConnectionError("S3 is away"), "s3://out/x")  # an outage: not this
    with pytest.raises(ApiError) as missing:
        refuse_missing(ObjectNotFound("s3://out/x"), "s3://out/x")
    assert (missing.value.status, missing.value.code) == (410, "gone")
