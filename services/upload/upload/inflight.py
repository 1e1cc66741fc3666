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
    return Slots(total=total, per_client=per_client, refuse=_refuse_upload)


def download_slots(*, total: int, per_client: int) -> Slots:
    return Slots(total=total, per_client=per_client, refuse=_refuse_download)


def _refuse_upload(scope: Scope, held: int, cap: int) -> ApiError:
    if scope == "client":
        return _busy(
            429,
            "too_many_uploads",
            f"this client already has {held} uploads in progress (at most {cap})",
        )
    return _busy(503, "busy", f"{held} uploads are being received (at most {cap})")


def _refuse_download(scope: Scope, held: int, cap: int) -> ApiError:
    if scope == "client":
        return _busy(
            429,
            "too_many_downloads",
            f"this client already has {held} images on their way (at most {cap})",
        )
    return _busy(503, "busy", f"{held} images are being sent (at most {cap})")


def _busy(status: int, code: str, message: str) -> ApiError:
    return ApiError(
        status,
        code,
        f"{message}; retry after {RETRY_AFTER_SECONDS} s",
        retry_after=RETRY_AFTER_SECONDS,
    )
