"""A stand-in for the upload service's public API, in process, for the CLI's own tests.

It serves the real operation catalogue and answers as the API contract says; each test
scripts what it needs: 503s first, a job's snapshots (one per GET), its event stream
connection by connection (ending cleanly or dropped mid-event), pages of history.

Every answer is checked against upload's documented contract (contract.py): a test cannot
script an answer, or a job, the real API would not give."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from pipeline import describe_operations

from .contract import ContractViolation, check_answer, check_job

DROP = "<drop the connection>"
PNG = b"\x89PNG\r\n\x1a\n" + b"fake png body"


def sse(kind: str, data: Any, *, event_id: str | None = None) -> str:
    """One server-sent event, as the server writes it (a `status` event's data is a job)."""
    if kind == "status":
        check_job(data)
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data)}\n\n"


def job(job_id: str, status: str, **fields: Any) -> dict[str, Any]:
    """A job snapshot as GET /api/v1/jobs/{id} answers it."""
    at = "2026-01-01T00:00:00Z"
    return {"id": job_id, "status": status, "created_at": at, "updated_at": at, **fields}


def succeeded(job_id: str, **fields: Any) -> dict[str, Any]:
    image = {"sha256": "0" * 64, "format": "png"}
    return job(
        job_id,
        "succeeded",
        input={**image, "bytes": 5000, "width": 640, "height": 480},
        output={**image, "bytes": 900, "width": 64, "height": 48, "content_type": "image/png"},
        pipeline=[{"op": "thumbnail", "width": 64}],
        steps=[{"op": "thumbnail", "params": {"width": 64}, "duration_ms": 3.25}],
        **fields,
    )


def failed(job_id: str) -> dict[str, Any]:
    return job(job_id, "failed", error={"code": "undecodable", "message": "truncated data"})


def error(status: int, code: str, message: str, **headers: str) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers or None)


