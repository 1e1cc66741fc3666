"""Who may call what, and how often. Runs before every handler (inside the error middleware):

1. **CSRF** (double-submit): the pages set a random `imagemesh_csrf` cookie that the web
   app's script sends back as `X-CSRF-Token`. An unsafe request from a browser (one with
   `Origin`, `Sec-Fetch-Site` or `Cookie`) needs that header equal to the cookie and, when
   it says where it comes from, to come from this origin; else 403 `csrf_failed`.
   A request with none of those (curl, the CLI, scripts) carries no ambient credential,
   so it cannot be forged by another site: it is an API client.
2. **Rate limits** per client on /api/v1/: one bucket for new jobs (POST /api/v1/jobs), a
   more generous one for everything else. A client is its API token (when it presents a
   valid one), else its address (an IPv6 /64); `X-Forwarded-For` and `X-Forwarded-Proto`
   count only from a trusted proxy (`UPLOAD_TRUSTED_PROXIES`).
3. **API tokens** (when `UPLOAD_API_TOKEN_HASHES` lists any): an /api/ request needs
   `Authorization: Bearer <token>`, unless it is the web app's own (a same-origin browser
   request with the CSRF cookie); else 401 `unauthorized`. The pages, the health
   endpoints, the API documents and /api/v1/about stay open.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from messaging.events import LOCAL_PRINCIPAL

from .errors import ApiError
from .ratelimit import RateLimiter
from .settings import Settings
from .tokens import TokenSet, bearer_token

CSRF_COOKIE = "imagemesh_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
OPEN_API_PATHS = frozenset(
    {"/api/docs", "/api/v1/openapi.json", "/api/v1/asyncapi.json", "/api/v1/about"}
)
"""Under /api/ but open with tokens on: the docs page, the documents, the about answer."""
JOBS_PATH = "/api/v1/jobs"
RATE_LIMITED = "/api/v1/"
_CSRF_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
_BROWSER_HEADERS = ("Origin", "Sec-Fetch-Site", "Cookie")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_IPV6_PREFIX = 64
"""An IPv6 client is limited by its /64: one host usually has all of it."""


def needs_token(path: str) -> bool:
    return path.startswith("/api/") and path not in OPEN_API_PATHS


def rate_limited(path: str) -> bool:
    return path.startswith(RATE_LIMITED)


def jobs_bucket(method: str, path: str) -> bool:
    return method == "POST" and path == JOBS_PATH


def unsafe(method: str) -> bool:
    return method not in SAFE_METHODS


@dataclass(frozen=True, slots=True)
class Peer:
    """The client as the guard sees it, through trusted proxies."""

    address: str
    scheme: str
    """http or https, as the client reached us."""


PEER = web.RequestKey("peer", Peer)


@dataclass(frozen=True, slots=True)
class Principal:
    """On whose behalf a request acts: the owner of the jobs it submits, and whose jobs it
    may read. `local` for everyone when no API tokens are configured."""

    name: str
    auditor: bool = False
    """Reads every job, and sees who uploaded it (address, user agent)."""

    def may_read(self, owner: str | None) -> bool:
        """Whether this principal may see a job owned by `owner`."""
        return self.auditor or owner == self.name


PRINCIPAL = web.RequestKey("principal", Principal)


def principal_of(request: web.Request) -> Principal:
    """The request's principal, as the guard established it (it runs before every handler)."""
    return request[PRINCIPAL]


