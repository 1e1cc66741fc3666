"""Who may call what, and how often. Runs before every handler (inside the error middleware):

1. **Cross-origin protection** (as Go's `http.CrossOriginProtection`): an unsafe request
   (not GET/HEAD/OPTIONS) that a browser says comes from another site (`Sec-Fetch-Site`
   other than `same-origin`/`none`), or, without that header, whose `Origin` is not this
   host, is refused 403 `csrf_failed`. A request with neither header is not a browser's
   (curl, the CLI, scripts): it carries no ambient credential, so no other site can forge
   it. No client-chosen value (cookie, header) stands in for a credential.
2. **Rate limits** per client on /api/v1/ and the sign-in: one bucket for new jobs (POST
   /api/v1/jobs, and a job's retry), a more generous one for everything else. A client
   is its principal when it proves one, else its address (an IPv6 /64);
   `X-Forwarded-For` and `X-Forwarded-Proto` count only from a trusted proxy
   (`UPLOAD_TRUSTED_PROXIES`).
3. **Principals**: without API tokens (and no proxy user header) everyone is `local`.
   Otherwise a request is made on behalf of: the name of a valid
   `Authorization: Bearer <token>` (`UPLOAD_API_TOKEN_HASHES` lists `NAME:SHA256`); else
   the user an authenticating proxy names in `UPLOAD_PROXY_USER_HEADER`, believed only from
   a peer in `UPLOAD_TRUSTED_PROXIES`; else the signed-in session (`upload.session`: a
   server-encrypted cookie). An /api/ request with none of these is 401 `unauthorized`;
   the pages send it to the sign-in page. The sign-in, health endpoints, the API documents
   and /api/v1/about stay open. Principals named in `UPLOAD_AUDITORS` read every job.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from messaging.events import LOCAL_PRINCIPAL

from .errors import ApiError
from .ratelimit import RateLimiter
from .session import signed_in
from .settings import Settings
from .tokens import TokenSet, bearer_token, valid_principal

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""As Go's CrossOriginProtection: these never change anything, so any site may send them."""
OPEN_API_PATHS = frozenset(
    {"/api/docs", "/api/v1/openapi.json", "/api/v1/asyncapi.json", "/api/v1/about"}
)
"""Under /api/ but open with tokens on: the docs page, the documents, the about answer."""
SIGN_IN_PATH = "/signin"
SIGN_OUT_PATH = "/signout"
JOBS_PATH = "/api/v1/jobs"
RETRY_SUFFIX = "/retry"
RATE_LIMITED = "/api/v1/"
_SAME_SITE = frozenset({"same-origin", "none"})
"""`Sec-Fetch-Site` values that are not another site's doing (`none`: the user typed it)."""
_DEFAULT_PORTS = {"http": 80, "https": 443}
_IPV6_PREFIX = 64
"""An IPv6 client is limited by its /64: one host usually has all of it."""


def needs_token(path: str) -> bool:
    return path.startswith("/api/") and path not in OPEN_API_PATHS


def rate_limited(path: str) -> bool:
    return path.startswith(RATE_LIMITED) or path == SIGN_IN_PATH


def jobs_bucket(method: str, path: str) -> bool:
    """Whether a request makes a new job: a submission, or a retry of a job (which makes
    one too, and is limited with them)."""
    retry = path.startswith(f"{JOBS_PATH}/") and path.endswith(RETRY_SUFFIX)
    return method == "POST" and (path == JOBS_PATH or retry)


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
    """The request's principal, as the guard established it (it runs before every handler).
    Only the open paths (pages, sign-in, documents) may have none: 401 there."""
    if PRINCIPAL not in request:
        raise _unauthorized("sign in, or send `Authorization: Bearer <token>`")
    return request[PRINCIPAL]


def client_of(request: web.Request) -> str:
    """Whom per-client caps count against: the principal when the request is authenticated,
    else (everyone is `local` without tokens) the client's address."""
    principal = principal_of(request)
    if principal.name != LOCAL_PRINCIPAL:
        return f"principal:{principal.name}"
    return f"address:{address_key(request[PEER])}"


