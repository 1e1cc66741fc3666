"""Webhook signatures: each principal's own key, and the signature of a body.

One master secret (`UPLOAD_WEBHOOK_SECRET`) is configured; a principal's key is
HMAC-SHA256(master, "imagemesh webhook " + principal), as hex text. Keys of different
principals are unrelated to whoever holds only one of them, so a principal that knows its
own key cannot sign a body as another principal's job would be signed; a leaked key is
that principal's alone. The key is derived, never stored: every replica computes the
same one, and changing the master changes every key. One principal's key alone is rotated
by raising its generation (`UPLOAD_WEBHOOK_KEY_GENERATIONS`, `alice:2`): generation N > 1
derives from "imagemesh webhook " + principal + "#" + N, a key unrelated to the others;
generation 1 (everyone's, unless configured) is the original derivation, so existing keys
stay valid until rotated.

The signature is `sha256=` + hex HMAC-SHA256 of the exact body bytes under the
principal's key text (its UTF-8 bytes, as a receiver naturally passes it to hmac). The
body carries its own send time (`sent_at`), so the signature covers it: a receiver that
refuses old times refuses replays.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_PREFIX = "sha256="
_CONTEXT = b"imagemesh webhook "


def principal_key(master: str, principal: str, generation: int = 1) -> str:
    """The key `principal`'s webhooks are signed with in `generation` (64 hex digits)."""
    message = _CONTEXT + principal.encode()
    if generation > 1:
        message += f"#{generation}".encode()
    return hmac.new(master.encode(), message, hashlib.sha256).hexdigest()


def signature(key: str, body: bytes) -> str:
    """The `X-Imagemesh-Signature` of `body` under `key`."""
    return SIGNATURE_PREFIX + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def verify(key: str, body: bytes, header: str) -> bool:
    """Whether `header` is `body`'s signature under `key` (compared in constant time): what
    a receiver does, here for the tests and the README's example."""
    return hmac.compare_digest(signature(key, body), header)
