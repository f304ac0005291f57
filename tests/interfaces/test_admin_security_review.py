"""A security review of the admin API on a real aiohttp server on loopback: values the YAML library cannot
build, aliases, paths, the shared token claiming an administrator's name, empty and padded tokens, numbers of
thousands of digits, deep merge patches, and one token for the national API and the admin API."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from gateway.errors import ConfigError
from gateway.interfaces import admin
from gateway.interfaces.keys import ADMIN_NAMED, ADMIN_TOKEN, PROFILE_EDITOR, PROFILE_WATCHER
from gateway.interfaces.node import create_app
from gateway.settings import AdminSettings, ApiSettings, IdentitySettings, Settings
from tests.interfaces.test_admin import (  # noqa: F401 (pytest fixtures)
    ALICE,
    AUTH,
    CH,
    URL,
    Admin,
    _default_logging,
    api,
    pki,
)

AUDIT = "/api/v1/admin/audit"


@contextlib.asynccontextmanager
async def _client(
    api: Admin,  # noqa: F811
    *,
    token: SecretStr | None = None,
    named: dict[str, str] | None = None,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """Another server on the same editor and watcher, with the admin tokens given."""
    app = web.Application()
    app[PROFILE_EDITOR] = api.client.server.app[PROFILE_EDITOR]
    app[PROFILE_WATCHER] = api.watcher
    app[ADMIN_TOKEN] = token
    app[ADMIN_NAMED] = named or {}
    app.router.add_routes(admin.routes)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def _audit(admin_api: Admin) -> list[dict[str, object]]:
    async with admin_api.client.get(f"{AUDIT}?limit=1000", headers=AUTH) as response:
        assert response.status == 200
        entries: list[dict[str, object]] = (await response.json())["entries"]
        return entries


async def test_a_put_with_a_value_the_yaml_library_cannot_build_is_422_and_audited(api: Admin) -> None:  # noqa: F811
    """Found by the review: an impossible date (or !!bool maybe, a 5000-digit integer) was a 500, unaudited."""
    etag = await api.etag("ch-swissmedic")
    for value in ("2026-02-30", "!!bool maybe", "9" * 5000):
        body = CH.replace("authority_name: Authority ch-swissmedic", f"authority_name: {value}")
        async with api.client.put(f"{URL}/ch-swissmedic", data=body, headers=AUTH | {"If-Match": etag}) as r:
            assert r.status == 422, await r.text()
            [error] = (await r.json())["errors"]
        assert error.startswith("in the edited ch-swissmedic.yaml (not saved), line 3 column 17: not valid YAML: cannot read the value")
    entries = await _audit(api)
    assert [(e["action"], e["result"]) for e in entries] == [("put", "refused")] * 3
    assert (api.folder / "ch-swissmedic.yaml").read_text() == CH


async def test_such_a_file_dropped_in_the_folder_leaves_the_api_working(api: Admin) -> None:  # noqa: F811
    (api.folder / "zz-broken.yaml").write_text("id: zz-broken\nauthority_name: 2026-02-30\n")

    async with api.client.get(URL, headers=AUTH) as response:
        assert response.status == 200
        listed = [p["id"] for p in (await response.json())["profiles"]]
    assert listed == ["be-famhp", "ch-swissmedic", "zz-broken"]
    async with api.client.get(f"{URL}/zz-broken", headers=AUTH) as response:
        assert response.status == 200
    assert api.watcher.reload("test", found_on_disk=True) is False
    assert api.watcher.last_error is not None and "zz-broken.yaml:2:17: not valid YAML" in api.watcher.last_error


async def test_an_alias_bomb_gets_a_small_refusal_and_a_small_audit_line(api: Admin, tmp_path: Path) -> None:  # noqa: F811
    """Found by the review: an 84 KB body (one 3.8 KB value, 20000 aliases of it) got a 159 MB answer and
    audit line."""
    value = "/".join(["d" * 200] * 19)
    aliases = ", ".join(["*a"] * 20000)
    body = f"x0: &a {value}\n" + CH.replace("security:\n", f"security:\n  signing_certificates: [{aliases}]\n")
    etag = await api.etag("ch-swissmedic")

    async with api.client.put(f"{URL}/ch-swissmedic", data=body, headers=AUTH | {"If-Match": etag}) as response:
        assert response.status == 422
        answer = await response.read()

    assert len(answer) < 30_000
    assert "a YAML alias (*a) repeats the value of an anchor" in json.loads(answer)["errors"][0]
    assert (tmp_path / "data" / "profile-audit.jsonl").stat().st_size < 30_000


@pytest.mark.parametrize(
    ("named", "expected"),
    [
        ("/etc/hostname", "which is outside"),
        ("../../../../../../etc/passwd", "which is outside"),
        ('"a\\0b"', "which holds a NUL character"),
        ("x" * 300, "a file name has at most 255 bytes"),
    ],
    ids=["absolute", "dot-dot", "nul", "long-name"],
)
async def test_a_certificate_path_an_edit_names_is_confined_and_checked(
    api: Admin,  # noqa: F811
    named: str,
    expected: str,
) -> None:
    """Found by the review: an admin token could tell which files of the host exist through the errors, and a
    NUL or a 300-character name was a 500."""
    etag = await api.etag("ch-swissmedic")
    body = CH.replace("ch-swissmedic.crt.pem", named)

    async with api.client.put(f"{URL}/ch-swissmedic", data=body, headers=AUTH | {"If-Match": etag}) as response:
        assert response.status == 422
        [error] = (await response.json())["errors"]

    assert error.startswith("in the edited ch-swissmedic.yaml (not saved), line 10 column 3 security.signing_certificate: got ")
    assert expected in error and "X.509" not in error


async def test_the_shared_token_cannot_claim_an_administrators_name(api: Admin) -> None:  # noqa: F811
    """Found by the review: the shared token with X-Admin-Actor: alice was audited exactly as Alice's own token."""
    etag = await api.etag("ch-swissmedic")
    for claimed in ("alice", "Alice"):
        headers = AUTH | {"If-Match": etag, "X-Admin-Actor": claimed}
        async with api.client.patch(f"{URL}/ch-swissmedic", json={"compression": False}, headers=headers) as r:
            assert r.status == 400
            assert "is the name of an administrator with an own token" in (await r.json())["error"]
    assert (api.folder / "ch-swissmedic.yaml").read_text() == CH

    async with api.client.patch(
        f"{URL}/ch-swissmedic",
        json={"compression": False},
        headers=AUTH | {"If-Match": etag, "X-Admin-Actor": "bob"},
    ) as response:
        assert response.status == 200
        etag = response.headers["ETag"]
    async with api.client.patch(
        f"{URL}/ch-swissmedic",
        json={"compression": True},
        headers={"Authorization": f"Bearer {ALICE}", "If-Match": etag},
    ) as response:
        assert response.status == 200
    actors = [e["actor"] for e in await _audit(api)]
    assert actors == ["bob (shared token)@127.0.0.1", "alice@127.0.0.1"]