class Guard:
    def __init__(self, settings: Settings) -> None:
        self.tokens = TokenSet(settings.upload_api_token_hashes)
        self._proxies = settings.upload_trusted_proxies
        self._proxy_user_header = settings.upload_proxy_user_header
        self._auditors = frozenset(settings.upload_auditors)
        self.jobs = RateLimiter(
            settings.upload_rate_limit_per_minute, settings.upload_rate_limit_burst
        )
        self.api = RateLimiter(
            settings.upload_api_rate_limit_per_minute, settings.upload_api_rate_limit_burst
        )

    @property
    def enabled(self) -> bool:
        """Whether requests need a principal (tokens or an authenticating proxy); else
        everyone is `local`."""
        return self.tokens.enabled or bool(self._proxy_user_header)

    def check(self, request: web.Request, *, session: str | None = None) -> None:
        """Raise the ApiError a request gets, if any; note its Peer and (when it has one)
        its Principal on the request. `session`: the principal its session cookie names."""
        peer = request[PEER] = self.peer(request)
        # First cross-origin: another site must not spend its victim's rate budget either.
        if unsafe(request.method):
            problem = cross_origin_problem(request)
            if problem is not None:
                raise ApiError(403, "csrf_failed", problem)
        presented = bearer_token(request.headers.get("Authorization", ""))
        token = self.tokens.verify(presented) if presented else None
        name = token or self._proxy_user(request) or session
        # Then the rate, before tokens are judged: guessing them is rate-limited too.
        if rate_limited(request.path):
            self._limit(request, f"principal:{name}" if name else f"address:{address_key(peer)}")
        if not self.enabled:
            request[PRINCIPAL] = self.principal(LOCAL_PRINCIPAL)
            return
        if presented and token is None and needs_token(request.path):
            raise _unauthorized("the API token is not valid", error="invalid_token")
        if name is not None:
            request[PRINCIPAL] = self.principal(name)
        elif needs_token(request.path):
            raise _unauthorized("this API needs `Authorization: Bearer <token>` or a sign-in")

    def principal(self, name: str) -> Principal:
        return Principal(name, auditor=name in self._auditors)

    def _proxy_user(self, request: web.Request) -> str | None:
        """The user an authenticating proxy (oauth2-proxy...) names, if the request came
        straight from a trusted proxy; the header from anyone else is ignored."""
        if not self._proxy_user_header or not self._trusted(request.remote or ""):
            return None
        user = request.headers.get(self._proxy_user_header, "").strip()
        return user if valid_principal(user) else None

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
        # The session matters only when requests need a principal.
        session = await signed_in(request, guard.tokens) if guard.enabled else None
        guard.check(request, session=session)
        return await handler(request)

    return guarded


def over_https(request: web.Request) -> bool:
    """Whether the client reached us over https (directly, or through a trusted TLS proxy)."""
    return PEER in request and request[PEER].scheme == "https"


def cross_origin_problem(request: web.Request) -> str | None:
    """Why an unsafe request is another site's doing (None: it is not), as Go's
    `http.CrossOriginProtection.Check` judges it: `Sec-Fetch-Site` when the browser sends
    it, else `Origin` against `Host`; neither header: not a browser, nothing to forge."""
    if not unsafe(request.method):
        return None
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return None if site in _SAME_SITE else "cross-site request refused"
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    if same_host(origin, request.host):
        return None
    return "cross-origin request refused"


def same_host(origin: str, host: str) -> bool:
    """Whether an `Origin` names this host (and port). As Go's check, the scheme is not
    compared: `Host` does not say it, and every current browser sends `Sec-Fetch-Site`."""
    try:
        theirs = urlsplit(origin)
        ours = urlsplit(f"{theirs.scheme or 'http'}://{host}")
        return (
            theirs.scheme in _DEFAULT_PORTS
            and theirs.hostname is not None
            and not theirs.path
            and (theirs.hostname, theirs.port) == (ours.hostname, ours.port)
        )
    except ValueError:  # a port that is not a number
        return False


def _unauthorized(message: str, *, error: str | None = None) -> ApiError:
    challenge = 'Bearer realm="imagemesh"' + (f', error="{error}"' if error else "")
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def _ip(address: str) -> IPv4Address | IPv6Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def address_key(peer: Peer) -> str:
    """The client's address as limits count it: an IPv6 client by its /64."""
    ip = _ip(peer.address)
    if isinstance(ip, IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(IPv6Network((ip, _IPV6_PREFIX), strict=False))
    return peer.address
