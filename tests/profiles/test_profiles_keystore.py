"""Our keystore: keys encrypted at rest, current/next/previous, rollover, and a running gateway following it."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.as4 import Suite
from gateway.errors import ConfigError, KeyMaterialError
from gateway.profiles import DevPki
from gateway.profiles.keystore import (
    KeyStatus,
    Keystore,
    KeystoreWatcher,
    OwnKeys,
    generate_key,
    import_key,
    list_keys,
    load_own_keys,
    rollover,
    subject_name,
)
from gateway.settings import KeySettings

from .conftest import NOW

PASSPHRASE = b"correct horse battery staple"
SUBJECT = subject_name("BE-FAMHP", "Federal Agency for Medicines and Health Products", "BE")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A keystore folder; RSA-2048 instead of 3072 keeps the suite fast (the real size is checked once)."""
    monkeypatch.setattr("gateway.profiles.keystore.GENERATED_KEY_BITS", 2048)
    return tmp_path / "keystore"


def statuses(folder: Path) -> dict[str, str]:
    return {info.record.id: info.record.status.value for info in list_keys(folder)}


def test_generate_writes_an_encrypted_key_a_csr_and_a_certificate(tmp_path: Path) -> None:
    folder = tmp_path / "keystore"
    info = generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)

    assert info.record.status is KeyStatus.CURRENT
    key_file = folder / f"{info.record.id}.key.pem"
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=PASSPHRASE)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    csr = (folder / f"{info.record.id}.csr.pem").read_bytes()
    assert b"BEGIN CERTIFICATE REQUEST" in csr
    assert info.subject == "C=BE,O=Federal Agency for Medicines and Health Products,CN=BE-FAMHP"
    assert info.certificate.not_valid_after_utc == NOW + timedelta(days=730)
    assert json.loads((folder / "keystore.json").read_text())["keys"][0]["origin"] == "generated"


def test_second_key_is_next_and_a_third_is_refused(folder: Path) -> None:
    generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)

    assert sorted(statuses(folder).values()) == ["current", "next"]
    with pytest.raises(KeyMaterialError, match=r"has a next key already .*run 'keys rollover' first"):
        generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    with pytest.raises(KeyMaterialError, match="has a current key already"):
        generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW, status=KeyStatus.CURRENT)


def test_a_next_key_for_a_suite_without_a_current_one_is_refused_and_changes_nothing(folder: Path) -> None:
    """A suite with only a next key has nothing to sign with: the keystore would no longer open, the running
    node would refuse the change, and a restart would fail."""
    generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    before = (folder / "keystore.json").read_bytes()

    with pytest.raises(KeyMaterialError, match=r"has no current edelivery-as4-2\.0 key, so a next one"):
        generate_key(
            folder, PASSPHRASE, subject=SUBJECT, now=NOW, status=KeyStatus.NEXT, suite=Suite.EDELIVERY_2_0
        )

    assert (folder / "keystore.json").read_bytes() == before
    assert Keystore.open(folder, PASSPHRASE).suites == (Suite.EDELIVERY_1_15,)


def test_a_rollover_that_would_not_open_leaves_the_index_as_it_was(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    before = (folder / "keystore.json").read_bytes()

    def refuse(*args: object) -> Keystore:
        raise KeyMaterialError("the new keystore does not open")

    monkeypatch.setattr(Keystore, "of_records", classmethod(lambda cls, *args: refuse(*args)))
    with pytest.raises(KeyMaterialError, match="does not open"):
        rollover(folder, PASSPHRASE, now=NOW)

    assert (folder / "keystore.json").read_bytes() == before


def test_open_decrypts_current_next_and_previous(folder: Path) -> None:
    first = generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    second = generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)

    keystore = Keystore.open(folder, PASSPHRASE)

    assert keystore.signing.certificate == first.certificate
    assert [k.certificate for k in keystore.decryption] == [first.certificate, second.certificate]
    assert keystore.next is not None and keystore.next.certificate == second.certificate


def test_wrong_passphrase_and_empty_keystore(folder: Path) -> None:
    generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)

    with pytest.raises(KeyMaterialError, match="wrong passphrase"):
        Keystore.open(folder, b"guess")
    with pytest.raises(KeyMaterialError, match="not found; create a key with"):
        Keystore.open(folder.parent / "none", PASSPHRASE)
    (folder.parent / "empty").mkdir()
    with pytest.raises(KeyMaterialError, match="has no current key"):
        Keystore.open(folder.parent / "empty", PASSPHRASE)