class Guard:
    def __init__(self, settings: Settings) -> None:
        self.tokens = TokenSet(settings.upload_api_token_hashes)
        self._proxies = settings.upload_trusted_proxies
        self.jobs = RateLimiter(
            settings.upload_rate_limit_per_minute, settings.upload_rate_limit_burst
        )
        self.api = RateLimiter(
            settings.upload_api_rate_limit_per_minute, settings.upload_api_rate_limit_burst
        )

    def check(self, request: web.Request) -> None:
        """Raise the ApiError a request gets, if any; note its Peer on the request."""
        peer = request[PEER] = self.peer(request)
        browser = any(name in request.headers for name in _BROWSER_HEADERS)
        # First CSRF: another site must not spend its victim's rate budget either.
        if browser and unsafe(request.method):
            problem = csrf_problem(request, peer)
            if problem is not None:
                raise ApiError(403, "csrf_failed", problem)
        presented = bearer_token(request.headers.get("Authorization", ""))
        token = self.tokens.verify(presented) if presented else None
        # Then the rate, before tokens are judged: guessing them is rate-limited too.
        if rate_limited(request.path):
            self._limit(request, f"token:{token}" if token else f"address:{_rate_key(peer)}")
        if self.tokens.enabled and needs_token(request.path) and token is None:
            if presented:
                raise _unauthorized("the API token is not valid", error="invalid_token")
            if not browser or csrf_problem(request, peer) is not None:
                raise _unauthorized("this API needs `Authorization: Bearer <token>`")
        request[PRINCIPAL] = Principal(token or LOCAL_PRINCIPAL)

    def peer(self, request: web.Request) -> Peer:
        remote = request.remote or ""
        if not self._trusted(remote):
            return Peer(remote, request.scheme)
        address = remote
        # Each proxy appends who it heard from: the first untrusted hop from the right is
        # the client (anything left of it, the client may have written itself).
        hops = [
            hop.strip()
            for header in request.headers.getall("X-Forwarded-For", ())
            for hop in header.split(",")
            if hop.strip()
        ]
        for hop in reversed(hops):
            address = hop[:64]
            if not self._trusted(hop):
                break
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return Peer(address, proto if proto in _DEFAULT_PORTS else request.scheme)

    def _trusted(self, address: str) -> bool:
        if not self._proxies:
            return False
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self._proxies)

    def _limit(self, request: web.Request, key: str) -> None:
        limiter = self.jobs if jobs_bucket(request.method, request.path) else self.api
        wait = limiter.take(key)
        if wait:
            what = "new jobs" if limiter is self.jobs else "requests"
            raise ApiError(
                429,
                "rate_limited",
                f"too many {what} from this client; retry after {wait} s",
                retry_after=wait,
            )


def guard_middleware(guard: Guard) -> Middleware:
    @web.middleware
    async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        guard.check(request)
        return await handler(request)

    return guarded


def csrf_problem(request: web.Request, peer: Peer) -> str | None:
    """Why a browser request is not the web app's own (None: it is). Unsafe requests need
    the header; a safe one may instead say it is same-origin (`Sec-Fetch-Site`), since an
    EventSource or an <img> cannot set headers."""
    origin = request.headers.get("Origin")
    if origin is not None and not same_origin(origin, peer.scheme, request.host):
        return "cross-origin request refused"
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return "cross-site request refused"
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not _CSRF_TOKEN.match(cookie):
        return f"no CSRF cookie ({CSRF_COOKIE}): reload the page"
    header = request.headers.get(CSRF_HEADER)
    if header is not None:
        if hmac.compare_digest(_bytes(header), _bytes(cookie)):
            return None
        return f"the {CSRF_HEADER} header does not match the CSRF cookie: reload the page"
    if not unsafe(request.method) and site == "same-origin":
        return None
    return f"the {CSRF_HEADER} header is missing"


def same_origin(origin: str, scheme: str, host: str) -> bool:
    """Whether an `Origin` names this service as the client reached it (scheme, host, port)."""
    try:
        theirs = urlsplit(origin)
        ours = urlsplit(f"{scheme}://{host}")
        return (
            theirs.scheme in _DEFAULT_PORTS
            and theirs.hostname is not None
            and not theirs.path
            and (theirs.scheme, theirs.hostname, theirs.port or _DEFAULT_PORTS[theirs.scheme])
            == (ours.scheme, ours.hostname, ours.port or _DEFAULT_PORTS.get(ours.scheme))
        )
    except ValueError:  # a port that is not a number
        return False


def set_csrf_cookie(request: web.Request, response: web.StreamResponse) -> None:
    """Give a page's browser its CSRF token (kept if it already has a well-formed one)."""
    if _CSRF_TOKEN.match(request.cookies.get(CSRF_COOKIE, "")):
        return
    response.set_cookie(
        CSRF_COOKIE,
        secrets.token_urlsafe(32),
        path="/",
        samesite="Strict",
        secure=request[PEER].scheme == "https",
        httponly=False,  # the page's script reads it to send it back as the header
    )


def _unauthorized(message: str, *, error: str | None = None) -> ApiError:
    challenge = 'Bearer realm="imagemesh"' + (f', error="{error}"' if error else "")
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def _ip(address: str) -> IPv4Address | IPv6Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def _rate_key(peer: Peer) -> str:
    ip = _ip(peer.address)
    if isinstance(ip, IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(IPv6Network((ip, _IPV6_PREFIX), strict=False))
    return peer.address


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")
