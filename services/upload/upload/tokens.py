"""API tokens: random, given to a client once, kept by upload only as SHA-256 hashes
(`UPLOAD_API_TOKEN_HASHES`), so the configuration never holds a usable token. Each hash is
named: `NAME:SHA256HEX`; the name is the principal the token speaks for (the owner of the
jobs it submits). A bare hash is named by its first 8 hex digits.

    python -m upload.tokens new NAME    # a new token and its entry for NAME
    python -m upload.tokens hash < F    # the hash of a token read from stdin

A token has 256 random bits, so one unsalted SHA-256 is enough to keep it at rest (nothing
to guess from a hash); the check compares against every hash in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sys
from collections.abc import Iterable, Sequence

from messaging.events import PRINCIPAL_PATTERN

TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 512
"""Longer `Authorization` values are refused without hashing them."""
BARE_NAME_DIGITS = 8
"""A bare hash (no `NAME:`) is named by this many of its first hex digits."""
_PRINCIPAL = re.compile(PRINCIPAL_PATTERN)
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """The SHA-256 (hex) of a token, as `UPLOAD_API_TOKEN_HASHES` lists it."""
    return hashlib.sha256(token.encode()).hexdigest()


def valid_principal(name: str) -> bool:
    return bool(_PRINCIPAL.match(name))


def parse_entry(entry: str) -> tuple[str, str]:
    """`NAME:SHA256HEX` (or a bare hash) as (name, lower-case hex); ValueError if malformed."""
    name, colon, digest = entry.strip().rpartition(":")
    digest = digest.strip().lower()
    if not _SHA256_HEX.match(digest):
        raise ValueError(
            "give NAME:SHA256 entries (64 hex digits) of the tokens, never the tokens: "
            "python -m upload.tokens new NAME"
        )
    name = name.strip() if colon else digest[:BARE_NAME_DIGITS]
    if not _PRINCIPAL.match(name):
        raise ValueError(
            f"a token's name is letters, digits and . _ @ + - (at most 128), not {name!r}"
        )
    return name, digest


def entry(name: str, digest: str) -> str:
    return f"{name}:{digest}"


class TokenSet:
    """The accepted tokens, by hash, each with the principal it names. Empty: tokens are
    off. Two entries may share a name (a token being replaced by its successor)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._known = tuple(
            (name, bytes.fromhex(digest)) for name, digest in map(parse_entry, entries)
        )

    @property
    def enabled(self) -> bool:
        return bool(self._known)

    def verify(self, token: str) -> str | None:
        """The principal a token names when it is one of ours, else None."""
        found = self.identify(token)
        return found[0] if found else None

    def identify(self, token: str) -> tuple[str, str] | None:
        """(principal, hash hex) of a token when it is one of ours, else None. Every known
        hash is compared, in constant time, whether or not an earlier one matched."""
        if not self._known or not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        found: str | None = None
        for name, known in self._known:
            if hmac.compare_digest(digest, known) and found is None:
                found = name
        return (found, digest.hex()) if found is not None else None

    def holds(self, name: str, digest: str) -> bool:
        """Whether the token with this hash is still configured for `name` (a session
        signed in with a token ends when the token is removed)."""
        return any(
            known_name == name and known.hex() == digest for known_name, known in self._known
        )


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, else None."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


USAGE = "usage: python -m upload.tokens new NAME | hash (token on stdin)"


def main(argv: Sequence[str]) -> int:
    match list(argv):
        case ["new", name]:
            if not _PRINCIPAL.match(name):
                print("NAME: letters, digits and . _ @ + - (at most 128)", file=sys.stderr)
                return 2
            token = new_token()
            print(f"token:  {token}")
            print(f"entry:  {entry(name, token_hash(token))}")
            print(
                f"Give the token to {name} (it is shown only here); add the entry to "
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
