"""The guard's pieces without servers: rate buckets on a fake clock, tokens, CSRF and
origins, client addresses through proxies, the OpenAPI document's security, settings."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from typing import Any

import pytest
import stack
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from openapi_spec_validator import validate
from pydantic import ValidationError

from upload.app import create_app
from upload.errors import ApiError
from upload.guard import (
    PEER,
    PRINCIPAL,
    Guard,
    Peer,
    Principal,
    cross_origin_problem,
    principal_of,
    same_host,
)
from upload.openapi import openapi_document
from upload.ratelimit import RateLimiter
from upload.settings import Settings
from upload.tokens import TokenSet, bearer_token, new_token, parse_entry, token_hash

CSRF = "c" * 43
"""A made-up value for the cookie and header of the old double-submit scheme."""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings(**values: Any) -> Settings:
    base = {
        key.lower(): value
        for key, value in stack.defaults().items()
        if key.startswith(("RABBITMQ_", "S3_", "UPLOAD_"))
    }
    base["upload_session_secret"] = "a-test-session-secret"
    return Settings.model_validate({**base, **values})


def request(
    method: str = "GET",
    path: str = "/api/v1/jobs",
    headers: dict[str, str] | None = None,
    *,
    remote: str = "192.0.2.10",
) -> web.Request:
    made = make_mocked_request(
        method, path, headers={"Host": "upload.test:8000", **(headers or {})}
    )
    return made.clone(remote=remote)


def browser(*, origin: str | None = "http://upload.test:8000", **extra: str) -> dict[str, str]:
    headers = {"Cookie": f"imagemesh_csrf={CSRF}", "X-CSRF-Token": CSRF, **extra}
    if origin is not None:
        headers["Origin"] = origin
    return headers


def refusal(guard: Guard, req: web.Request) -> tuple[int, str] | None:
    try:
        guard.check(req)
    except ApiError as exc:
        return exc.status, exc.code
    return None


# --------------------------------------------------------------------------- rate buckets


def test_a_bucket_allows_the_burst_then_the_rate_and_says_how_long_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == 1  # one a second
    assert limiter.take("b") == 0  # every client has its own
    clock.now += 1.0
    assert limiter.take("a") == 0
    assert limiter.take("a") == 1
    clock.now += 0.25
    assert limiter.take("a") == 1  # 0.25 of a token: still a (rounded-up) second
    slow = RateLimiter(per_minute=2, burst=1, clock=clock)
    assert slow.take("a") == 0
    assert slow.take("a") == 30


def test_buckets_of_idle_clients_are_dropped_and_memory_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=5, clock=clock, max_clients=100)
    for n in range(100):
        limiter.take(f"client-{n}")
    assert len(limiter) == 100
    for n in range(1000):  # a flood of new addresses never holds more than max_clients
        limiter.take(f"flood-{n}")
        assert len(limiter) <= 100
    clock.now += 5.0  # refilled: the same as no bucket at all
    limiter.take("late")
    assert len(limiter) == 1


def test_a_limit_of_zero_is_off() -> None:
    limiter = RateLimiter(per_minute=0, burst=1)
    assert not limiter.enabled
    assert all(limiter.take("a") == 0 for _ in range(1000))
    assert len(limiter) == 0


# --------------------------------------------------------------------------- tokens


def test_tokens_are_checked_by_hash_and_only_ours_pass() -> None:
    token = new_token()
    assert len(token) >= 43
    tokens = TokenSet([hashlib.sha256(b"other").hexdigest(), f"alice:{token_hash(token)}"])
    assert tokens.enabled
    assert tokens.verify(token) == "alice"
    assert tokens.verify(token + "x") is None
    assert tokens.verify("") is None
    assert tokens.verify("x" * 10_000) is None
    assert not TokenSet([]).enabled
    assert TokenSet([]).verify(token) is None


def test_a_session_holds_only_while_its_token_is_configured_for_its_name() -> None:
    token = new_token()
    digest = token_hash(token)
    assert TokenSet([f"alice:{digest}"]).identify(token) == ("alice", digest)
    assert TokenSet([f"alice:{digest}"]).holds("alice", digest)
    assert not TokenSet([f"alice:{digest}"]).holds("bob", digest)  # renamed: another one
    assert not TokenSet([f"alice:{token_hash(new_token())}"]).holds("alice", digest)  # removed
    assert not TokenSet([]).holds("alice", digest)


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token("") is None


def test_a_bare_hash_is_named_by_its_first_8_hex_digits() -> None:
    token = new_token()
    digest = token_hash(token)
    assert TokenSet([digest]).verify(token) == digest[:8]
    assert parse_entry(f" bob@example.org : {digest.upper()} ") == ("bob@example.org", digest)
    # Two entries may name one principal (a token and its replacement).
    other = new_token()
    rotating = TokenSet([f"carol:{digest}", f"carol:{token_hash(other)}"])
    assert (rotating.verify(token), rotating.verify(other)) == ("carol", "carol")
    for malformed in ("carol:", f"-carol:{digest}", f"car ol:{digest}", f"carol:{digest}0"):
        with pytest.raises(ValueError, match=r"(?i)name"):
            parse_entry(malformed)


def test_the_token_helper_prints_a_token_and_its_entry() -> None:
    made = subprocess.run(
        [sys.executable, "-m", "upload.tokens", "new", "alice"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = dict(line.split(":", 1) for line in made.stdout.splitlines())
    token, entry = lines["token"].strip(), lines["entry"].strip()
    name, digest = entry.split(":")
    assert name == "alice"
    assert hashlib.sha256(token.encode()).hexdigest() == digest
    assert TokenSet([entry]).verify(token) == "alice"
    assert "UPLOAD_API_TOKEN_HASHES" in made.stderr
    hashed = subprocess.run(
        [sys.executable, "-m", "upload.tokens", "hash"],
        input=token + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert hashed.stdout.strip() == digest
    assert Settings.model_validate(
        {**settings().model_dump(), "upload_api_token_hashes": f" {digest.upper()} ,alice:{digest}"}
    ).upload_api_token_hashes == (f"{digest[:8]}:{digest}", f"alice:{digest}")
    nameless = subprocess.run(
        [sys.executable, "-m", "upload.tokens", "new"], capture_output=True, timeout=60
    )
    assert nameless.returncode == 2


def test_a_token_in_place_of_its_hash_is_refused() -> None:
    with pytest.raises(ValidationError, match="SHA256"):
        settings(upload_api_token_hashes="not-a-hash")
    with pytest.raises(ValidationError, match="SHA256"):
        settings(upload_api_token_hashes=f"alice:{new_token()}")


# --------------------------------------------------------------------------- cross-origin


def test_origin_must_name_this_host_and_port() -> None:
    assert same_host("http://upload.test:8000", "upload.test:8000")
    assert same_host("https://upload.test", "upload.test")
    assert same_host("http://[::1]:8000", "[::1]:8000")
    # As Go's check: the scheme is not compared (Host does not say it).
    assert same_host("https://upload.test:8000", "upload.test:8000")
    for origin in (
        "http://evil.test:8000",
        "http://upload.test:8001",
        "http://upload.test",
        "null",
        "",
        "http://upload.test:8000/path",
        "http://upload.test:port",
        "javascript:alert(1)",
    ):
        assert not same_host(origin, "upload.test:8000"), origin


def test_cross_origin_is_judged_as_gos_cross_origin_protection() -> None:
    def problem(headers: dict[str, str], method: str = "POST") -> str | None:
        return cross_origin_problem(request(method, headers=headers))

    # Safe methods always pass, whatever they say.
    for method in ("GET", "HEAD", "OPTIONS"):
        assert (
            problem({"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.test"}, method) is None
        )
    # Sec-Fetch-Site decides when present...
    for site in ("same-origin", "none"):
        assert problem({"Sec-Fetch-Site": site, "Origin": "http://evil.test"}) is None, site
    for site in ("cross-site", "same-site", "anything-else"):
        assert problem({"Sec-Fetch-Site": site, "Origin": "http://upload.test:8000"}), site
    # ...else Origin against Host...
    assert problem({"Origin": "http://upload.test:8000"}) is None
    assert problem({"Origin": "http://evil.test"}) == "cross-origin request refused"
    assert problem({"Origin": "null"}) == "cross-origin request refused"
    # ...and neither header: not a browser, nothing a site could forge.
    assert problem({}) is None
    # A made-up cookie and header pair is nothing: it neither passes nor fails a request.
    forged = {"Cookie": "imagemesh_csrf=" + "c" * 43, "X-CSRF-Token": "c" * 43}
    assert problem({**forged, "Origin": "http://evil.test"}) == "cross-origin request refused"
    assert problem(forged) is None


def test_the_guard_refuses_cross_site_posts_but_not_api_clients() -> None:
    guard = Guard(settings())
    assert refusal(guard, request("POST")) is None  # curl: no Origin, no Sec-Fetch-Site
    assert refusal(guard, request("POST", headers=browser())) is None
    assert refusal(guard, request("POST", headers={"Cookie": "whatever=1"})) is None
    for headers in (
        {"Origin": "http://evil.test"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        browser(origin="http://evil.test"),
    ):
        assert refusal(guard, request("POST", headers=headers)) == (403, "csrf_failed"), headers
    # Safe requests are never refused for it; the pages and the sign-in are no exception.
    assert refusal(guard, request("GET", headers={"Origin": "http://evil.test"})) is None
    for path in ("/", "/signin", "/signout"):
        assert refusal(guard, request("POST", path, headers={"Origin": "http://evil.test"})) == (
            403,
            "csrf_failed",
        ), path


def test_with_tokens_on_every_api_request_needs_a_principal() -> None:
    token = new_token()
    guard = Guard(settings(upload_api_token_hashes=f"alice:{token_hash(token)}"))
    bearer = {"Authorization": f"Bearer {token}"}
    assert refusal(guard, request("POST")) == (401, "unauthorized")
    assert refusal(guard, request("GET", "/api/v1/jobs/x")) == (401, "unauthorized")
    assert refusal(guard, request("POST", headers={"Authorization": "Bearer nope"})) == (
        401,
        "unauthorized",
    )
    assert refusal(guard, request("POST", headers=bearer)) is None
    assert refusal(guard, request("GET", "/api/v1/operations", headers=bearer)) is None
    # A same-origin browser request with a made-up cookie and header pair is no one.
    forged = browser(**{"Sec-Fetch-Site": "same-origin"})
    for method, path in (
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/x/events"),
    ):
        assert refusal(guard, request(method, path, headers=forged)) == (401, "unauthorized")
    # A signed-in session (the middleware read its cookie) is its principal.
    signed_in = request("GET", "/api/v1/jobs/x", headers={"Sec-Fetch-Site": "same-origin"})
    guard.check(signed_in, session="alice")
    assert principal_of(signed_in) == Principal("alice")
    # Open: pages (they send the browser to the sign-in), health, the documents and about.
    for path in (
        "/",
        "/history",
        "/jobs/x",
        "/signin",
        "/api/docs",
        "/healthz",
        "/readyz",
        "/metrics",
        "/static/api.js",
        "/api/v1/openapi.json",
        "/api/v1/asyncapi.json",
        "/api/v1/about",
    ):
        req = request("GET", path)
        assert refusal(guard, req) is None, path
        assert PRINCIPAL not in req, path  # no one: the pages redirect, the API says 401


def test_a_proxy_user_header_counts_only_from_a_trusted_proxy() -> None:
    guard = Guard(
        settings(
            upload_api_token_hashes=token_hash(new_token()),
            upload_trusted_proxies="10.0.0.0/8",
            upload_proxy_user_header="X-Auth-Request-User",
            upload_auditors="carol@example.org",
        )
    )
    user = {"X-Auth-Request-User": "bob@example.org"}
    req = request("GET", "/api/v1/jobs", headers=user, remote="10.1.2.3")
    guard.check(req)
    assert principal_of(req) == Principal("bob@example.org")
    # From anyone else (or forwarded in X-Forwarded-For by a trusted proxy), ignored.
    for remote, headers in (
        ("192.0.2.10", user),
        ("192.0.2.10", {**user, "X-Forwarded-For": "10.1.2.3"}),
    ):
        assert refusal(guard, request("GET", "/api/v1/jobs", headers=headers, remote=remote)) == (
            401,
            "unauthorized",
        )
    # A name that is not a principal's is no one; an auditor is marked as one.
    bad = request("GET", "/api/v1/jobs", headers={"X-Auth-Request-User": "a b"}, remote="10.0.0.1")
    assert refusal(guard, bad) == (401, "unauthorized")
    audit = request(
        "GET",
        "/api/v1/jobs",
        headers={"X-Auth-Request-User": "carol@example.org"},
        remote="10.0.0.1",
    )
    guard.check(audit)
    assert principal_of(audit) == Principal("carol@example.org", auditor=True)
    # Proxy users alone (no tokens) also switch principals on.
    proxied_only = Guard(
        settings(
            upload_trusted_proxies="10.0.0.0/8", upload_proxy_user_header="X-Auth-Request-User"
        )
    )
    assert refusal(proxied_only, request("GET", "/api/v1/jobs")) == (401, "unauthorized")


def test_settings_refuse_bad_auditors_headers_and_a_missing_session_secret() -> None:
    with pytest.raises(ValidationError, match="principal names"):
        settings(upload_auditors="alice, not one")
    with pytest.raises(ValidationError, match="header name"):
        settings(upload_proxy_user_header="X-User: admin")
    with pytest.raises(ValidationError, match="required with UPLOAD_API_TOKEN_HASHES"):
        settings(upload_api_token_hashes=token_hash(new_token()), upload_session_secret=None)
    with pytest.raises(ValidationError, match="at least 16"):
        settings(upload_session_secret="short")
    assert settings(upload_auditors=" alice , bob@example.org").upload_auditors == (
        "alice",
        "bob@example.org",
    )


def test_a_wrong_token_says_so_in_its_challenge() -> None:
    guard = Guard(settings(upload_api_token_hashes=token_hash(new_token())))
    with pytest.raises(ApiError) as refused:
        guard.check(request("GET", "/api/v1/jobs", headers={"Authorization": "Bearer wrong"}))
    assert refused.value.headers == {
        "WWW-Authenticate": 'Bearer realm="imagemesh", error="invalid_token"'
    }
    with pytest.raises(ApiError) as missing:
        guard.check(request("GET", "/api/v1/jobs"))
    assert missing.value.headers == {"WWW-Authenticate": 'Bearer realm="imagemesh"'}


# --------------------------------------------------------------------------- clients


def test_forwarded_headers_count_only_from_a_trusted_proxy() -> None:
    spoofed = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    untrusted = Guard(settings())
    assert untrusted.peer(request(headers=spoofed, remote="192.0.2.10")) == Peer(
        "192.0.2.10", "http"
    )
    trusted = Guard(settings(upload_trusted_proxies="10.0.0.0/8, 192.0.2.10"))
    assert trusted.peer(request(headers=spoofed, remote="192.0.2.10")) == Peer(
        "203.0.113.7", "https"
    )
    # What a client writes itself is left of the hop our proxies saw: ignored.
    chain = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.1.2.3"}
    assert trusted.peer(request(headers=chain, remote="192.0.2.10")).address == "203.0.113.7"
    assert trusted.peer(request(remote="192.0.2.10")).address == "192.0.2.10"
    assert trusted.peer(request(headers=spoofed, remote="192.0.2.99")).address == "192.0.2.99"


def test_rate_keys_are_the_valid_token_else_the_address_by_ipv6_64() -> None:
    token = new_token()
    guard = Guard(
        settings(
            upload_api_token_hashes=token_hash(token),
            upload_rate_limit_per_minute=60,
            upload_rate_limit_burst=1,
        )
    )
    post = {"Authorization": f"Bearer {token}"}
    assert refusal(guard, request("POST", headers=post)) is None
    assert refusal(guard, request("POST", headers=post)) == (429, "rate_limited")
    # The same address without the token is another client; so is another token.
    assert refusal(guard, request("POST")) == (401, "unauthorized")
    assert refusal(guard, request("POST")) == (429, "rate_limited")
    # Made-up tokens do not escape the address's bucket.
    assert refusal(guard, request("POST", headers={"Authorization": "Bearer made-up"})) == (
        429,
        "rate_limited",
    )
    # One IPv6 /64 is one client.
    assert refusal(guard, request("POST", headers=post, remote="2001:db8::1")) == (
        429,
        "rate_limited",
    )
    v6 = Guard(settings(upload_rate_limit_per_minute=60, upload_rate_limit_burst=1))
    assert refusal(v6, request("POST", remote="2001:db8:0:1::1")) is None
    assert refusal(v6, request("POST", remote="2001:db8:0:1::2")) == (429, "rate_limited")
    assert refusal(v6, request("POST", remote="2001:db8:0:2::1")) is None


def test_jobs_and_other_api_requests_have_separate_buckets() -> None:
    guard = Guard(
        settings(
            upload_rate_limit_per_minute=60,
            upload_rate_limit_burst=1,
            upload_api_rate_limit_per_minute=60,
            upload_api_rate_limit_burst=2,
        )
    )
    assert refusal(guard, request("POST")) is None
    assert refusal(guard, request("POST")) == (429, "rate_limited")
    assert refusal(guard, request("GET", "/api/v1/jobs")) is None
    assert refusal(guard, request("GET", "/api/v1/operations")) is None
    assert refusal(guard, request("GET", "/api/v1/operations")) == (429, "rate_limited")
    for path in ("/", "/healthz", "/static/api.js", "/api/docs"):  # not limited
        assert refusal(guard, request("GET", path)) is None
    with pytest.raises(ApiError) as limited:
        guard.check(request("GET", "/api/v1/jobs"))
    assert limited.value.retry_after == 1
    assert limited.value.response().headers["Retry-After"] == "1"


def test_a_retry_makes_a_job_and_spends_the_jobs_bucket() -> None:
    guard = Guard(settings(upload_rate_limit_per_minute=60, upload_rate_limit_burst=1))
    retry = "/api/v1/jobs/0b1d2e3f-4a5b-4c6d-8e7f-a0b1c2d3e4f5/retry"
    assert refusal(guard, request("POST", retry)) is None
    assert refusal(guard, request("POST")) == (429, "rate_limited")  # submissions share it
    assert refusal(guard, request("POST", retry)) == (429, "rate_limited")
    cancel = "/api/v1/jobs/0b1d2e3f-4a5b-4c6d-8e7f-a0b1c2d3e4f5/cancel"
    assert refusal(guard, request("POST", cancel)) is None  # makes no job: the API's bucket
    assert refusal(guard, request("GET", retry)) is None


def test_forged_requests_do_not_spend_their_victims_budget() -> None:
    guard = Guard(settings(upload_rate_limit_per_minute=60, upload_rate_limit_burst=1))
    forged = {"Origin": "http://evil.test", "Sec-Fetch-Site": "cross-site"}
    for _ in range(5):
        assert refusal(guard, request("POST", headers=forged)) == (403, "csrf_failed")
    assert refusal(guard, request("POST", headers=browser())) is None


def test_the_peer_is_noted_for_the_handlers() -> None:
    guard = Guard(settings())
    req = request()
    guard.check(req)
    assert req[PEER] == Peer("192.0.2.10", "http")


def test_the_principal_is_the_tokens_name_else_local() -> None:
    token = new_token()
    req = request()
    Guard(settings()).check(req)
    assert principal_of(req) == Principal("local")
    guard = Guard(settings(upload_api_token_hashes=f"alice:{token_hash(token)}"))
    req = request("POST", headers={"Authorization": f"Bearer {token}"})
    guard.check(req)
    assert principal_of(req) == Principal("alice")
    assert principal_of(req).may_read("alice")
    assert not principal_of(req).may_read("bob")
    assert Principal("eve", auditor=True).may_read("bob")


# --------------------------------------------------------------------------- OpenAPI


@pytest.mark.parametrize("tokens_required", [False, True])
def test_the_openapi_document_declares_the_bearer_scheme_and_the_guards_answers(
    tokens_required: bool,
) -> None:
    document = openapi_document(
        create_app(settings()), version="0.0.0-test", tokens_required=tokens_required
    )
    validate(document)
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    expected: list[dict[str, list[str]]] = (
        [{"bearerAuth": []}, {"sessionCookie": []}]
        if tokens_required
        else [{"bearerAuth": []}, {"sessionCookie": []}, {}]
    )
    submit = document["paths"]["/api/v1/jobs"]["post"]
    assert submit["security"] == expected
    assert {"401", "403", "429"} <= set(submit["responses"])
    status = document["paths"]["/api/v1/jobs/{job_id}"]["get"]
    assert status["security"] == expected
    assert {"401", "429"} <= set(status["responses"])
    assert "403" not in status["responses"]  # safe methods are never refused for CSRF
    about = document["paths"]["/api/v1/about"]["get"]
    assert "security" not in about
    assert "401" not in about["responses"]
