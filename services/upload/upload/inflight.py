"""Uploads being received at once: capped per client and in total, checked before a byte
of the body is read. Each upload in flight holds a little memory (its spool's buffer, the
connection's) and a file of up to IMAGE_MAX_BYTES in the spool directory; the caps bound
both. Past the client's cap: 429; past the total: 503; both with Retry-After.

Images sent back (`/input`, `/result`) are spooled the same way and capped likewise.
A client is `guard.client_of`: its principal when authenticated, else its address.
"""

from __future__ import annotations

from .errors import ApiError
from .slots import Scope, Slots

RETRY_AFTER_SECONDS = 5
"""An upload usually finishes within seconds; a stalled one is cut by the body timeout."""


def upload_slots(*, total: int, per_client: int) -> Slots:
    return _transfer_slots(total, per_client, "too_many_uploads", "uploads being received")


def download_slots(*, total: int, per_client: int) -> Slots:
    return _transfer_slots(total, per_client, "too_many_downloads", "images being sent")


def _transfer_slots(total: int, per_client: int, client_code: str, what: str) -> Slots:
    """Past the client's cap 429 `client_code`, past the replica's 503 `busy`."""

    def refuse(scope: Scope, held: int, cap: int) -> ApiError:
        if scope == "client":
            status, code, message = 429, client_code, f"this client has {held} {what}"
        else:
            status, code, message = 503, "busy", f"this server has {held} {what}"
        return ApiError(
            status,
            code,
            f"{message} (at most {cap}); retry after {RETRY_AFTER_SECONDS} s",
            retry_after=RETRY_AFTER_SECONDS,
        )

    return Slots(total=total, per_client=per_client, refuse=refuse)
