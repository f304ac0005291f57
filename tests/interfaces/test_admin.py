"""The admin API on a real aiohttp server on loopback: add, change, break, fix, roll back and retire a partner."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from gateway.clock import FixedClock
from gateway.interfaces import admin
from gateway.interfaces.keys import ADMIN_NAMED, ADMIN_TOKEN, PROFILE_EDITOR, PROFILE_WATCHER
from gateway.profiles import DevPki, generate_dev_pki
from gateway.profiles.editor import ProfileEditor
from gateway.profiles.history import sha256_text
from gateway.profiles.trust import Partners
from gateway.profiles.watcher import ProfileWatcher
from tests.profiles.conftest import AUTHORITIES, NOW
from tests.profiles.helpers import default_structlog, profile_text

TOKEN = "s3cret-admin-token-for-tests"
ALICE = "alices-own-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
URL = "/api/v1/admin/profiles"
CH = profile_text("ch-swissmedic", "ch-swissmedic.crt.pem")
BE = profile_text("be-famhp", "be-famhp.crt.pem", country="BE")
DE = profile_text("de-bfarm", "de-bfarm.crt.pem", country="DE")


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    yield from default_structlog()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return generate_dev_pki(tmp_path_factory.mktemp("pki"), AUTHORITIES, now=NOW)


@dataclass
class Admin:
    client: TestClient[web.Request, web.Application]
    folder: Path
    clock: FixedClock
    watcher: ProfileWatcher
    swapped: list[Partners]

    async def etag(self, profile_id: str) -> str:
        async with self.client.get(f"{URL}/{profile_id}", headers=AUTH) as response:
            assert response.status == 200
            return response.headers["ETag"]


def admin_app(editor: ProfileEditor, watcher: ProfileWatcher, token: str | None) -> web.Application:
    app = web.Application()
    app[PROFILE_EDITOR] = editor
    app[PROFILE_WATCHER] = watcher
    app[ADMIN_TOKEN] = SecretStr(token) if token else None
    app[ADMIN_NAMED] = {hashlib.sha256(ALICE.encode()).hexdigest(): "alice"} if token else {}
    app.router.add_routes(admin.routes)
    return app


@pytest.fixture
async def api(tmp_path: Path, pki: DevPki) -> AsyncIterator[Admin]:
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "ch-swissmedic.yaml").write_text(CH)
    (folder / "be-famhp.yaml").write_text(BE)
    clock = FixedClock(NOW)
    swapped: list[Partners] = []
    watcher = ProfileWatcher(folder, certificates_dir=pki.folder, clock=clock, on_reload=swapped.append)
    editor = ProfileEditor(
        folder,
        certificates_dir=pki.folder,
        data_dir=tmp_path / "data",
        clock=clock,
        on_change=watcher.reload,
        kept=watcher.last_accepted,  # as the node wires them
    )
    async with TestClient(TestServer(admin_app(editor, watcher, TOKEN), host="127.0.0.1")) as client:
        yield Admin(client, folder, clock, watcher, swapped)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}],
)
async def test_every_route_needs_the_token(api: Admin, headers: dict[str, str]) -> None:
    for method, path in [
        ("GET", URL),
        ("GET", f"{URL}/ch-swissmedic"),
        ("PUT", f"{URL}/ch-swissmedic"),
        ("PATCH", f"{URL}/ch-swissmedic"),
        ("DELETE", f"{URL}/ch-swissmedic"),
        ("GET", f"{URL}/ch-swissmedic/history"),
        ("POST", f"{URL}/ch-swissmedic/rollback"),
        ("GET", "/api/v1/admin/audit"),
    ]:
        async with api.client.request(method, path, headers=headers) as response:
            assert response.status == 401, (method, path)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (api.folder / "ch-swissmedic.yaml").read_text() == CH


async def test_admin_api_is_off_without_a_token(tmp_path: Path, pki: DevPki) -> None:
    (tmp_path / "ch.yaml").write_text(CH)
    clock = FixedClock(NOW)
    watcher = ProfileWatcher(tmp_path, certificates_dir=pki.folder, clock=clock, on_reload=print)
    editor = ProfileEditor(tmp_path, certificates_dir=pki.folder, data_dir=tmp_path / "d", clock=clock)
    async with TestClient(TestServer(admin_app(editor, watcher, None), host="127.0.0.1")) as client:
        response = await client.get(URL, headers=AUTH)
        assert response.status == 403
        assert "admin API is off" in (await response.json())["error"]


async def test_list_and_get(api: Admin) -> None:
    async with api.client.get(URL, headers=AUTH) as response:
        body = await response.json()
    assert [(p["id"], p["active"], p["party_id"]) for p in body["profiles"]] == [
        ("be-famhp", True, "BE-FAMHP"),
        ("ch-swissmedic", True, "CH-SWISSMEDIC"),
    ]
    assert body["retired"] == [] and body["last_refusal"] is None

    async with api.client.get(f"{URL}/ch-swissmedic", headers=AUTH) as response:
        assert response.headers["ETag"] == f'"{sha256_text(CH)}"'
        assert response.content_type == "application/yaml"
        assert await response.text() == CH
    async with api.client.get(f"{URL}/de-bfarm", headers=AUTH) as response:
        assert response.status == 404


async def test_put_needs_a_precondition_and_a_fresh_etag(api: Admin) -> None:
    changed = CH.replace("Authority ch-swissmedic", "Swissmedic")

    async with api.client.put(f"{URL}/ch-swissmedic", data=changed, headers=AUTH) as response:
        assert response.status == 428
        assert "If-Match" in (await response.json())["error"]
    async with api.client.put(
        f"{URL}/ch-swissmedic", data=changed, headers=AUTH | {"If-Match": '"0000"'}
    ) as response:
        assert response.status == 412
        assert "changed since it was read" in (await response.json())["error"]
    assert (api.folder / "ch-swissmedic.yaml").read_text() == CH


async def test_change_takes_effect_at_once(api: Admin) -> None:
    changed = CH.replace("https://as4.ch-swissmedic.example/as4", "https://moved.example/as4")
    etag = await api.etag("ch-swissmedic")

    async with api.client.put(
        f"{URL}/ch-swissmedic", data=changed, headers=AUTH | {"If-Match": etag, "X-Admin-Actor": "bob"}
    ) as response:
        assert response.status == 200
        body = await response.json()

    assert response.headers["ETag"] == f'"{sha256_text(changed)}"'
    assert body["version"] == 2 and body["active"] is True and body["warnings"] == []
    assert api.watcher.partners.get("ch-swissmedic").profile.endpoint == "https://moved.example/as4"
    assert api.swapped[-1] is api.watcher.partners
    async with api.client.get("/api/v1/admin/audit?profile=ch-swissmedic", headers=AUTH) as response:
        [entry] = (await response.json())["entries"]
    assert entry["actor"] == "bob (shared token)@127.0.0.1" and entry["action"] == "put"
    assert "+endpoint: https://moved.example/as4" in entry["diff"]


async def test_an_administrators_own_token_names_them_in_the_audit_whatever_the_header_says(api: Admin) -> None:
    """With [admin].tokens_file each administrator has a token of their own: the audit names who made a change,
    and X-Admin-Actor (which anyone holding the shared token can set) no longer decides it."""
    own = {"Authorization": f"Bearer {ALICE}"}
    etag = await api.etag("ch-swissmedic")
    async with api.client.patch(
        f"{URL}/ch-swissmedic",
        json={"compression": False},
        headers=own | {"If-Match": etag, "X-Admin-Actor": "mallory"},
    ) as response:
        assert response.status == 200
    async with api.client.get("/api/v1/admin/audit?profile=ch-swissmedic", headers=own) as response:
        [entry] = (await response.json())["entries"]
    assert entry["actor"] == "alice@127.0.0.1"


async def test_breaking_change_is_refused_with_file_line_column(api: Admin) -> None:
    broken = CH.replace("country: CH", "country: Schweiz").replace("party_id: CH-SWISSMEDIC\n", "")
    etag = await api.etag("ch-swissmedic")

    async with api.client.put(f"{URL}/ch-swissmedic", data=broken, headers=AUTH | {"If-Match": etag}) as response:
        assert response.status == 422
        body = await response.json()

    path = api.folder / "ch-swissmedic.yaml"
    assert body["error"] == "the profile is invalid; nothing was changed"
    assert body["errors"] == [
        "in the edited ch-swissmedic.yaml (not saved), line 2 column 1 party_id: required key is missing",
        "in the edited ch-swissmedic.yaml (not saved), line 4 column 1 country: got 'Schweiz', expected an ISO 3166-1 "
        "alpha-2 country code",
    ]
    assert path.read_text() == CH
    assert api.swapped == []


async def test_create_with_if_none_match(api: Admin) -> None:
    async with api.client.put(f"{URL}/de-bfarm", data=DE, headers=AUTH | {"If-None-Match": "*"}) as response:
        assert response.status == 201
    assert "de-bfarm" in api.watcher.partners.registry
    async with api.client.put(f"{URL}/de-bfarm", data=DE, headers=AUTH | {"If-None-Match": "*"}) as response:
        assert response.status == 412


async def test_merge_patch_keeps_comments(api: Admin) -> None:
    etag = await api.etag("ch-swissmedic")

    async with api.client.patch(
        f"{URL}/ch-swissmedic",
        json={"enabled": False, "reception_awareness": {"retries": 2}},
        headers=AUTH | {"If-Match": etag},
    ) as response:
        assert response.status == 200
        body = await response.json()

    text = (api.folder / "ch-swissmedic.yaml").read_text()
    assert text.startswith("# ch-swissmedic: a partner of the tests\n")
    assert "  # the partner's certificate\n" in text
    assert text.endswith("enabled: false\nreception_awareness:\n  retries: 2\n")
    assert "partner 'ch-swissmedic' is disabled" in body["warnings"][0]
    assert not api.watcher.partners.get("ch-swissmedic").profile.enabled


async def test_post_is_a_merge_too_and_bad_json_is_400(api: Admin) -> None:
    etag = await api.etag("ch-swissmedic")
    async with api.client.post(f"{URL}/ch-swissmedic", data="[1]", headers=AUTH | {"If-Match": etag}) as response:
        assert response.status == 400
    async with api.client.post(f"{URL}/ch-swissmedic", data="{", headers=AUTH | {"If-Match": etag}) as response:
        assert response.status == 400
    async with api.client.post(
        f"{URL}/ch-swissmedic", json={"compression": "sometimes"}, headers=AUTH | {"If-Match": etag}
    ) as response:
        assert response.status == 422
        [error] = (await response.json())["errors"]
    assert error.endswith("compression: got 'sometimes', expected true or false")


async def test_retire_history_and_rollback(api: Admin) -> None:
    etag = await api.etag("ch-swissmedic")

    async with api.client.delete(f"{URL}/ch-swissmedic", headers=AUTH | {"If-Match": etag}) as response:
        assert response.status == 200
    assert "ch-swissmedic" not in api.watcher.partners.registry
    async with api.client.get(URL, headers=AUTH) as response:
        assert (await response.json())["retired"] == ["ch-swissmedic"]
    async with api.client.get(f"{URL}/ch-swissmedic/history", headers=AUTH) as response:
        history = await response.json()
    assert history["retired"] is True
    assert [(v["version"], v["action"], v["current"]) for v in history["versions"]] == [(1, "found", False)]
    async with api.client.get(f"{URL}/ch-swissmedic/history/1", headers=AUTH) as response:
        assert await response.text() == CH
    async with api.client.get(
        f"{URL}/ch-swissmedic/history/\u00b2", headers=AUTH
    ) as response:  # a digit to isdigit
        assert response.status == 404
        assert "must be a version number such as 3" in (await response.json())["error"]

    async with api.client.post(f"{URL}/ch-swissmedic/rollback?version=1", headers=AUTH) as response:
        assert response.status == 428
    async with api.client.post(
        f"{URL}/ch-swissmedic/rollback?version=1", headers=AUTH | {"If-None-Match": "*"}
    ) as response:
        assert response.status == 200
        assert (await response.json())["action"] == "rollback:1"

    assert (api.folder / "ch-swissmedic.yaml").read_text() == CH
    assert "ch-swissmedic" in api.watcher.partners.registry


async def test_break_fix_and_roll_back_through_the_api(api: Admin) -> None:
    """An administrator's day: change, try a broken edit (told why), fix it, then roll back to the start."""
    v2 = CH.replace("Authority ch-swissmedic", "Swissmedic")
    response = await api.client.put(
        f"{URL}/ch-swissmedic", data=v2, headers=AUTH | {"If-Match": await api.etag("ch-swissmedic")}
    )
    assert response.status == 200
    etag = response.headers["ETag"]
    bad = await api.client.put(f"{URL}/ch-swissmedic", data=v2 + "retries: 3\n", headers=AUTH | {"If-Match": etag})
    assert bad.status == 422
    [error] = (await bad.json())["errors"]
    assert error.startswith(
        "in the edited ch-swissmedic.yaml (not saved), line 11 column 1 retries: unknown key; expected one of: id, "
    )
    fixed = v2 + "reception_awareness:\n  retries: 3\n"
    response = await api.client.put(f"{URL}/ch-swissmedic", data=fixed, headers=AUTH | {"If-Match": etag})
    assert response.status == 200
    assert api.watcher.partners.get("ch-swissmedic").profile.reception_awareness.retries == 3

    async with api.client.get(f"{URL}/ch-swissmedic/diff?from=1", headers=AUTH) as diff:
        text = await diff.text()
    assert "-authority_name: Authority ch-swissmedic\n+authority_name: Swissmedic\n" in text
    assert "+reception_awareness:\n+  retries: 3\n" in text

    response = await api.client.post(
        f"{URL}/ch-swissmedic/rollback?version=1", headers=AUTH | {"If-Match": response.headers["ETag"]}
    )
    assert response.status == 200
    assert api.watcher.partners.get("ch-swissmedic").profile.authority_name == "Authority ch-swissmedic"
    async with api.client.get(f"{URL}/ch-swissmedic/history", headers=AUTH) as listing:
        versions = (await listing.json())["versions"]
    assert [(v["version"], v["action"], v["current"]) for v in versions] == [
        (1, "found", True),
        (2, "put", False),
        (3, "put", False),
        (4, "rollback:1", True),
    ]


