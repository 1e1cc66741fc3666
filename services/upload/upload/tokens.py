"""API tokens: random, given to a client once, kept by upload only as SHA-256 hashes
(`UPLOAD_API_TOKEN_HASHES`), so the configuration never holds a usable token.

    python -m upload.tokens new         # a new token and its hash
    python -m upload.tokens hash < F    # the hash of a token read from stdin

A token has 256 random bits, so one unsalted SHA-256 is enough to keep it at rest (nothing
to guess from a hash); the check compares against every hash in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from collections.abc import Iterable, Sequence

TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 512
"""Longer `Authorization` values are refused without hashing them."""


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """The SHA-256 (hex) of a token, as `UPLOAD_API_TOKEN_HASHES` lists it."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenSet:
    """The accepted tokens, by hash. Empty: tokens are off."""

    def __init__(self, hashes: Iterable[str]) -> None:
        self._digests = tuple(bytes.fromhex(value) for value in hashes)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def verify(self, token: str) -> str | None:
        """The token's hash (hex) when it is one of ours, else None. Every known hash is
        compared, in constant time, whether or not an earlier one matched."""
        if not self._digests or not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(digest, known)
        return digest.hex() if found else None


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, else None."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


USAGE = "usage: python -m upload.tokens new | hash (token on stdin)"


def main(argv: Sequence[str]) -> int:
    match list(argv):
        case ["new"]:
            token = new_token()
            print(f"token:  {token}")
            print(f"sha256: {token_hash(token)}")
            print(
                "Give the token to the client (it is shown only here); add the sha256 to "
                "UPLOAD_API_TOKEN_HASHES (comma-separated).",
                file=sys.stderr,
            )
            return 0
        case ["hash"]:
            token = sys.stdin.readline().strip()
            if not token:
                print("no token on stdin", file=sys.stderr)
                return 2
            print(token_hash(token))
            return 0
        case _:
            print(USAGE, file=sys.stderr)
            return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
