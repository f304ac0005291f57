"""A partner profile saved in another encoding than UTF-8 (Latin-1) through the admin API on a real aiohttp server
on loopback: the other profiles stay editable, and the file itself is reported, naming its first bad byte, the
rule and the fix, and is never rewritten or removed."""

from __future__ import annotations

from pathlib import Path

from gateway.clock import FixedClock
from gateway.profiles import DevPki
from gateway.profiles.editor import Precondition, ProfileEditor
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
from tests.profiles.conftest import NOW

NAME = "Bundesinstitut für Arzneimittel und Medizinprodukte"
LATIN1 = DE.replace("Authority de-bfarm", NAME).encode("latin-1")
OFFSET = LATIN1.index(b"\xfc")  # the 'ü', one byte in Latin-1, which is no UTF-8 sequence
LINE = 3
COLUMN = len("authority_name: Bundesinstitut f") + 1


def _broken(api: Admin) -> Path:  # noqa: F811
    path = api.folder / "de-bfarm.yaml"
    path.write_bytes(LATIN1)
    return path


def _says_what_and_how(error: str, path: Path) -> None:
    assert f"{path}:{LINE}:{COLUMN}" in error
    assert f"byte {OFFSET}" in error and "0xfc" in error
    assert "partner profiles are UTF-8 YAML" in error
    assert f"iconv -f latin1 -t utf-8 {path}" in error


async def test_another_profiles_edits_work_beside_a_file_that_is_not_utf8(api: Admin) -> None:  # noqa: F811
    broken = _broken(api)

    etag = await api.etag("ch-swissmedic")
    changed = CH.replace("Authority ch-swissmedic", "Swissmedic")
    async with api.client.put(f"{URL}/ch-swissmedic", data=changed, headers=AUTH | {"If-Match": etag}) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    # written, versioned, audited and active: the broken file keeps its last accepted version meanwhile
    assert body["version"] == 2 and body["active"] is True
    [warning] = [w for w in body["warnings"] if str(broken) in w]
    _says_what_and_how(warning, broken)
    assert "keeps that profile's last accepted version until the file is fixed" in warning
    assert (api.folder / "ch-swissmedic.yaml").read_text() == changed
    broken.write_bytes(LATIN1.decode("latin-1").encode("utf-8"))  # the fix the error names
    assert api.watcher.reload("fixed", found_on_disk=True) is True
    assert api.watcher.partners.get("ch-swissmedic").profile.authority_name == "Swissmedic"
    assert api.watcher.partners.get("de-bfarm").profile.authority_name == NAME
    broken.write_bytes(LATIN1)

    etag = await api.etag("be-famhp")
    async with api.client.patch(
        f"{URL}/be-famhp", json={"compression": False}, headers=AUTH | {"If-Match": etag}
    ) as response:
        assert response.status == 200, await response.text()
    assert (api.folder / "be-famhp.yaml").read_text() == BE + "compression: false\n"

    async with api.client.get(URL, headers=AUTH) as response:
        [listed] = [p for p in (await response.json())["profiles"] if p["id"] == "de-bfarm"]
    _says_what_and_how(listed["error"], broken)
    assert broken.read_bytes() == LATIN1


async def test_the_file_that_is_not_utf8_is_reported_on_read_and_edit_and_kept(api: Admin) -> None:  # noqa: F811
    broken = _broken(api)

    async with api.client.get(f"{URL}/de-bfarm", headers=AUTH) as response:
        assert response.status == 409
        body = await response.json()
    _says_what_and_how(body["error"], broken)
    assert body["file"] == str(broken) and body["byte_offset"] == OFFSET
    assert (body["line"], body["column"]) == (LINE, COLUMN)

    utf8 = LATIN1.decode("latin-1")
    for method, kwargs in [
        ("PUT", {"data": utf8}),
        ("PATCH", {"json": {"compression": False}}),
        ("DELETE", {}),
    ]:
        async with api.client.request(
            method, f"{URL}/de-bfarm", headers=AUTH | {"If-Match": "*"}, **kwargs
        ) as response:
            assert response.status == 409, (method, await response.text())
            _says_what_and_how((await response.json())["error"], broken)
    async with api.client.post(f"{URL}/de-bfarm/rollback?version=1", headers=AUTH | {"If-Match": "*"}) as response:
        assert response.status in (404, 409), await response.text()
    assert broken.read_bytes() == LATIN1


def test_a_rollback_of_another_profile_works_beside_such_a_file(tmp_path: Path, pki: DevPki) -> None:  # noqa: F811
    """What the CLI's 'profiles rollback' does, on the editor directly."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "ch-swissmedic.yaml").write_text(CH)
    editor = ProfileEditor(folder, certificates_dir=pki.folder, data_dir=tmp_path / "d", clock=FixedClock(NOW))
    any_etag = Precondition(if_match="*")
    editor.merge("ch-swissmedic", {"compression": False}, condition=any_etag, actor="alice")
    (folder / "de-bfarm.yaml").write_bytes(LATIN1)

    result = editor.rollback("ch-swissmedic", condition=any_etag, actor="cli:root")

    assert result.version == 3 and (folder / "ch-swissmedic.yaml").read_text() == CH
    assert (folder / "de-bfarm.yaml").read_bytes() == LATIN1
