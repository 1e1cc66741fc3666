from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from aiohttp import web

from ._ops import add_readiness_check

T = TypeVar("T")
CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def resource(
    key: web.AppKey[T],
    open_resource: Callable[[], AbstractAsyncContextManager[T]],
    *,
    readiness: tuple[str, Callable[[T], Awaitable[bool]]] | None = None,
) -> CleanupContext:
    """A cleanup context that opens a resource (broker, S3, CouchDB) for the app's
    lifetime, stores it under `key` and, optionally, registers its readiness check."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with open_resource() as value:
            app[key] = value
            if readiness is not None:
                name, check = readiness
                add_readiness_check(app, name, lambda: check(value))
            yield

    return context
