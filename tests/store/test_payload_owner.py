"""An operator who runs a CLI command as root (``sudo permit-gateway messages retry`` rebuilds a message) writes
payload files into the gateway's data folder: they must belong to the account that owns that folder, as the
gateway's own do, or the gateway, running as that account, cannot read them (root's files are mode 0600)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.files import make_folder, write_atomically
from gateway.store.payloads import PayloadStore
from tests.conftest import missing

SERVICE_UID, SERVICE_GID = 65534, 65534  # nobody/nogroup: an account that is not root


@pytest.fixture
def data_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        missing("the tests run as root (CI does)", locally="giving files away needs root: run as root to test it")
    folder = tmp_path / "data"
    folder.mkdir()
    os.chown(folder, SERVICE_UID, SERVICE_GID)
    return folder


def _owner(path: Path) -> tuple[int, int]:
    found = path.stat()
    return found.st_uid, found.st_gid


def test_payloads_root_writes_belong_to_the_data_folders_owner(data_folder: Path) -> None:
    payloads = PayloadStore(data_folder / "payloads")
    small = payloads.put(b"<ImportAuthorization/>")
    large, _ = payloads.put_file(io.BytesIO(b"x" * 300_000))
    incoming = payloads.incoming()
    incoming.write(b"<ExportAuthorization/>")
    kept = incoming.keep()

    for sha256 in (small, large, kept):
        path = payloads.path(sha256)
        assert _owner(path) == (SERVICE_UID, SERVICE_GID), path
        assert _owner(path.parent) == (SERVICE_UID, SERVICE_GID), path.parent
    assert _owner(data_folder / "payloads") == (SERVICE_UID, SERVICE_GID)


def test_a_file_root_writes_into_a_folder_root_owns_stays_roots(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        missing("the tests run as root (CI does)", locally="giving files away needs root: run as root to test it")
    write_atomically(tmp_path / "mine.txt", b"root's own")
    assert _owner(tmp_path / "mine.txt") == (0, 0)


def test_a_new_folder_swapped_for_a_link_does_not_give_the_links_target_away(
    data_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data folder's account swaps the folder root just made for a link to one of root's folders (/etc):
    root must not hand that folder to the account."""
    victim = tmp_path / "root-only"
    victim.mkdir(mode=0o700)
    real_mkdir = Path.mkdir

    def racing(self: Path, *args: Any, **kwargs: Any) -> None:
        real_mkdir(self, *args, **kwargs)
        if self.parent == data_folder / "payloads":  # the account wins the race on the shard folder
            self.rename(tmp_path / "moved-away")
            self.symlink_to(victim)

    monkeypatch.setattr(Path, "mkdir", racing)
    make_folder(data_folder / "payloads" / "ab")

    assert _owner(victim) == (0, 0)
