"""The runner's reuse index (`imageproc_runner/reuse.py`): where an entry lives and how its
key is made, in one place, because two services need them: the runner writes and reads the
index, and upload deletes a job's entry when its owner erases the job
(`upload/erase.py`), so that no later job is ever given an erased output.

An entry is `computations/<key>.json` in the output bucket, where the key is the SHA-256
of the canonical JSON of `[input sha256, canonical pipeline, engine]`
(`pipeline.canonical_pipeline` gives the canonical pipeline)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

INDEX_PREFIX = "computations/"
"""Where the index lives in the output bucket (the audit knows it is not an output)."""


def reuse_key(input_sha256: str, pipeline: list[dict[str, Any]], engine: str) -> str:
    """SHA-256 of the canonical JSON of [input, canonical pipeline, engine]."""
    text = json.dumps(
        [input_sha256, pipeline, engine], sort_keys=True, separators=(",", ":"), allow_nan=False
    )
    return hashlib.sha256(text.encode()).hexdigest()


def index_key(key: str) -> str:
    """The entry's key in the output bucket."""
    return f"{INDEX_PREFIX}{key}.json"
