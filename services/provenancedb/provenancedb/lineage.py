"""What an image was derived from and what was derived from it, across jobs.

Images are identified by content (SHA-256), so re-uploading job A's output in job B makes
B's input the very entity A generated: the derivation graph links the two jobs by itself.
"""

from __future__ import annotations

import re
from typing import Any

from .store import ProvenanceStore

SHA256 = re.compile(r"^[0-9a-f]{64}$")


async def image_lineage(store: ProvenanceStore, sha256: str) -> dict[str, Any] | None:
    """The lineage of an image, or None when provenance never saw it."""
    stored = await store.image(sha256)
    used_by = await store.jobs_using(sha256)
    ancestors = await store.lineage(sha256, "from")
    descendants = await store.lineage(sha256, "to")
    if not (stored or used_by or ancestors or descendants):
        return None
    image: dict[str, Any] = {"sha256": sha256}
    if stored:
        first = stored[0]
        image |= {name: first[name] for name in ("format", "width", "height", "bytes")}
    image["locations"] = sorted({row["location"] for row in stored})
    return {
        "image": image,
        "produced_by": sorted({a["job_id"] for a in ancestors if a["depth"] == 1}),
        "used_by": used_by,
        "ancestors": ancestors,
        "descendants": descendants,
    }
