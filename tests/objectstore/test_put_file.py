"""A file is stored from disk without being held in memory (real S3: moto)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import tracemalloc
import uuid

import stack

from objectstore import S3Settings, open_store
from tests.conftest import settings_from

SIZE = 25 * 1024 * 1024


async def test_a_file_is_stored_whole_without_being_held_in_memory(
    test_env: dict[str, str],
) -> None:
    settings: S3Settings = settings_from(test_env, S3Settings)
    # The session's input bucket holds only what upload stores (`sha256/<hex>.<ext>`, which
    # tests/security/test_uploads.py checks): a key of this test's own, removed afterwards.
    bucket, key = settings.s3_input_bucket, f"put-file-{uuid.uuid4().hex}"
    data = os.urandom(SIZE)
    with tempfile.TemporaryFile() as file:
        file.write(data)
        file.seek(0)
        async with open_store(settings) as store:
            try:
                tracemalloc.start()
                try:
                    await store.put_file(bucket, key, file, size=SIZE, content_type="image/jpeg")
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                stored = await store.get(bucket, key)
            finally:
                stack.s3_client(stack.Config.of(test_env)).delete_object(Bucket=bucket, Key=key)
    # Read in chunks (aiohttp's file payload), never the whole body at once.
    assert peak < 8 * 1024 * 1024, f"{peak} bytes traced for a {SIZE} byte file"
    assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()


async def test_a_conditional_put_stores_once_and_leaves_the_first(
    test_env: dict[str, str],
) -> None:
    settings: S3Settings = settings_from(test_env, S3Settings)
    bucket, key = settings.s3_input_bucket, f"put-file-{uuid.uuid4().hex}"
    async with open_store(settings) as store:
        try:
            for content, expected in ((b"first", True), (b"second", False)):
                with tempfile.TemporaryFile() as file:
                    file.write(content)
                    file.seek(0)
                    stored = await store.put_file(
                        bucket,
                        key,
                        file,
                        size=len(content),
                        content_type="image/jpeg",
                        if_absent=True,
                    )
                assert stored is expected
            assert await store.get(bucket, key) == b"first"  # the second left it as it was
        finally:
            stack.s3_client(stack.Config.of(test_env)).delete_object(Bucket=bucket, Key=key)
