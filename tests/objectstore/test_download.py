"""A stored object is read a chunk at a time, as it is consumed (real S3: moto)."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest
import stack

from objectstore import ObjectNotFound, S3Settings, open_store
from tests.conftest import settings_from

SIZE = 3 * 1024 * 1024 + 17
CHUNK = 64 * 1024


async def test_a_download_gives_its_size_then_the_body_in_bounded_chunks(
    test_env: dict[str, str],
) -> None:
    settings: S3Settings = settings_from(test_env, S3Settings)
    bucket, key = settings.s3_output_bucket, f"download-{uuid.uuid4().hex}"
    data = os.urandom(SIZE)
    async with open_store(settings) as store:
        await store.put(bucket, key, data, content_type="application/octet-stream")
        try:
            digest, sizes = hashlib.sha256(), []
            async with store.download(bucket, key, chunk_bytes=CHUNK) as download:
                assert download.size == SIZE
                async for chunk in download.chunks:
                    sizes.append(len(chunk))
                    digest.update(chunk)
        finally:
            stack.s3_client(stack.Config.of(test_env)).delete_object(Bucket=bucket, Key=key)
    assert max(sizes) <= CHUNK
    assert sum(sizes) == SIZE
    assert digest.digest() == hashlib.sha256(data).digest()


async def test_downloading_a_missing_object_is_not_found(test_env: dict[str, str]) -> None:
    settings: S3Settings = settings_from(test_env, S3Settings)
    async with open_store(settings) as store:
        with pytest.raises(ObjectNotFound):
            async with store.download(settings.s3_output_bucket, f"missing-{uuid.uuid4().hex}"):
                pass