def test_rollover_moves_every_key_one_step(folder: Path) -> None:
    a = generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW).record.id
    b = generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW).record.id

    keystore = rollover(folder, PASSPHRASE, now=NOW)
    assert statuses(folder) == {a: "previous", b: "current"}
    assert keystore.decryption[0].certificate == keystore.signing.certificate

    c = generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW).record.id
    rollover(folder, PASSPHRASE, now=NOW)
    assert statuses(folder) == {a: "retired", b: "previous", c: "current"}
    assert len(Keystore.open(folder, PASSPHRASE).decryption) == 2
    with pytest.raises(KeyMaterialError, match="has no next key"):
        rollover(folder, PASSPHRASE, now=NOW)


def test_rollover_refuses_a_next_key_that_is_not_valid_yet(folder: Path) -> None:
    generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW + timedelta(days=5))

    with pytest.raises(KeyMaterialError, match=r"the next key's certificate .* is not valid before"):
        rollover(folder, PASSPHRASE, now=NOW)
    assert sorted(statuses(folder).values()) == ["current", "next"]


def test_import_reencrypts_with_the_keystore_passphrase(folder: Path, pki: DevPki, tmp_path: Path) -> None:
    files = pki.files_for("BE-FAMHP")

    info = import_key(
        folder, PASSPHRASE, key_file=files.key, certificate_file=files.certificate, key_passphrase=None, now=NOW
    )

    assert info.record.origin == "imported"
    stored = (folder / f"{info.record.id}.key.pem").read_bytes()
    assert stored.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert Keystore.open(folder, PASSPHRASE).signing.certificate == info.certificate
    with pytest.raises(KeyMaterialError, match="holds this key already"):
        import_key(
            folder,
            PASSPHRASE,
            key_file=files.key,
            certificate_file=files.certificate,
            key_passphrase=None,
            now=NOW,
        )


def test_import_refuses_a_certificate_of_another_key(folder: Path, pki: DevPki) -> None:
    with pytest.raises(KeyMaterialError, match="the certificate does not belong to the private key"):
        import_key(
            folder,
            PASSPHRASE,
            key_file=pki.files_for("BE-FAMHP").key,
            certificate_file=pki.files_for("CH-SWISSMEDIC").certificate,
            key_passphrase=None,
            now=NOW,
        )


def test_import_refuses_an_expired_certificate(folder: Path, pki: DevPki) -> None:
    files = pki.files_for("BE-FAMHP")
    with pytest.raises(KeyMaterialError, match="expired on"):
        import_key(
            folder,
            PASSPHRASE,
            key_file=files.key,
            certificate_file=files.certificate,
            key_passphrase=None,
            now=NOW + timedelta(days=800),
        )


def test_own_keys_from_the_keystore_or_the_file_pair(folder: Path, pki: DevPki, tmp_path: Path) -> None:
    generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    secret = tmp_path / "passphrase.txt"
    secret.write_bytes(PASSPHRASE + b"\n")

    from_keystore = load_own_keys(KeySettings(keystore=folder, passphrase_file=secret), now=NOW)
    files = pki.files_for("BE-FAMHP")
    from_files = load_own_keys(KeySettings(private_key=files.key, certificate=files.certificate), now=NOW)

    assert from_keystore.keystore is not None
    assert from_keystore.decryption == {Suite.EDELIVERY_1_15: (from_keystore.signing,)}
    assert [p for p, _ in from_keystore.own_certificates()] == ["current"]
    assert from_files == OwnKeys.single(from_files.signing)
    with pytest.raises(ConfigError, match=r"\[keys\].keystore needs a passphrase"):
        load_own_keys(KeySettings(keystore=folder), now=NOW)
    with pytest.raises(KeyMaterialError, match=r"our current certificate .* expired on"):
        load_own_keys(KeySettings(keystore=folder, passphrase_file=secret), now=NOW + timedelta(days=731))


def test_watcher_follows_a_rollover_made_elsewhere(folder: Path) -> None:
    generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    used: list[Keystore] = []
    watcher = KeystoreWatcher(Keystore.open(folder, PASSPHRASE), PASSPHRASE, on_change=used.append)
    assert watcher.poll() is None

    upcoming = generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    assert watcher.poll() is True
    assert used[-1].next is not None

    rollover(folder, PASSPHRASE, now=NOW)
    assert watcher.poll() is True
    assert watcher.keystore.signing.certificate == upcoming.certificate
    assert len(used) == 2


def test_watcher_keeps_the_keys_when_the_keystore_breaks(folder: Path) -> None:
    generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    watcher = KeystoreWatcher(Keystore.open(folder, PASSPHRASE), PASSPHRASE, on_change=print)
    before = watcher.keystore

    (folder / "keystore.json").write_text("{not json")

    assert watcher.poll() is False
    assert watcher.keystore is before
