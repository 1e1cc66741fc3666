"""S3 call latency is observed per operation and outcome (a fake client stands in for S3)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client import REGISTRY

from objectstore import ObjectNotFound, ObjectStore


def _count(operation: str, outcome: str) -> float:
    labels = {"operation": operation, "outcome": outcome}
    return REGISTRY.get_sample_value("imagemesh_s3_request_seconds_count", labels) or 0.0


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "operation")


class _Body:
    async def __aenter__(self) -> _Body:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def read(self) -> bytes:
        return b"data"


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    async def put_object(self, *, Key: str, Body: bytes, **_: Any) -> None:
        self.objects[Key] = Body

    async def get_object(self, *, Key: str, **_: Any) -> dict[str, Any]:
        if Key not in self.objects:
            raise _error("NoSuchKey")
        return {"Body": _Body()}

    async def head_object(self, *, Key: str, **_: Any) -> dict[str, Any]:
        if Key == "denied":
            raise _error("AccessDenied")
        if Key not in self.objects:
            raise _error("404")
        return {"Metadata": {}}


async def test_each_call_is_timed_with_its_outcome() -> None:
    store = ObjectStore(FakeS3())
    calls = [("put", "ok"), ("get", "ok"), ("get", "not_found")]
    calls += [("head", "ok"), ("head", "not_found"), ("head", "error")]
    before = {key: _count(*key) for key in calls}
    await store.put("bucket", "key", b"data", content_type="image/png")
    assert await store.get("bucket", "key") == b"data"
    with pytest.raises(ObjectNotFound):
        await store.get("bucket", "missing")
    assert await store.metadata("bucket", "key") == {}
    with pytest.raises(ObjectNotFound):
        await store.metadata("bucket", "missing")
    with pytest.raises(ClientError):
        await store.metadata("bucket", "denied")

    after = {key: _count(*key) for key in before}
    assert {key: after[key] - before[key] for key in before} == {
        ("put", "ok"): 1,
        ("get", "ok"): 1,
        ("get", "not_found"): 1,
        ("head", "ok"): 1,
        ("head", "not_found"): 1,
        ("head", "error"): 1,
    }
