"""Where webhooks may go (`upload.ssrf`): the URL's form, and every address its host
resolves to, with the real resolver of this machine (numeric hosts and `localhost` need
no network)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest

from upload.signing import principal_key, signature, verify
from upload.ssrf import (
    MAX_URL_LENGTH,
    RefusedTarget,
    TargetRules,
    Unresolved,
    VettedResolver,
    checked_url,
    refusal,
    vetted_addresses,
)

LOOPBACK = TargetRules(allowed=(ip_network("127.0.0.0/8"),))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        (" https://example.org/", "spaces or control characters"),
        ("ftp://example.org/", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:6379/", "only http and https"),
        ("http://user:pw@example.org/", "user name or password"),
        ("http://user@example.org/", "user name or password"),
        ("http:///path", "names no host"),
        ("/relative/path", "only http and https"),
        ("http://exa mple.org/", "spaces or control characters"),
        ("http://example.org/\r\nHost: evil", "spaces or control characters"),
        ("http://example.org:0/", "port"),
        ("http://example.org:70000/", "not a URL"),
        ("http://2130706433/", "four decimal numbers"),  # what aiohttp will not connect to
        ("http://017700000001/", "four decimal numbers"),
        ("http://127.1/", "four decimal numbers"),
        ("http://0177.0.0.1/", "four decimal numbers"),
        ("http://example.org/" + "a" * MAX_URL_LENGTH, f"longer than {MAX_URL_LENGTH}"),
    ],
)
def test_a_url_of_the_wrong_form_is_refused_saying_why(url: str, reason: str) -> None:
    with pytest.raises(RefusedTarget, match=reason):
        checked_url(url)


def test_a_plain_https_url_keeps_its_path_query_and_port() -> None:
    url = checked_url("https://hooks.example.org:8443/in?token=abc")
    assert (url.host, url.port, url.path, url.query_string) == (
        "hooks.example.org",
        8443,
        "/in",
        "token=abc",
    )


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private"),  # reserved; Python lists it among the private ones
        ("100.64.0.1", "not a globally routable"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:a9fe:a9fe::", "link-local"),  # 6to4 of 169.254.169.254
    ],
)
def test_non_global_addresses_are_refused(address: str, kind: str) -> None:
    reason = refusal(ip_address(address))
    assert reason is not None
    assert kind in reason


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"])
def test_global_addresses_are_allowed(address: str) -> None:
    assert refusal(ip_address(address)) is None


def test_an_allowed_network_lets_its_addresses_through_mapped_ones_too() -> None:
    allowed = LOOPBACK.allowed
    assert refusal(IPv4Address("127.0.0.1"), allowed) is None
    assert refusal(IPv6Address("::ffff:127.0.0.1"), allowed) is None
    assert refusal(IPv6Address("::1"), allowed) is not None  # another network
    assert refusal(IPv4Address("10.0.0.1"), allowed) is not None


@pytest.mark.parametrize(
    ("host", "seen"),
    [
        ("2130706433", "127.0.0.1"),  # decimal
        ("0x7f.1", "127.0.0.1"),  # hex, short form
        ("017700000001", "127.0.0.1"),  # octal
        ("167772161", "10.0.0.1"),
        ("2852039166", "169.254.169.254"),
        ("localhost", "127.0.0.1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
    ],
)
async def test_every_spelling_is_judged_as_the_address_it_resolves_to(host: str, seen: str) -> None:
    with pytest.raises(RefusedTarget, match=seen.replace(".", r"\.")):
        await vetted_addresses(host, 80, TargetRules())


async def test_loopback_resolves_when_allowed_and_private_stays_refused() -> None:
    assert await vetted_addresses("2130706433", 80, LOOPBACK) == [(2, "127.0.0.1")]
    with pytest.raises(RefusedTarget, match="private"):
        await vetted_addresses("167772161", 80, LOOPBACK)


async def test_a_name_that_does_not_resolve_is_unresolved_not_refused_for_good() -> None:
    with pytest.raises(Unresolved):
        await vetted_addresses("no-such-host.invalid", 80, TargetRules())


async def test_the_connection_resolver_answers_only_vetted_addresses() -> None:
    resolver = VettedResolver(LOOPBACK)
    (found,) = await resolver.resolve("2130706433", 8080)
    assert (found["host"], found["port"], found["hostname"]) == ("127.0.0.1", 8080, "2130706433")
    with pytest.raises(RefusedTarget):
        await VettedResolver(TargetRules()).resolve("localhost", 80)


def test_each_principal_has_its_own_key_and_signatures_verify() -> None:
    alice, bob = principal_key("master-secret", "alice"), principal_key("master-secret", "bob")
    assert alice != bob
    assert alice == principal_key("master-secret", "alice")
    assert alice != principal_key("another-master", "alice")
    body = b'{"job":{"id":"x"}}'
    header = signature(alice, body)
    assert header.startswith("sha256=")
    assert len(header) == len("sha256=") + 64
    assert verify(alice, body, header)
    assert not verify(bob, body, header)
    assert not verify(alice, body + b" ", header)
