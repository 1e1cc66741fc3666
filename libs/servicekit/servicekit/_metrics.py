"""Metrics every service shares: which service and version a process is, HTTP metrics
for the apps that serve people (upload), and timing calls to a backing service.

Process metrics (`process_resident_memory_bytes`, `process_cpu_seconds_total`, ...) come
from prometheus_client's process collector, registered in the default registry when
prometheus_client is imported; `/metrics` serves that registry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Gauge, Histogram, Info

BUILD = Info(
    "imagemesh_build",
    "The service this process runs and its version (always 1): join on `instance` to name "
    "a process's other series by service.",
)
HTTP_REQUESTS = Counter(
    "imagemesh_http_requests_total",
    "HTTP requests answered, by route template (`/api/v1/jobs/{job_id}`, never the raw "
    "path; `unmatched` when no route matched), method and status.",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "imagemesh_http_request_seconds",
    "Time to answer an HTTP request (for a stream, until it ends), by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
HTTP_RECEIVED = Counter(
    "imagemesh_http_received_bytes_total",
    "Request body bytes received, by route template.",
    ["route"],
)
HTTP_IN_FLIGHT = Gauge(
    "imagemesh_http_requests_in_flight",
    "HTTP requests being answered right now (open progress streams included).",
    ["route"],
)

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def set_build_info(service: str, version: str | None = None) -> None:
    """Label this process with its service and version (`imagemesh_build_info`)."""
    if version is None:
        version = distribution_version(f"imagemesh-{service.replace('_', '-')}")
    BUILD.info({"service": service, "version": version})


def distribution_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def route_template(request: web.Request) -> str:
    """The matched route's template (`/api/v1/jobs/{job_id}`), so the label set stays
    bounded whatever paths clients send; `unmatched` for 404s and 405s of the router."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def method_label(method: str) -> str:
    """The request method, or `other` for the unusual ones a client may invent."""
    return method if method in _METHODS else "other"


@web.middleware
async def http_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request. Put it first in the app's middlewares, so it sees
    the status the error middleware turned an exception into."""
    route, method = route_template(request), method_label(request.method)
    started, status = time.perf_counter(), 500
    try:
        with HTTP_IN_FLIGHT.labels(route).track_inprogress():
            response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away before the answer (nginx's code for it)
        raise
    finally:
        HTTP_REQUESTS.labels(route, method, str(status)).inc()
        HTTP_SECONDS.labels(route, method).observe(time.perf_counter() - started)
        if received := request.content.total_bytes:
            HTTP_RECEIVED.labels(route).inc(received)


@contextmanager
def timed_call(
    histogram: Histogram, operation: str, outcome_of: Callable[[Exception], str]
) -> Iterator[None]:
    """Observe one call to a backing service (S3, CouchDB) in `histogram`, labelled by
    operation and outcome: `ok`, else what `outcome_of` calls the exception it raised (which
    goes on), or `error` when it was cancelled. Synchronous: costs no extra await."""
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    except Exception as exc:
        outcome = outcome_of(exc)
        raise
    finally:
        histogram.labels(operation, outcome).observe(time.perf_counter() - started)
