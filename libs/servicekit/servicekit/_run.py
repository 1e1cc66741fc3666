from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import uvloop
from aiohttp import web

from ._logging import configure_logging
from ._metrics import set_build_info
from ._settings import ServiceSettings, load_settings

S = TypeVar("S", bound=ServiceSettings)


def run_service(
    name: str,
    settings_cls: type[S],
    create_app: Callable[[S], web.Application],
    *,
    port: Callable[[S], int],
    prepare: Callable[[S], None] | None = None,
) -> None:
    """A service's whole `__main__`: settings (or one clear line and exit 2), logging, serve
    until SIGTERM/SIGINT. aiohttp then runs the app's cleanup contexts in reverse, so
    consumers (registered last) stop first and resources close after them.

    The event loop is uvloop's (libuv): the services spend much of their CPU moving
    messages and HTTP requests, where it costs markedly less than asyncio's own loop."""
    settings = load_settings(settings_cls, name)
    configure_logging(name, level=settings.log_level, fmt=settings.log_format)
    set_build_info(name)
    if prepare is not None:
        prepare(settings)  # process-wide set-up (e.g. resource limits), never in tests
    web.run_app(
        create_app(settings),
        host=settings.http_host,
        port=port(settings),
        access_log=None,
        print=None,
        shutdown_timeout=settings.shutdown_timeout_seconds,
        handle_signals=True,
        loop=uvloop.new_event_loop(),
    )
