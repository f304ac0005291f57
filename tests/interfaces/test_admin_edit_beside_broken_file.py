"""One partner profile broken on disk must not stop the edits of the others (suspending a compromised partner is
urgent): through the admin API on a real aiohttp server on loopback, an edit is refused only for problems in the
file it edits, or across profiles that it makes."""

from __future__ import annotations

from pathlib import Path

from tests.interfaces.test_admin import (  # noqa: F401 (pytest fixtures)
    AUTH,
    BE,
    CH,
    DE,
    URL,
    Admin,
    _default_logging,
    api,
    pki,
)

BROKEN = DE + "reception_awareness:\n  retries: five\n"


def _break_de(api: Admin) -> Path:  # noqa: F811
    path = api.folder / "de-bfarm.yaml"
    path.write_text(BROKEN)
    return path


async def test_suspending_a_partner_beside_a_broken_profile_file_is_written_and_audited(api: Admin) -> None:  # noqa: F811
    broken = _break_de(api)
    etag = await api.etag("ch-swissmedic")

    async with api.client.patch(
        f"{URL}/ch-swissmedic", json={"enabled": False}, headers=AUTH | {"If-Match": etag}
    ) as response:
        assert response.status == 200, await response.text()
        body = await response.json()

    assert (api.folder / "ch-swissmedic.yaml").read_text() == CH + "enabled: false\n"
    assert body["version"] is not None and body["action"] == "merge"
    [warning] = [w for w in body["warnings"] if str(broken) in w]
    assert f"{broken}:12:" in warning and "reception_awareness.retries" in warning  # where and what
    assert "invalid on disk before this edit" in warning and "last accepted version" in warning
    assert broken.read_text() == BROKEN
    async with api.client.get("/api/v1/admin/audit?profile=ch-swissmedic", headers=AUTH) as response:
        entry = (await response.json())["entries"][-1]
    assert (entry["action"], entry["result"], entry["version"]) == ("merge", "ok", body["version"])


async def test_an_edit_broken_itself_is_refused_naming_its_own_file_only(api: Admin) -> None:  # noqa: F811
    _break_de(api)
    etag = await api.etag("be-famhp")

    async with api.client.patch(
        f"{URL}/be-famhp", json={"country": "Belgium"}, headers=AUTH | {"If-Match": etag}
    ) as response:
        assert response.status == 422
        errors = (await response.json())["errors"]

    assert errors and all(error.startswith("in the edited be-famhp.yaml (not saved)") for error in errors), errors
    assert any("country: got 'Belgium'" in error for error in errors)
    assert (api.folder / "be-famhp.yaml").read_text() == BE


async def test_an_edit_of_the_broken_file_that_leaves_it_broken_is_refused(api: Admin) -> None:  # noqa: F811
    broken = _break_de(api)
    etag = await api.etag("de-bfarm")

    async with api.client.patch(
        f"{URL}/de-bfarm", json={"compression": False}, headers=AUTH | {"If-Match": etag}
    ) as response:
        assert response.status == 422
        errors = (await response.json())["errors"]

    assert any("in the edited de-bfarm.yaml (not saved)" in e and "retries" in e for e in errors), errors
    assert broken.read_text() == BROKEN


async def test_an_edit_duplicating_another_profiles_party_id_is_refused_beside_a_broken_file(
    api: Admin,  # noqa: F811
) -> None:
    broken = _break_de(api)
    etag = await api.etag("be-famhp")

    async with api.client.patch(
        f"{URL}/be-famhp", json={"party_id": "CH-SWISSMEDIC"}, headers=AUTH | {"If-Match": etag}
    ) as response:
        assert response.status == 422
        errors = (await response.json())["errors"]

    assert any("'CH-SWISSMEDIC'" in e and "is already the PartyId of profile" in e for e in errors), errors
    assert not any(str(broken) in error for error in errors)  # the other file's problem is not this edit's
    assert (api.folder / "be-famhp.yaml").read_text() == BE
    async with api.client.get("/api/v1/admin/audit?profile=be-famhp", headers=AUTH) as response:
        entry = (await response.json())["entries"][-1]
    assert (entry["action"], entry["result"]) == ("merge", "refused")


async def test_an_edit_taking_the_party_id_a_broken_files_kept_version_holds_is_refused_and_later_edits_work(
    api: Admin,  # noqa: F811
) -> None:
    """Found by the review: the edit was checked without the broken file, written and answered 200, and the
    gateway, which keeps that file's last accepted version, refused it and, the conflict then on disk, every
    later change too: an urgent suspension of a third partner was written and audited but never took effect."""
    (api.folder / "de-bfarm.yaml").write_text(DE)
    assert api.watcher.reload("de-bfarm added", found_on_disk=True) is True
    broken = _break_de(api)  # its last accepted version, PartyId DE-BFARM, stays active
    etag = await api.etag("be-famhp")

    async with api.client.patch(
        f"{URL}/be-famhp", json={"party_id": "DE-BFARM"}, headers=AUTH | {"If-Match": etag}
    ) as response:
        assert response.status == 422, await response.text()
        errors = (await response.json())["errors"]
    assert any("'DE-BFARM'" in e and "is already the PartyId of profile" in e for e in errors), errors
    assert (api.folder / "be-famhp.yaml").read_text() == BE

    etag = await api.etag("ch-swissmedic")
    async with api.client.patch(
        f"{URL}/ch-swissmedic", json={"enabled": False}, headers=AUTH | {"If-Match": etag}
    ) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    assert body["active"] is True
    assert api.watcher.partners.get("ch-swissmedic").profile.enabled is False
    assert api.watcher.partners.get("de-bfarm").profile.party_id == "DE-BFARM"  # the kept version
    assert broken.read_text() == BROKEN
