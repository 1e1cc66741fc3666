"""Uploads being received at once: capped per client and in total, checked before a byte
of the body is read. Each upload in flight holds a little memory (its spool's buffer, the
connection's) and a file of up to IMAGE_MAX_BYTES in the spool directory; the caps bound
both. Past the client's cap: 429; past the total: 503; both with Retry-After.

A client is its principal when the request is authenticated (API token or session), else
its address (an IPv6 /64), as the guard sees it through trusted proxies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from messaging.events import LOCAL_PRINCIPAL

from .errors import ApiError
from .guard import PEER, address_key, principal_of

RETRY_AFTER_SECONDS = 5
"""An upload usually finishes within seconds; a stalled one is cut by the body timeout."""


class UploadSlots:
    def __init__(self, *, total: int, per_client: int) -> None:
        self._total = total
        self._per_client = per_client
        self._held: Counter[str] = Counter()
        self._count = 0

    @property
    def in_flight(self) -> int:
        return self._count

    @contextmanager
    def hold(self, client: str) -> Iterator[None]:
        """One slot for `client` while the block runs; ApiError (429/503) if none is free."""
        if self._held[client] >= self._per_client:
            raise ApiError(
                429,
                "too_many_uploads",
                f"this client already has {self._held[client]} uploads in progress "
                f"(at most {self._per_client}); retry after {RETRY_AFTER_SECONDS} s",
                retry_after=RETRY_AFTER_SECONDS,
            )
        if self._count >= self._total:
            raise ApiError(
                503,
                "busy",
                f"{self._count} uploads are being received (at most {self._total}); "
                f"retry after {RETRY_AFTER_SECONDS} s",
                retry_after=RETRY_AFTER_SECONDS,
            )
        self._held[client] += 1
        self._count += 1
        try:
            yield
        finally:
            self._count -= 1
            self._held[client] -= 1
            if not self._held[client]:
                del self._held[client]  # memory follows what is in flight, not who came


def client_of(request: web.Request) -> str:
    """Whose uploads these are: the principal when authenticated, else the address."""
    principal = principal_of(request)
    if principal.name != LOCAL_PRINCIPAL:
        return f"principal:{principal.name}"
    return f"address:{address_key(request[PEER])}"
