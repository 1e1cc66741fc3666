from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from aiohttp import web


def package_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "0+unknown"


def run(app: web.Application, *, host: str, port: int, shutdown_timeout: float) -> None:
    """Serve until SIGTERM/SIGINT; aiohttp then runs the app's cleanup contexts in reverse,
    so consumers (registered last) stop first and resources close after them."""
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        print=None,
        shutdown_timeout=shutdown_timeout,
        handle_signals=True,
    )
