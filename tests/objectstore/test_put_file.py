"""A file is stored from disk without being held in memory (real S3: moto)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import tracemalloc

from objectstore import S3Settings, open_store
from tests.conftest import settings_from

SIZE = 25 * 1024 * 1024


async def test_a_file_is_stored_whole_without_being_held_in_memory(
    test_env: dict[str, str],
) -> None:
    settings: S3Settings = settings_from(test_env, S3Settings)
    data = os.urandom(SIZE)
    with tempfile.TemporaryFile() as file:
        file.write(data)
        file.seek(0)
        async with open_store(settings) as store:
            tracemalloc.start()
            try:
                await store.put_file(
                    settings.s3_input_bucket, "put-file", file, size=SIZE, content_type="image/jpeg"
                )
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            stored = await store.get(settings.s3_input_bucket, "put-file")
    # Read in chunks (aiohttp's file payload), never the whole body at once.
    assert peak < 8 * 1024 * 1024, f"{peak} bytes traced for a {SIZE} byte file"
    assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()