async def test_an_empty_bearer_token_matches_no_administrator(api: Admin) -> None:  # noqa: F811
    """Found by the review: a tokens file line with the SHA-256 of the empty string ('echo -n "$TOKEN" |
    sha256sum' with TOKEN unset) let 'Authorization: Bearer' with no token in."""
    async with _client(api, named={hashlib.sha256(b"").hexdigest(): "bob"}) as client:
        for header in ("Bearer", "Bearer ", "Bearer    "):
            async with client.get(URL, headers={"Authorization": header}) as response:
                assert response.status == 401, header


def test_a_tokens_file_with_the_hash_of_an_empty_token_is_refused(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice {hashlib.sha256(b'x').hexdigest()}\nbob {hashlib.sha256(b'').hexdigest()}\n")

    with pytest.raises(ConfigError) as caught:
        AdminSettings(tokens_file=tokens).named_tokens()

    assert str(caught.value).startswith(f"{tokens}:2: e3b0c442")
    assert "is the SHA-256 of an empty token" in str(caught.value)


async def test_a_token_from_a_secret_file_with_its_newline_is_the_token(
    api: Admin,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the review: a Kubernetes or env-file secret ends in a newline; the presented token was stripped,
    the configured one not, so they never matched."""
    monkeypatch.setenv("T_ADMIN", "s3cret-admin-token-from-a-file\n")

    async with _client(api, token=AdminSettings(token_env="T_ADMIN").token()) as client:
        headers = {"Authorization": "Bearer s3cret-admin-token-from-a-file"}
        async with client.get(URL, headers=headers) as response:
            assert response.status == 200


def test_a_token_of_only_spaces_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_API", "  \n")

    with pytest.raises(ConfigError, match="'T_API', which is not set, empty or only spaces"):
        ApiSettings(token_env="T_API").token()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{URL}/ch-swissmedic/history/{'9' * 5000}"),
        ("GET", f"{URL}/ch-swissmedic/diff?from={'9' * 5000}"),
        ("GET", f"{AUDIT}?limit={'9' * 5000}"),
        ("POST", f"{URL}/ch-swissmedic/rollback?version={'9' * 5000}"),
    ],
    ids=["version", "diff-from", "audit-limit", "rollback-version"],
)
async def test_a_number_of_thousands_of_digits_is_a_400_naming_the_parameter(
    api: Admin,  # noqa: F811
    method: str,
    path: str,
) -> None:
    """Found by the review: isdigit() let it through and int() raised (Python refuses over 4300 digits): 500."""
    async with api.client.request(method, path, headers=AUTH | {"If-Match": "*"}) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error.split(" ", 1)[0] in ("version", "from", "limit")


async def test_a_merge_patch_nested_hundreds_deep_is_refused(api: Admin) -> None:  # noqa: F811
    patch: dict[str, object] = {}
    inner = patch
    for _ in range(300):
        inner["x"] = {}
        inner = inner["x"]  # type: ignore[assignment]
    etag = await api.etag("ch-swissmedic")

    async with api.client.patch(f"{URL}/ch-swissmedic", json=patch, headers=AUTH | {"If-Match": etag}) as response:
        assert response.status == 422
        [error] = (await response.json())["errors"]

    assert "the merge patch is nested more than 16 levels deep" in error


@pytest.mark.parametrize("where", ["token_env", "tokens_file"])
def test_the_national_systems_token_cannot_be_an_admin_token(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the review: with one token for [api] and [admin], the national system could edit profiles."""
    monkeypatch.setenv("NATIONAL", "one-token-for-both-national-and-admin")
    monkeypatch.setenv("OTHER", "another-token")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice {hashlib.sha256(b'one-token-for-both-national-and-admin').hexdigest()}\n")
    admin_settings = (
        AdminSettings(token_env="NATIONAL")
        if where == "token_env"
        else AdminSettings(token_env="OTHER", tokens_file=tokens)
    )
    settings = Settings(
        identity=IdentitySettings(party_id="BE-FAMHP", country="BE", authority_name="FAMHP"),
        data_dir=tmp_path / "data",
        api=ApiSettings(token_env="NATIONAL"),
        admin=admin_settings,
    )

    with pytest.raises(ConfigError) as caught:
        create_app(settings)

    expected = "hold the same token" if where == "token_env" else "holds the token of administrator 'alice'"
    assert str(caught.value).startswith("[api].token_env") and expected in str(caught.value)
    assert SecretStr("one-token-for-both-national-and-admin").get_secret_value() not in str(caught.value)
