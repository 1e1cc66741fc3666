"""The metrics every service shares: build info, process metrics on /metrics, and the HTTP
middleware's labels (route templates, bounded methods, status after the error middleware)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from aiohttp.typedefs import Handler
from prometheus_client import REGISTRY, Histogram
from prometheus_client.parser import text_string_to_metric_families

from servicekit import add_ops_routes, http_metrics, set_build_info, timed_call
from servicekit._metrics import method_label

PREFIX = web.AppKey("prefix", str)


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """An app with the middleware first, then one that answers errors as JSON (as upload's
    does), and a route prefix of its own so counts start at zero."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ValueError:
            return web.json_response({"error": "bad"}, status=400)

    async def item(request: web.Request) -> web.Response:
        if request.match_info["item_id"] == "bad":
            raise ValueError("bad item")
        if request.match_info["item_id"] == "gone":
            raise web.HTTPGone()
        return web.json_response({"id": request.match_info["item_id"]})

    async def upload(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({"bytes": len(body)}, status=202)

    prefix = f"/t{uuid.uuid4().hex[:8]}"
    app = web.Application(middlewares=[http_metrics, errors])
    add_ops_routes(app)
    app.router.add_get(prefix + "/items/{item_id}", item)
    app.router.add_post(prefix + "/items", upload)
    app[PREFIX] = prefix
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_requests_are_counted_by_route_template_method_and_status(
    client: TestClient[web.Request, web.Application],
) -> None:
    prefix = client.app[PREFIX]
    template = prefix + "/items/{item_id}"
    for item_id in ("a", "b", "bad", "gone"):
        await (await client.get(f"{prefix}/items/{item_id}")).read()

    assert _value("imagemesh_http_requests_total", route=template, method="GET", status="200") == 2
    # Turned into a 400 by the inner error middleware; an HTTPException keeps its status.
    assert _value("imagemesh_http_requests_total", route=template, method="GET", status="400") == 1
    assert _value("imagemesh_http_requests_total", route=template, method="GET", status="410") == 1
    assert _value("imagemesh_http_request_seconds_count", route=template, method="GET") == 4
    assert _value("imagemesh_http_requests_in_flight", route=template) == 0
    # Never a raw path as a label value.
    raw = {s.labels.get("route") for m in REGISTRY.collect() for s in m.samples}
    assert f"{prefix}/items/a" not in raw


async def test_bytes_received_are_counted_per_route(
    client: TestClient[web.Request, web.Application],
) -> None:
    prefix = client.app[PREFIX]
    response = await client.post(f"{prefix}/items", data=b"x" * 1234)
    assert response.status == 202
    assert _value("imagemesh_http_received_bytes_total", route=prefix + "/items") == 1234
    assert (
        _value(
            "imagemesh_http_requests_total", route=prefix + "/items", method="POST", status="202"
        )
        == 1
    )


async def test_unmatched_paths_and_odd_methods_share_bounded_labels(
    client: TestClient[web.Request, web.Application],
) -> None:
    before = _value("imagemesh_http_requests_total", route="unmatched", method="GET", status="404")
    await (await client.get(f"/nothing/{uuid.uuid4().hex}")).read()
    after = _value("imagemesh_http_requests_total", route="unmatched", method="GET", status="404")
    assert after == before + 1
    assert method_label("BREW") == "other"
    assert method_label("PATCH") == "PATCH"


async def test_metrics_endpoint_serves_build_info_and_process_metrics(
    client: TestClient[web.Request, web.Application],
) -> None:
    set_build_info("tests", "1.2.3")
    response = await client.get("/metrics")
    assert response.status == 200
    families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    # The text format has no info type: a gauge of value 1 named ..._info.
    [build] = families["imagemesh_build_info"].samples
    assert build.value == 1
    assert build.labels == {"service": "tests", "version": "1.2.3"}
    assert families["process_resident_memory_bytes"].samples[0].value > 0
    assert "process_cpu_seconds" in families


def test_build_info_version_defaults_to_the_distribution_version() -> None:
    set_build_info("upload")
    assert _value("imagemesh_build_info", service="upload", version="0.1.0") == 1


async def test_a_request_cancelled_before_its_answer_counts_as_499() -> None:
    """At shutdown (or with handler cancellation on) a request ends without a status:
    not a server error."""

    async def never(request: web.Request) -> web.StreamResponse:
        raise asyncio.CancelledError

    route = f"/c{uuid.uuid4().hex[:8]}"
    app = web.Application()
    app.router.add_get(route, never)
    request = make_mocked_request("GET", route, app=app)
    match = await app.router.resolve(request)
    request._match_info = match  # as the server's router would
    with pytest.raises(asyncio.CancelledError):
        await http_metrics(request, never)
    assert _value("imagemesh_http_requests_total", route=route, method="GET", status="499") == 1
    assert _value("imagemesh_http_requests_total", route=route, method="GET", status="500") == 0


def test_timed_call_labels_each_call_by_its_outcome() -> None:
    """`timed_call` observes every call once: `ok`, what `outcome_of` names a failure
    (which goes on to the caller), or `error` for a cancelled one."""
    histogram = Histogram(
        f"test_timed_call_{uuid.uuid4().hex}_seconds", "calls", ["operation", "outcome"]
    )

    def outcome_of(exc: Exception) -> str:
        return "not_found" if isinstance(exc, KeyError) else "error"

    with timed_call(histogram, "get", outcome_of):
        pass
    with pytest.raises(KeyError), timed_call(histogram, "get", outcome_of):
        raise KeyError("x")
    with pytest.raises(ValueError, match="refused"), timed_call(histogram, "get", outcome_of):
        raise ValueError("refused")
    with pytest.raises(asyncio.CancelledError), timed_call(histogram, "get", outcome_of):
        raise asyncio.CancelledError

    counts = {
        sample.labels["outcome"]: sample.value
        for metric in histogram.collect()
        for sample in metric.samples
        if sample.name.endswith("_count")
    }
    assert counts == {"ok": 1.0, "not_found": 1.0, "error": 2.0}
