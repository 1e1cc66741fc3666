"""What an image was derived from and what was derived from it, across jobs.

Images are identified by content (SHA-256), so re-uploading job A's output in job B makes
B's input the very entity A generated: the derivation graph links the two jobs by itself.

Asked for one owner's view, the lineage shows only that owner's jobs: where they stored the
image, which of them used or made it, and the derivations they made, walked through their
jobs alone. Another principal's job that used the same bytes is not there, and an image
none of the owner's jobs used or made is not found at all.
"""

from __future__ import annotations

import re
from typing import Any

from .store import ProvenanceStore

SHA256 = re.compile(r"^[0-9a-f]{64}$")


async def image_lineage(
    store: ProvenanceStore, sha256: str, *, owner: str | None = None
) -> dict[str, Any] | None:
    """The lineage of an image (of `owner`'s jobs only, when given), or None when
    provenance never saw it (in one of `owner`'s jobs)."""
    stored = await store.image(sha256)
    used_by = await store.jobs_using(sha256)
    if owner is not None:
        owners = await store.job_owners([*used_by, *(row["job_id"] for row in stored)])
        stored = [row for row in stored if owners.get(row["job_id"]) == owner]
        used_by = [job_id for job_id in used_by if owners.get(job_id) == owner]
    ancestors = await store.lineage(sha256, "from", owner=owner)
    descendants = await store.lineage(sha256, "to", owner=owner)
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
