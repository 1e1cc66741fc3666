"""Where a webhook may be sent: the defence against server-side request forgery.

A `callback_url` is somebody else's choice of where the mesh connects. Unchecked, it
would let any client make upload reach what only upload can reach: the broker's
management port, the S3 server, CouchDB, a cloud's metadata service (169.254.169.254),
anything on loopback or the private network. So a target must be http(s), without
userinfo, at most `MAX_URL_LENGTH` characters, and every address its host resolves to
must be globally routable, unless it lies inside a network the operator allowed
(`WEBHOOK_ALLOWED_NETWORKS`; .env.example allows 127.0.0.0/8 for local trials).

The decision is made on resolved addresses, never on the spelling of the host: decimal,
octal or hex IPv4 (`http://2130706433/`), IPv4-mapped IPv6 (`::ffff:127.0.0.1`) and names
that resolve to private addresses all end as the address they reach. It is made twice:
at intake (a clear 400) and again at each delivery by the connection's own resolver
(`VettedResolver`), which connects only to the addresses it vetted, so a name that
resolves to a public address at intake and to a private one later (DNS rebinding) is
refused then.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_SECONDS = 2.0
"""How long a target's name may take to resolve (at intake, the client waits for it)."""
_NAT64 = IPv6Network("64:ff9b::/96")
"""Well-known NAT64 prefix: on a network with NAT64 it reaches the embedded IPv4 address."""
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


class RefusedTarget(OSError):
    """A webhook target the mesh will not connect to; the message says why."""


class Unresolved(RefusedTarget):
    """The target's name did not resolve (in time): perhaps only for now."""


@dataclass(frozen=True, slots=True)
class TargetRules:
    """What a webhook target may be: the networks allowed beside global addresses."""

    allowed: tuple[Network, ...] = ()
    resolve_timeout: float = RESOLVE_TIMEOUT_SECONDS


def checked_url(text: str) -> URL:
    """The URL, if its form is acceptable (scheme, userinfo, host, length); else
    RefusedTarget. Its addresses are checked by `vetted_addresses`."""
    if not text:
        raise RefusedTarget("empty (leave the field out for no webhook)")
    if len(text) > MAX_URL_LENGTH:
        raise RefusedTarget(f"longer than {MAX_URL_LENGTH} characters")
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in text):
        raise RefusedTarget("contains spaces or control characters")
    try:
        url = URL(text)
        host = url.host
        port = url.port
    except ValueError as exc:
        raise RefusedTarget(f"not a URL ({exc})") from None
    if url.scheme not in {"http", "https"}:
        raise RefusedTarget("only http and https URLs are accepted")
    if url.user is not None or url.password is not None:
        raise RefusedTarget("a URL with a user name or password is not accepted")
    if not host:
        raise RefusedTarget("the URL names no host")
    if host.replace(".", "").isdigit() and not _dotted_quad(host):
        # 2130706433, 017700000001, 127.1: what socket maps onto an address. The HTTP
        # client refuses to connect to them (aiohttp), so they could never be delivered.
        raise RefusedTarget("write an IPv4 address as four decimal numbers (a.b.c.d)")
    if port is None or not 0 < port < 65536:
        raise RefusedTarget("the URL's port is out of range")
    return url


def _dotted_quad(host: str) -> bool:
    try:
        return str(IPv4Address(host)) == host
    except ValueError:
        return False


def refusal(address: Address, allowed: Iterable[Network] = ()) -> str | None:
    """Why the mesh must not connect to `address`, or None when it may: a global unicast
    address, or one inside an allowed network. An IPv4 address embedded in IPv6
    (mapped, NAT64, 6to4, Teredo) is judged as the IPv4 address it reaches."""
    if isinstance(address, IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return refusal(embedded, allowed)
    if any(address.version == net.version and address in net for net in allowed):
        return None
    for kind, flag in (
        ("an unspecified", address.is_unspecified),
        ("a loopback", address.is_loopback),
        ("a link-local", address.is_link_local),
        ("a multicast", address.is_multicast),
        ("a private", address.is_private),
        ("a reserved", address.is_reserved),
    ):
        if flag:
            return f"{address}, {kind} address"
    if not address.is_global:
        return f"{address}, not a globally routable address"
    return None


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


async def vetted_addresses(
    host: str, port: int, rules: TargetRules, family: int = socket.AF_UNSPEC
) -> list[tuple[int, str]]:
    """(family, address) for each address `host` resolves to, when every one of them may
    be connected to; else RefusedTarget (one refused address refuses the host: a
    connection could pick it). Resolved by the event loop's getaddrinfo (the system's
    resolver, as any client would), bounded by `rules.resolve_timeout`."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(rules.resolve_timeout):
            infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise Unresolved(f"{host} did not resolve within {rules.resolve_timeout:g} s") from None
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolved(f"{host} does not resolve ({exc})") from None
    found: list[tuple[int, str]] = []
    for info_family, _, _, _, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]
        address = ip_address(text)
        reason = refusal(address, rules.allowed)
        if reason is not None:
            raise RefusedTarget(f"{host} resolves to {reason}")
        if (info_family, text) not in found:
            found.append((info_family, text))
    if not found:
        raise Unresolved(f"{host} resolves to no address")
    return found


class VettedResolver(AbstractResolver):
    """aiohttp's resolver for webhook deliveries: the connection goes only to addresses
    `vetted_addresses` allowed, resolved at connection time (not cached), so what the name
    meant at intake does not matter. Literal IP hosts do not pass a resolver in aiohttp:
    the delivery checks them itself before connecting (`vetted_addresses` again)."""

    def __init__(self, rules: TargetRules) -> None:
        self._rules = rules

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await vetted_addresses(host, port, self._rules, family)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=found_family,
                proto=0,
                flags=_NUMERIC,
            )
            for found_family, address in addresses
        ]

    async def close(self) -> None:
        return None
