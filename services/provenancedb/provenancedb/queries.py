"""What the provenance store reads: job summaries, job pages and counts, a job's documents,
images and their lineage, and every document page by page for audits.

Each read is one request (or, for walks, one per page or depth), timed in
`couch.REQUEST_SECONDS` by the operation's name; `store.ProvenanceStore` adds the writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiocouch import Database
from aiocouch.view import View

from messaging.jobs import JOB_STATUSES

from . import summaries
from .couch import timed, view_key
from .design import DESIGN

PAGE = 500
"""Rows per request when walking every document (`all_job_documents`)."""
MAX_LINEAGE_DEPTH = 64


class StoreQueries:
    """The reads of the provenance database `_db` (set by `ProvenanceStore`)."""

    _db: Database

    async def summaries(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored summaries of these jobs (one request), by job id; a job without one
        is left out."""
        if not job_ids:
            return {}
        keys: list[Any] = [summaries.summary_id(job_id) for job_id in job_ids]
        with timed("summaries"):
            response = await self._db.all_docs.post(keys, include_docs="true")
        found = {}
        for row in response.rows:
            doc = row.get("doc")
            if isinstance(doc, dict) and doc.get("kind") == summaries.KIND:
                found[doc["job"]] = doc
        return found

    async def job_status(self, job_id: str) -> dict[str, Any] | None:
        """The job as `provenancedb.job-status` answers it, from its summary alone: one
        document read by id, no view (a view is brought up to date by every query, which
        made each status read cost as much as indexing the documents written since).
        The summary is written in the same request as each status event (`summaries.py`),
        so a job without one has no status yet."""
        found = await self.summaries([job_id])
        summary = found.get(job_id)
        return None if summary is None else summaries.job_of(summary)

    async def job_owners(self, job_ids: list[str]) -> dict[str, str]:
        """The owner of each of these jobs that has one (one request)."""
        found = await self.summaries(sorted(set(job_ids)))
        return {
            job_id: doc["owner"] for job_id, doc in found.items() if isinstance(doc["owner"], str)
        }

    async def job_page(
        self,
        *,
        owner: str | None,
        status: str | None,
        limit: int,
        before: list[str] | None,
    ) -> list[tuple[list[str], dict[str, Any]]]:
        """At most `limit` job summaries, newest first, of `owner` (None: everyone's) in
        `status` (None: any), created before the cursor `before` ([created_at, job_id]):
        one read of the `jobs` index. Each with its cursor."""
        prefix: list[Any] = [owner, status]
        params: dict[str, Any] = {
            "descending": "true",
            "reduce": "false",
            "include_docs": "true",
            "limit": limit,
            "startkey": view_key([*prefix, {}]),
            "endkey": view_key(prefix),
        }
        if before is not None:
            # Keys are unique (they end with the job id): skip the cursor's own row.
            params |= {"startkey": view_key([*prefix, *before]), "skip": 1}
        with timed("job_page"):
            response = await self._view("jobs").get(**params)
        return [
            (row["key"][2:], row["doc"])
            for row in response.rows
            if isinstance(row.get("doc"), dict)
        ]

    async def job_matches(
        self, *, owner: str | None, term: str, limit: int
    ) -> list[tuple[str, str, str]]:
        """(created_at, job id, status) of `owner`'s jobs (None: everyone's) with a search
        term (`job_search` view) that starts with `term`: one read of at most `limit` index
        rows, keys only (no documents), so its cost is bounded whatever matches."""
        params: dict[str, Any] = {
            "limit": limit,
            "startkey": view_key([owner, term]),
            "endkey": view_key([owner, term + "\ufff0"]),
        }
        with timed("job_search"):
            response = await self._view("job_search").get(**params)
        return [
            (row["key"][2], row["key"][3], row["value"])
            for row in response.rows
            if isinstance(row["key"][1], str) and row["key"][1].startswith(term)
        ]

    async def job_counts(self, owner: str) -> dict[str, int]:
        """How many of `owner`'s jobs are in each status: one read of the `jobs` reduce."""
        params = {
            "group_level": 2,
            "startkey": view_key([owner]),
            "endkey": view_key([owner, {}]),
        }
        with timed("job_counts"):
            rows = await self._reduced("jobs", **params)
        counts = {status: 0 for status in JOB_STATUSES}
        for row in rows:
            status = row["key"][1]
            if status in counts:
                counts[status] = int(row["value"])
        return counts

    async def job_documents(self, job_id: str) -> list[dict[str, Any]]:
        """Every document of a job, oldest first."""
        with timed("job_documents"):
            response = await self._view("by_job").get(
                startkey=view_key([job_id]), endkey=view_key([job_id, {}]), include_docs="true"
            )
        return [row["doc"] for row in response.rows if row.get("doc")]

    async def jobs_using(self, sha256: str) -> list[str]:
        with timed("jobs_using"):
            response = await self._view("by_input").get(key=view_key(sha256))
        return sorted({row["value"] for row in response.rows})

    async def input_users(self, sha256: str, limit: int) -> list[str]:
        """Jobs whose `image.uploaded` names this input (at most `limit` rows)."""
        with timed("input_users"):
            response = await self._view("by_input").get(key=view_key(sha256), limit=limit)
        return [str(row["value"]) for row in response.rows]

    async def image_rows(self, sha256: str, limit: int) -> list[dict[str, Any]]:
        """Where an image is stored, one row per storing job (`images`), at most `limit`."""
        with timed("image_rows"):
            response = await self._view("images").get(key=view_key(sha256), limit=limit)
        return [row["value"] for row in response.rows]

    async def image(self, sha256: str) -> list[dict[str, Any]]:
        """Where an image is stored and what it is (one row per storing job)."""
        with timed("image"):
            response = await self._view("images").get(key=view_key(sha256))
        return [row["value"] for row in response.rows]

    async def lineage(
        self, sha256: str, direction: str, *, owner: str | None = None
    ) -> list[dict[str, Any]]:
        """Ancestors (`from`) or descendants (`to`) of an image, breadth first, each with
        its depth, the image it is linked to and the job that linked them. With `owner`,
        only links made by that owner's jobs, walked through nothing else (one more read
        per depth, for the owners of the jobs found there)."""
        found: list[dict[str, Any]] = []
        seen, frontier = {sha256}, [sha256]
        for depth in range(1, MAX_LINEAGE_DEPTH + 1):
            if not frontier:
                break
            # Keys are JSON values; aiocouch only annotates them as strings.
            keys: list[Any] = [[node, direction] for node in frontier]
            with timed("lineage"):
                response = await self._view("derivations").post(keys)
            rows = response.rows
            if owner is not None and rows:
                owners = await self.job_owners([row["value"]["job_id"] for row in rows])
                rows = [row for row in rows if owners.get(row["value"]["job_id"]) == owner]
            frontier = []
            for row in rows:
                linked, job_id = row["value"]["sha256"], row["value"]["job_id"]
                via = "derived" if direction == "from" else "source"
                found.append(
                    {"sha256": linked, "depth": depth, "job_id": job_id, via: row["key"][0]}
                )
                if linked not in seen:
                    seen.add(linked)
                    frontier.append(linked)
        return found

    async def all_job_documents(self) -> AsyncIterator[dict[str, Any]]:
        """Every event document, job by job in time order (for audits), page by page."""
        last_key: Any = None
        same_key = 0  # rows already yielded whose key is last_key
        while True:
            params: dict[str, Any] = {"include_docs": "true", "limit": PAGE}
            if last_key is not None:
                # Rows of one key come in doc id order on both servers, but PouchDB Server
                # ignores startkey_docid: skip the rows of the last key already read.
                params |= {"startkey": view_key(last_key), "skip": same_key}
            with timed("all_job_documents"):
                rows = (await self._view("by_job").get(**params)).rows
            for row in rows:
                if row.get("doc"):
                    yield row["doc"]
                if row["key"] == last_key:
                    same_key += 1
                else:
                    last_key, same_key = row["key"], 1
            if len(rows) < PAGE:
                return

    async def read_view(self, name: str) -> None:
        """Read one row of the view `name`. A server that indexes on read (PouchDB Server)
        answers only once the view's index has caught up with every write: the audit
        waits for that first (`audit.wait_indexed`)."""
        with timed("read_view"):
            await self._view(name).get(limit=1)

    async def _reduced(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """The rows of a reduced view query: aiocouch's `View.get` wants `offset` and
        `total_rows`, which only map rows have."""
        response = await self._view(name)._get(**params)
        return [{"key": row["key"], "value": int(row["value"])} for row in response.get("rows", [])]

    def _view(self, name: str) -> View:
        return self._db.view(DESIGN, name)
