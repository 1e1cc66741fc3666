"""One webhook POST, made safely: to vetted addresses only, no redirects, bounded in time,
and nothing of the answer read but its status.

The connection resolves the target's name itself at connection time through
`ssrf.VettedResolver` (no DNS cache), so it reaches only addresses that are allowed at
that moment; a literal IP target (which aiohttp does not resolve) is checked before.
No proxy from the environment is used (`trust_env` off): a proxy would connect wherever
it is told, past every check here. A 3xx is an answer like any other: its `Location` is
never followed (a redirect could point anywhere, the checks would not see it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from ipaddress import ip_address
from types import TracebackType
from typing import Self

import aiohttp
from yarl import URL

from .ssrf import RefusedTarget, TargetRules, Unresolved, VettedResolver, vetted_addresses

CONNECT_TIMEOUT_SECONDS = 5.0
TOTAL_TIMEOUT_SECONDS = 10.0
RETRIED_CODES = frozenset({408, 429})
"""Client errors that say "later" rather than "never"; every 5xx says it too."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt met: the receiver's status, or an error when it did not answer."""

    status_code: int | None
    error: str | None
    duration_ms: float
    refused: bool = False
    """The target itself was refused (SSRF rules): no later attempt would be allowed."""

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def worth_retrying(self) -> bool:
        """5xx, 408, 429, or no answer at all (timeout, connection, DNS): perhaps later.
        A refused target, a 3xx (not followed) or another 4xx will not change."""
        if self.refused:
            return False
        if self.status_code is None:
            return True
        return self.status_code >= 500 or self.status_code in RETRIED_CODES


class Sender:
    """POSTs webhook bodies through one session whose every connection is vetted."""

    def __init__(
        self,
        rules: TargetRules,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        total_timeout: float = TOTAL_TIMEOUT_SECONDS,
    ) -> None:
        self._rules = rules
        self._timeout = aiohttp.ClientTimeout(
            total=total_timeout, connect=connect_timeout, sock_connect=connect_timeout
        )
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(
            resolver=VettedResolver(self._rules), use_dns_cache=False, force_close=True
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST `body` to `url` once; never raises for what the target does."""
        assert self._session is not None, "use the sender as an async context manager"
        started = time.monotonic()

        def answer(code: int | None, error: str | None, refused: bool = False) -> Answer:
            elapsed = round((time.monotonic() - started) * 1000, 2)
            return Answer(code, error, elapsed, refused)

        try:
            target = URL(url)
            await self._check_literal(target)
            async with self._session.post(
                target, data=body, headers=headers, allow_redirects=False
            ) as response:
                return answer(response.status, None)
        except RefusedTarget as exc:
            return answer(None, f"refused: {exc}", not isinstance(exc, Unresolved))
        except aiohttp.ClientConnectorDNSError as exc:
            os_error = exc.os_error
            refused = isinstance(os_error, RefusedTarget) and not isinstance(os_error, Unresolved)
            return answer(None, f"refused: {os_error}" if refused else _describe(exc), refused)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            return answer(None, _describe(exc))

    async def _check_literal(self, target: URL) -> None:
        """A literal IP host does not pass the resolver: check it here (it cannot be
        rebound, so this check is the connection's)."""
        host = target.host or ""
        try:
            ip_address(host)
        except ValueError:
            return  # a name: the connector's resolver vets it
        await vetted_addresses(host, target.port or 0, self._rules)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:500]
