"""The ops endpoints every service serves: /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = structlog.get_logger("servicekit")

Check = Callable[[], Awaitable[bool]]
CHECK_TIMEOUT = 3.0
READINESS_CHECKS: web.AppKey[dict[str, Check]] = web.AppKey("readiness_checks")


def add_ops_routes(app: web.Application) -> None:
    """Add the ops routes; register readiness checks with `add_readiness_check`."""
    app.setdefault(READINESS_CHECKS, {})
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)


def add_readiness_check(app: web.Application, name: str, check: Check) -> None:
    app.setdefault(READINESS_CHECKS, {})[name] = check


async def run_checks(checks: Mapping[str, Check]) -> dict[str, bool]:
    async def one(name: str, check: Check) -> bool:
        try:
            return await asyncio.wait_for(check(), CHECK_TIMEOUT)
        except Exception as exc:
            log.warning("readiness_check_failed", check=name, error=repr(exc))
            return False

    names = list(checks)
    results = await asyncio.gather(*(one(name, checks[name]) for name in names))
    return dict(zip(names, results, strict=True))


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    checks = request.app[READINESS_CHECKS]
    results = await run_checks(checks)
    ready = all(results.values())
    return web.json_response(
        {"status": "ready" if ready else "unavailable", "checks": results},
        status=200 if ready else 503,
    )


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
