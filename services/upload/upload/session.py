"""The web app's sign-in session: after a person enters an API token on the sign-in page,
the browser holds an encrypted (Fernet: AES-CBC + HMAC-SHA256, via aiohttp-session),
HttpOnly, SameSite=Lax cookie naming the principal and the token's hash. Only upload can
make or read it (`UPLOAD_SESSION_SECRET`); it expires after SESSION_MAX_AGE, and at once
when its token is removed from `UPLOAD_API_TOKEN_HASHES`.

SameSite=Lax keeps the cookie off other sites' subresource requests and form posts; the
cross-origin check (upload.guard) refuses their unsafe requests anyway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp_session import STORAGE_KEY, Session, get_session, new_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from .tokens import TokenSet

SESSION_COOKIE = "imagemesh_session"
SESSION_MAX_AGE = 12 * 3600
"""Seconds a sign-in lasts (the cookie's Max-Age and the ciphertext's TTL)."""
_PRINCIPAL = "principal"
_TOKEN = "token"


def session_key(secret: str) -> bytes:
    """The 32-byte Fernet key from `UPLOAD_SESSION_SECRET` (any long random string)."""
    return hashlib.sha256(b"imagemesh-session\0" + secret.encode()).digest()


class _Storage(EncryptedCookieStorage):
    """Encrypted cookies, `Secure` when the request came over https (which only the
    request says: a replica may be reached both ways, through a TLS proxy or not)."""

    def __init__(self, secret: str, secure: Callable[[web.Request], bool]) -> None:
        super().__init__(
            session_key(secret),
            cookie_name=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE,
            httponly=True,
            samesite="Lax",
            path="/",
        )
        self._secure = secure

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        await super().save_session(request, response, session)
        morsel = response.cookies.get(SESSION_COOKIE)
        if morsel is not None and self._secure(request):
            morsel["secure"] = True


def sessions(secret: str, *, secure: Callable[[web.Request], bool]) -> Middleware:
    """The middleware that loads and saves sessions (before the guard, which reads them).
    `secure`: whether a request came over https."""
    return session_middleware(_Storage(secret, secure))


async def signed_in(request: web.Request, tokens: TokenSet) -> str | None:
    """The principal the request's session names, if its token is still configured."""
    if request.get(STORAGE_KEY) is None or SESSION_COOKIE not in request.cookies:
        return None
    session = await get_session(request)
    name, digest = session.get(_PRINCIPAL), session.get(_TOKEN)
    if isinstance(name, str) and isinstance(digest, str) and tokens.holds(name, digest):
        return name
    return None


async def sign_in(request: web.Request, name: str, digest: str) -> None:
    """Start a new session for `name` (a new cookie: nothing of an old session survives)."""
    session = await new_session(request)
    session[_PRINCIPAL] = name
    session[_TOKEN] = digest


async def sign_out(request: web.Request) -> None:
    if request.get(STORAGE_KEY) is None:
        return
    (await get_session(request)).invalidate()
