"""Principals against a real mesh: an upload replica with three named API tokens (two
users and an auditor). Every job belongs to whoever submitted it; another principal gets
404 for all of it and sees none of it in its history or lineage; the auditor reads
everything and alone sees who uploaded (address, user agent); provenance names the
principal. The web app signs in with a token and holds an encrypted session cookie."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import pytest
from prov.model import ProvDocument, ProvWarning

from tests.conftest import Mesh
from tests.e2e.helpers import photo, wait_finished
from tests.security.conftest import upload_replica
from tests.waiting import async_wait_for
from upload.session import SESSION_COOKIE
from upload.tokens import new_token, token_hash

pytestmark = pytest.mark.e2e

_RUN = uuid.uuid4().hex[:8]
ALICE, BOB, CAROL = f"alice-{_RUN}", f"bob-{_RUN}@example.org", f"carol-{_RUN}"
"""Two users and an auditor, named afresh for each run (the database is the session's)."""
BOB_TOKEN, CAROL_TOKEN = new_token(), new_token()
USER_AGENT = f"principals-test/{_RUN}"


@dataclass
class Guarded:
    mesh: Mesh
    alice_token: str

    @property
    def url(self) -> str:
        return self.mesh.upload_url


def made_with_the_helper(name: str) -> tuple[str, str]:
    """`python -m upload.tokens new NAME`: (token, entry), as an operator gets them."""
    made = subprocess.run(
        [sys.executable, "-m", "upload.tokens", "new", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = dict(line.split(":", 1) for line in made.stdout.splitlines())
    return lines["token"].strip(), lines["entry"].strip()


@pytest.fixture(scope="module")
def guarded(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    alice_token, alice_entry = made_with_the_helper(ALICE)
    entries = [alice_entry, f"{BOB}:{token_hash(BOB_TOKEN)}", f"{CAROL}:{token_hash(CAROL_TOKEN)}"]
    with upload_replica(
        mesh,
        tmp_path_factory.mktemp("upload-principals"),
        UPLOAD_API_TOKEN_HASHES=",".join(entries),
        UPLOAD_AUDITORS=CAROL,
        UPLOAD_SESSION_SECRET=f"principals-test-secret-{_RUN}",
    ) as replica:
        yield Guarded(replica, alice_token)


def client(token: str | None) -> aiohttp.ClientSession:
    headers = {"User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers=headers,
    )


@pytest.fixture
async def alice(guarded: Guarded) -> AsyncIterator[aiohttp.ClientSession]:
    async with client(guarded.alice_token) as session:
        yield session


@pytest.fixture
async def bob() -> AsyncIterator[aiohttp.ClientSession]:
    async with client(BOB_TOKEN) as session:
        yield session


@pytest.fixture
async def carol() -> AsyncIterator[aiohttp.ClientSession]:
    async with client(CAROL_TOKEN) as session:
        yield session


def form(data: bytes) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("pipeline", json.dumps([{"op": "grayscale"}]))
    body.add_field("file", data, filename="mine.jpg", content_type="image/jpeg")
    return body


_jobs: dict[str, dict[str, Any]] = {}


async def alices_job(guarded: Guarded, alice: aiohttp.ClientSession) -> dict[str, Any]:
    """One finished job of Alice's, submitted once for the module."""
    if "alice" not in _jobs:
        async with alice.post(f"{guarded.url}/api/v1/jobs", data=form(photo(64, 48))) as made:
            assert made.status == 202, await made.text()
            job_id = (await made.json())["id"]
        _jobs["alice"] = await wait_finished(alice, guarded.url, job_id)
    return _jobs["alice"]


JOB_PARTS = ("", "/result", "/input", "/events", "/provenance")


async def test_the_token_helpers_entry_names_the_principal(
    guarded: Guarded, alice: aiohttp.ClientSession, carol: aiohttp.ClientSession
) -> None:
    async with alice.get(f"{guarded.url}/api/v1/me") as answer:
        assert answer.status == 200
        assert await answer.json() == {"principal": ALICE, "auditor": False, "sign_in": True}
    async with carol.get(f"{guarded.url}/api/v1/me") as answer:
        assert (await answer.json())["auditor"] is True
    job = await alices_job(guarded, alice)
    assert job["status"] == "succeeded"
    assert job["owner"] == ALICE


async def test_another_principal_gets_404_for_every_part_of_a_job(
    guarded: Guarded,
    alice: aiohttp.ClientSession,
    bob: aiohttp.ClientSession,
    carol: aiohttp.ClientSession,
) -> None:
    job = await alices_job(guarded, alice)
    unknown = f"{guarded.url}/api/v1/jobs/{uuid.uuid4()}"
    async with bob.get(unknown) as answer:
        assert answer.status == 404
        not_found = (await answer.json())["error"]["code"]
    for part in JOB_PARTS:
        url = f"{guarded.url}/api/v1/jobs/{job['id']}{part}"
        async with bob.get(url) as answer:
            # Exactly what a job that does not exist gets: nothing says it does.
            assert answer.status == 404, (part, await answer.text())
            assert (await answer.json())["error"]["code"] == not_found
        for reader in (alice, carol):
            async with reader.get(url) as answer:
                assert answer.status == 200, (part, await answer.text())
                await answer.read()


async def test_history_lists_only_ones_own_jobs_and_an_auditor_sees_all(
    guarded: Guarded,
    alice: aiohttp.ClientSession,
    bob: aiohttp.ClientSession,
    carol: aiohttp.ClientSession,
) -> None:
    job = await alices_job(guarded, alice)
    pages = {}
    for name, reader in (("alice", alice), ("bob", bob), ("carol", carol)):
        async with reader.get(f"{guarded.url}/api/v1/jobs?limit=100") as answer:
            assert answer.status == 200, await answer.text()
            pages[name] = (await answer.json())["jobs"]
    assert job["id"] in {j["id"] for j in pages["alice"]}
    assert {j["owner"] for j in pages["alice"]} == {ALICE}
    assert pages["bob"] == []  # Bob never submitted anything
    assert job["id"] in {j["id"] for j in pages["carol"]}


async def test_lineage_answers_only_through_ones_own_jobs(
    guarded: Guarded,
    alice: aiohttp.ClientSession,
    bob: aiohttp.ClientSession,
    carol: aiohttp.ClientSession,
) -> None:
    job = await alices_job(guarded, alice)
    url = f"{guarded.url}/api/v1/images/{job['input']['sha256']}/lineage"
    async with bob.get(url) as answer:
        assert answer.status == 404, await answer.text()
    for reader in (alice, carol):
        async with reader.get(url) as answer:
            assert answer.status == 200, await answer.text()
            assert job["id"] in (await answer.json())["used_by"]


def client_agents(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        agent
        for agent in document.get("agent", {}).values()
        if agent.get("prov:type", {}).get("$") == "imagemesh:Client"
    ]


async def test_only_auditors_see_the_uploaders_address_and_user_agent(
    guarded: Guarded, alice: aiohttp.ClientSession, carol: aiohttp.ClientSession
) -> None:
    job = await alices_job(guarded, alice)
    url = f"{guarded.url}/api/v1/jobs/{job['id']}/provenance"
    async with alice.get(url) as answer:
        owners = await answer.json()
    assert client_agents(owners) == []
    assert USER_AGENT not in json.dumps(owners)
    assert "127.0.0.1" not in json.dumps(owners)
    valid_prov(owners)
    async with carol.get(url) as answer:
        audited = await answer.json()
    (uploader,) = client_agents(audited)
    assert uploader["imagemesh:address"] == "127.0.0.1"
    assert uploader["imagemesh:user_agent"] == USER_AGENT
    valid_prov(audited)
    # The status never carries them, for anyone.
    async with carol.get(f"{guarded.url}/api/v1/jobs/{job['id']}") as answer:
        assert USER_AGENT not in await answer.text()


def valid_prov(document: dict[str, Any]) -> ProvDocument:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProvWarning)
        return ProvDocument.deserialize(content=json.dumps(document), format="json")


async def test_provenance_says_the_upload_acted_on_behalf_of_the_principal(
    guarded: Guarded, alice: aiohttp.ClientSession
) -> None:
    job = await alices_job(guarded, alice)
    async with alice.get(f"{guarded.url}/api/v1/jobs/{job['id']}/provenance") as answer:
        document = await answer.json()
    principal = f"imagemesh:principal/{ALICE}"
    assert document["agent"][principal]["prov:label"] == ALICE
    delegations = list(document["actedOnBehalfOf"].values())
    assert delegations
    for delegation in delegations:
        assert delegation["prov:responsible"] == principal
        assert delegation["prov:delegate"].startswith("imagemesh:agent/upload/")
        assert delegation["prov:activity"] in document["activity"]
    parsed = valid_prov(document)
    assert any(type(r).__name__ == "ProvDelegation" for r in parsed.get_records())


async def test_a_made_up_cookie_and_header_pair_is_no_credential(guarded: Guarded) -> None:
    """The double-submit bypass: the cookie and header pair is the client's choice, so it
    proves nothing; without a token (or a sign-in) the API answers 401."""
    forged = {
        "Cookie": "imagemesh_csrf=" + "c" * 43,
        "X-CSRF-Token": "c" * 43,
        "Origin": guarded.url,
        "Sec-Fetch-Site": "same-origin",
    }
    async with client(None) as anyone:
        for method, path in (
            ("GET", "/api/v1/jobs"),
            ("POST", "/api/v1/jobs"),
            ("GET", f"/api/v1/jobs/{uuid.uuid4()}/events"),
        ):
            data = form(photo(40, 30)) if method == "POST" else None
            async with anyone.request(
                method, f"{guarded.url}{path}", headers=forged, data=data
            ) as answer:
                assert answer.status == 401, (method, path, await answer.text())


async def test_a_script_with_a_token_that_fetched_the_home_page_first_may_post(
    guarded: Guarded,
) -> None:
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60),
        headers={"Authorization": f"Bearer {BOB_TOKEN}"},
    ) as script:
        async with script.get(f"{guarded.url}/") as page:
            assert page.status == 200
        async with script.post(f"{guarded.url}/api/v1/jobs", data=form(photo(40, 30))) as made:
            assert made.status == 202, await made.text()
            job_id = (await made.json())["id"]
        assert (await wait_finished(script, guarded.url, job_id))["owner"] == BOB


# --------------------------------------------------------------------------- sign-in


def set_cookies(response: aiohttp.ClientResponse) -> SimpleCookie:
    cookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", ()):
        cookie.load(header)
    return cookie


async def test_pages_send_a_browser_without_a_session_to_the_sign_in(guarded: Guarded) -> None:
    async with client(None) as anyone:
        for path in ("/", "/history", f"/jobs/{uuid.uuid4()}"):
            async with anyone.get(f"{guarded.url}{path}", allow_redirects=False) as page:
                assert page.status == 303, path
                assert page.headers["Location"] == f"/signin?next={path}"
        async with anyone.get(f"{guarded.url}/signin") as page:
            assert page.status == 200
            assert 'action="/signin"' in await page.text()


async def test_signing_in_gives_an_encrypted_httponly_session_and_signing_out_ends_it(
    guarded: Guarded,
) -> None:
    same_origin = {"Origin": guarded.url, "Sec-Fetch-Site": "same-origin"}
    async with client(None) as browser:
        # A wrong token: back to the form, saying so, and no session.
        async with browser.post(
            f"{guarded.url}/signin",
            data={"token": "not-a-token", "next": "/history"},
            headers=same_origin,
            allow_redirects=False,
        ) as refused:
            assert refused.status == 303
            assert refused.headers["Location"].startswith("/signin?failed=1")
            assert SESSION_COOKIE not in set_cookies(refused)
        # From another site: refused before the token is even looked at.
        async with browser.post(
            f"{guarded.url}/signin",
            data={"token": BOB_TOKEN},
            headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
            allow_redirects=False,
        ) as forged:
            assert forged.status == 403
            assert SESSION_COOKIE not in set_cookies(forged)
        async with browser.post(
            f"{guarded.url}/signin",
            data={"token": BOB_TOKEN, "next": "//evil.example/"},  # not a path of ours
            headers=same_origin,
            allow_redirects=False,
        ) as signed:
            assert signed.status == 303
            assert signed.headers["Location"] == "/"
            morsel = set_cookies(signed)[SESSION_COOKIE]
        assert morsel["httponly"]
        assert morsel["samesite"] == "Lax"
        assert morsel["path"] == "/"
        assert not morsel["secure"]  # plain http here; see the TLS proxy test
        assert BOB_TOKEN not in morsel.value
        assert token_hash(BOB_TOKEN) not in morsel.value
        session = {"Cookie": f"{SESSION_COOKIE}={morsel.value}"}
        async with browser.get(f"{guarded.url}/api/v1/me", headers=session) as me:
            assert (await me.json())["principal"] == BOB
        async with browser.get(f"{guarded.url}/", headers=session, allow_redirects=False) as page:
            assert page.status == 200
        # A tampered cookie is no one.
        tampered = morsel.value[:-4] + ("AAAA" if not morsel.value.endswith("AAAA") else "BBBB")
        async with browser.get(
            f"{guarded.url}/api/v1/me", headers={"Cookie": f"{SESSION_COOKIE}={tampered}"}
        ) as me:
            assert me.status == 401
        async with browser.post(
            f"{guarded.url}/signout",
            headers={**session, **same_origin},
            allow_redirects=False,
        ) as out:
            assert out.status == 303
            assert out.headers["Location"] == "/signin"
            cleared = set_cookies(out)[SESSION_COOKIE]
            assert cleared.value == ""
            assert cleared["max-age"] == "0" or "1970" in cleared["expires"]


async def test_behind_a_trusted_tls_proxy_the_session_cookie_is_secure(
    mesh: Mesh, tmp_path_factory: pytest.TempPathFactory
) -> None:
    token = new_token()
    with upload_replica(
        mesh,
        tmp_path_factory.mktemp("upload-principals-tls"),
        UPLOAD_API_TOKEN_HASHES=f"{ALICE}:{token_hash(token)}",
        UPLOAD_SESSION_SECRET=f"principals-test-secret-{_RUN}",
        UPLOAD_TRUSTED_PROXIES="127.0.0.1",
    ) as proxied:
        host = proxied.upload_url.removeprefix("http://")
        async with (
            client(None) as browser,
            browser.post(
                f"{proxied.upload_url}/signin",
                data={"token": token},
                headers={"X-Forwarded-Proto": "https", "Origin": f"https://{host}"},
                allow_redirects=False,
            ) as signed,
        ):
            assert signed.status == 303
            assert set_cookies(signed)[SESSION_COOKIE]["secure"]


async def test_behind_an_authenticating_proxy_its_user_header_names_the_principal(
    mesh: Mesh, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """oauth2-proxy style: the proxy (a trusted peer) says who signed in; the same header
    from anyone else is ignored (here: the same replica, once it no longer trusts us)."""
    user = f"dora-{_RUN}@example.org"
    settings = {
        "UPLOAD_API_TOKEN_HASHES": f"{ALICE}:{token_hash(new_token())}",
        "UPLOAD_SESSION_SECRET": f"principals-test-secret-{_RUN}",
        "UPLOAD_PROXY_USER_HEADER": "X-Auth-Request-User",
    }
    header = {"X-Auth-Request-User": user}
    logs = tmp_path_factory.mktemp("upload-principals-proxy")
    with upload_replica(mesh, logs, UPLOAD_TRUSTED_PROXIES="127.0.0.1", **settings) as proxied:
        async with client(None) as via_proxy:
            async with via_proxy.get(f"{proxied.upload_url}/api/v1/me", headers=header) as me:
                assert me.status == 200
                assert (await me.json())["principal"] == user
            async with via_proxy.post(
                f"{proxied.upload_url}/api/v1/jobs", data=form(photo(40, 30)), headers=header
            ) as made:
                assert made.status == 202, await made.text()
                job_id = (await made.json())["id"]
            async with via_proxy.get(
                f"{proxied.upload_url}/api/v1/jobs/{job_id}", headers=header
            ) as job:
                assert (await job.json())["owner"] == user
    with upload_replica(mesh, logs, UPLOAD_TRUSTED_PROXIES="192.0.2.1", **settings) as direct:
        async with (
            client(None) as anyone,
            anyone.get(f"{direct.upload_url}/api/v1/me", headers=header) as me,
        ):
            assert me.status == 401


SLOW_PIPELINE = json.dumps(
    [{"op": "blur", "sigma": 40}, {"op": "dither", "method": "floyd-steinberg"}]
    + [{"op": "blur", "sigma": 40}] * 2
)
"""Seconds of work on a large photo: its progress stream stays open meanwhile."""


async def first_status(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The data of a progress stream's first `status` event."""
    named = False
    while line := await response.content.readline():
        if line == b"event: status\n":
            named = True
        elif named and line.startswith(b"data: "):
            status: dict[str, Any] = json.loads(line.removeprefix(b"data: "))
            return status
    raise AssertionError("the stream ended before its first status")


async def test_progress_streams_beyond_a_principals_cap_are_429_until_one_ends(
    mesh: Mesh, tmp_path_factory: pytest.TempPathFactory
) -> None:
    token = new_token()
    with upload_replica(
        mesh,
        tmp_path_factory.mktemp("upload-principals-streams"),
        UPLOAD_API_TOKEN_HASHES=f"{ALICE}:{token_hash(token)}",
        UPLOAD_SESSION_SECRET=f"principals-test-secret-{_RUN}",
        UPLOAD_MAX_STREAMS_PER_PRINCIPAL="1",
    ) as capped:
        async with client(token) as alice:
            body = aiohttp.FormData()
            body.add_field("pipeline", SLOW_PIPELINE)
            body.add_field("file", photo(2400, 1600), filename="big.jpg")
            async with alice.post(f"{capped.upload_url}/api/v1/jobs", data=body) as made:
                assert made.status == 202, await made.text()
                job_id = (await made.json())["id"]
            events = f"{capped.upload_url}/api/v1/jobs/{job_id}/events"
            first = await alice.get(events)
            assert first.status == 200
            assert (await first_status(first))["status"] in {"queued", "processing"}
            async with alice.get(events) as refused:
                assert refused.status == 429
                assert (await refused.json())["error"]["code"] == "too_many_streams"
                assert int(refused.headers["Retry-After"]) > 0
            first.close()  # the client leaves: its slot is free again within a second

            async def reopened() -> bool:
                async with alice.get(events) as again:
                    return again.status == 200

            await async_wait_for(reopened, timeout=15)
            await wait_finished(alice, capped.upload_url, job_id, timeout=120)