async def test_bad_version_numbers(api: Admin) -> None:
    async with api.client.get(f"{URL}/ch-swissmedic/history/x", headers=AUTH) as response:
        assert response.status == 404
    async with api.client.get(f"{URL}/ch-swissmedic/diff?from=7", headers=AUTH) as response:
        assert response.status == 404
    async with api.client.get(f"{URL}/Not_A_Slug", headers=AUTH) as response:
        assert response.status == 404


async def test_certificates_report(api: Admin) -> None:
    api.clock.advance(timedelta(days=700))

    async with api.client.get("/api/v1/admin/certificates", headers=AUTH) as response:
        items = (await response.json())["certificates"]

    assert [(i["owner"], i["validity"], i["days_left"]) for i in items] == [
        ("be-famhp", "expiring", 30),
        ("ch-swissmedic", "expiring", 30),
    ]


async def test_oversized_profile_is_refused(api: Admin) -> None:
    big = CH + "#" * (admin.MAX_PROFILE_BYTES + 1)
    async with api.client.put(f"{URL}/ch-swissmedic", data=big, headers=AUTH | {"If-Match": "*"}) as response:
        assert response.status == 413


async def _raw(api: Admin, request_head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """A request written byte for byte (aiohttp's client would encode the headers), and the answer."""
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(request_head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


async def test_an_actor_header_in_latin_1_is_audited_with_the_change(api: Admin) -> None:
    """python-requests sends 'José' in ISO-8859-1: the edit took effect, the audit line was never written and
    the caller got a 500."""
    etag = (await api.etag("ch-swissmedic")).encode()
    head = (
        b"PATCH " + URL.encode() + b"/ch-swissmedic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\nIf-Match: " + etag + b"\r\nX-Admin-Actor: Jos\xe9\r\n"
    )
    status, _ = await _raw(api, head, b'{"enabled": false}')
    assert status == 200
    async with api.client.get("/api/v1/admin/audit?profile=ch-swissmedic", headers=AUTH) as response:
        entries = (await response.json())["entries"]
    assert (
        entries[-1]["actor"].startswith("José (shared token)@")
        and "enabled: false" in (api.folder / "ch-swissmedic.yaml").read_text()
    )


async def test_a_credential_that_is_not_utf_8_is_refused_not_a_server_error(api: Admin) -> None:
    head = b"GET " + URL.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
    assert (await _raw(api, head))[0] == 401


async def test_a_profile_file_that_cannot_be_read_is_listed_with_the_reason(api: Admin) -> None:
    (api.folder / "de-bfarm.yaml").write_bytes("id: de-bfarm\nauthority_name: BfArM Köln\n".encode("latin-1"))
    async with api.client.get(URL, headers=AUTH) as response:
        assert response.status == 200
        listed = {item["id"]: item for item in (await response.json())["profiles"]}
    assert "etag" in listed["ch-swissmedic"] and "utf-8" in listed["de-bfarm"]["error"]


async def test_json_nested_too_deeply_is_a_bad_request(api: Admin) -> None:
    headers = {**AUTH, "If-Match": await api.etag("ch-swissmedic"), "Content-Type": "application/json"}
    nested = b"[" * 5000 + b"]" * 5000
    async with api.client.patch(f"{URL}/ch-swissmedic", data=nested, headers=headers) as response:
        assert response.status == 400 and "nested" in (await response.json())["error"]