@dataclass
class FakeApi:
    url: str = ""
    unavailable: int = 0
    """How many requests to answer 503 (with `retry_after`) before answering properly."""
    retry_after: str = "0"
    events_supported: bool = True
    snapshots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Per job: what each GET answers in turn (the last one from then on)."""
    streams: dict[str, list[list[str]]] = field(default_factory=dict)
    """Per job: the chunks each event stream connection sends, in turn."""
    pages: dict[str | None, dict[str, Any]] = field(default_factory=dict)
    """History pages by their `before` cursor (none: a server without the history, 405)."""
    script: list[list[dict[str, Any]]] = field(default_factory=list)
    """Snapshots for each job POST creates, in turn (default: succeeded at once)."""
    uploads: list[dict[str, Any]] = field(default_factory=list)
    retries: list[dict[str, Any]] = field(default_factory=list)
    """Each retry made: the new job's id, the retried job and the pipeline it was given."""
    webhook_key: dict[str, Any] | None = None
    """What GET /api/v1/webhooks/secret answers (None: 404, webhooks off)."""
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    """Answers the real API would not give (see contract.py): the test fails with them."""

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/api/v1/operations", self._operations)
        app.router.add_post("/api/v1/jobs", self._submit)
        app.router.add_get("/api/v1/jobs", self._history)
        app.router.add_get("/api/v1/jobs/{job_id}", self._job)
        app.router.add_get("/api/v1/jobs/{job_id}/events", self._events)
        app.router.add_get("/api/v1/jobs/{job_id}/result", self._result)
        app.router.add_post("/api/v1/jobs/{job_id}/cancel", self._cancel)
        app.router.add_post("/api/v1/jobs/{job_id}/retry", self._retry)
        app.router.add_get("/api/v1/webhooks/secret", self._webhook_key)
        return app

    def paths(self, method: str = "GET") -> list[str]:
        return [path for verb, path, _ in self.requests if verb == method]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        response: web.StreamResponse
        if self.unavailable > 0:
            self.unavailable -= 1
            response = error(
                503, "unavailable", "the broker is down", **{"Retry-After": self.retry_after}
            )
        else:
            response = await handler(request)
        self._check(request, response)
        return response

    def _check(self, request: web.Request, response: web.StreamResponse) -> None:
        """The answer must be one upload documents (its status, media type and body); a
        violation is kept for `serving` to fail the test with, whatever the client did."""
        route = request.match_info.route.resource
        assert route is not None, request.path
        body = response.body if isinstance(response, web.Response) else None
        try:
            assert body is None or isinstance(body, bytes)
            check_answer(
                request.method, route.canonical, response.status, response.content_type, body
            )
        except ContractViolation as exc:
            self.violations.append(str(exc))
            raise

    async def _webhook_key(self, _request: web.Request) -> web.Response:
        if self.webhook_key is None:
            return error(404, "webhooks_off", "webhooks are off on this server")
        return web.json_response(self.webhook_key, headers={"Cache-Control": "private, no-store"})

    async def _operations(self, _request: web.Request) -> web.Response:
        return web.json_response({"operations": describe_operations()})

    async def _submit(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        data = upload.file.read()
        pipeline = json.loads(str(form.get("pipeline", "[]")))
        if len(pipeline) > 10:
            return error(400, "invalid_pipeline", "a pipeline has at most 10 operations")
        if not data.startswith(b"\x89PNG"):
            return error(415, "unsupported_type", "the file is not an image type we accept")
        job_id = str(uuid.uuid4())
        callback = form.get("callback_url")
        if callback is not None and not str(callback).startswith(("http://", "https://")):
            return error(400, "bad_callback_url", "callback_url refused: only http and https")
        received = {"id": job_id, "filename": upload.filename, "pipeline": pipeline}
        if callback is not None:
            received["callback_url"] = callback
        self.uploads.append(received)
        script = self.script.pop(0) if self.script else [succeeded(job_id)]
        self.snapshots[job_id] = [{**snapshot, "id": job_id} for snapshot in script]
        return web.json_response({"id": job_id, "status": "queued", "links": {}}, status=202)

    async def _job(self, request: web.Request) -> web.Response:
        snapshots = self.snapshots.get(request.match_info["job_id"])
        if not snapshots:
            return error(404, "not_found", f"no job {request.match_info['job_id']}")
        return web.json_response(snapshots.pop(0) if len(snapshots) > 1 else snapshots[0])

    async def _events(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job_id"]
        if not self.events_supported or job_id not in self.snapshots:
            return error(404, "not_found", "not found")
        connections = self.streams.get(job_id)
        if connections is None:  # unscripted: the current status, final
            final = self.snapshots[job_id][-1]
            connections = [[sse("status", final)]]
        chunks = connections.pop(0) if len(connections) > 1 else connections[0]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in chunks:
            if chunk == DROP:
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(chunk.encode())
        await response.write_eof()
        return response

    async def _result(self, request: web.Request) -> web.Response:
        snapshots = self.snapshots.get(request.match_info["job_id"], [{}])
        if snapshots[-1].get("status") != "succeeded":
            return error(409, "not_finished", "the job is not finished")
        return web.Response(body=PNG, content_type="image/png")

    async def _cancel(self, request: web.Request) -> web.Response:
        """As upload: 404 for no job of the caller's, 409 for a finished one; else 202,
        and the job's next snapshot is cancelled."""
        job_id = request.match_info["job_id"]
        snapshots = self.snapshots.get(job_id)
        if not snapshots:
            return error(404, "not_found", f"no job {job_id}")
        current = snapshots[-1]
        if current["status"] in {"succeeded", "failed", "cancelled"}:
            return error(409, "job_finished", f"the job already {current['status']}")
        self.snapshots[job_id] = [job(job_id, "cancelled", cancelled_by="local")]
        location = f"/api/v1/jobs/{job_id}"
        body = {"id": job_id, "status": current["status"], "links": {"self": location}}
        return web.json_response(body, status=202)

    async def _retry(self, request: web.Request) -> web.Response:
        """As upload: 404 for no job of the caller's, 409 for one not failed or cancelled;
        else 202 with a new job (`script`'s next, or succeeded at once) that names it."""
        job_id = request.match_info["job_id"]
        snapshots = self.snapshots.get(job_id)
        if not snapshots:
            return error(404, "not_found", f"no job {job_id}")
        status = snapshots[-1]["status"]
        if status not in {"failed", "cancelled"}:
            message = f"the job is {status}: only a failed or cancelled job is retried"
            return error(409, "not_retryable", message)
        given = await request.json() if request.can_read_body else {}
        new_id = str(uuid.uuid4())
        self.retries.append({"id": new_id, "retry_of": job_id, "pipeline": given.get("pipeline")})
        script = self.script.pop(0) if self.script else [succeeded(new_id)]
        self.snapshots[new_id] = [{**shot, "id": new_id, "retry_of": job_id} for shot in script]
        self.snapshots[job_id] = [{**snapshots[-1], "retried_by": [new_id]}]
        location = f"/api/v1/jobs/{new_id}"
        body = {"id": new_id, "status": "queued", "retry_of": job_id, "links": {"self": location}}
        return web.json_response(body, status=202)

    async def _history(self, request: web.Request) -> web.Response:
        prefix = request.query.get("id_prefix")
        if prefix is not None:  # the jobs (the last snapshot of each) with such an id
            jobs = [shots[-1] for job_id, shots in self.snapshots.items()]
            matching = [job for job in jobs if job["id"].startswith(prefix.lower())]
            return web.json_response({"jobs": matching, "next": None})
        if not self.pages:  # a server before the history: only POST on /api/v1/jobs
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        page = self.pages.get(request.query.get("before"))
        if page is None:
            return error(400, "bad_request", "before: not a cursor of this server")
        limit = int(request.query["limit"])
        return web.json_response({**page, "jobs": page["jobs"][:limit]})


@asynccontextmanager
async def serving(api: FakeApi) -> AsyncIterator[FakeApi]:
    server = TestServer(api.app())
    await server.start_server()
    api.url = str(server.make_url("")).rstrip("/")
    try:
        yield api
    finally:
        await server.close()
    if api.violations:
        raise ContractViolation("\n".join(api.violations))
