"""A new operator's walkthrough: ``profiles check`` passed a folder whose profiles it silently left out (a
``.yaml.txt`` file, a subfolder) or that held none; ``keys rollover`` and ``keys generate`` did not say which
certificate partners must pin; ``keys import`` did not name the passphrase option, nor notice another authority's
certificate."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from gateway.interfaces.cli import app
from gateway.profiles.certificates import load_private_key
from gateway.profiles.keystore import list_keys
from tests.interfaces.test_profiles_cli import BE, PASSPHRASE, Cli, _default_logging, cli, pki  # noqa: F401


def test_check_names_the_files_it_leaves_out_and_lists_the_ids_it_loaded(cli: Cli) -> None:  # noqa: F811
    (cli.folder / "be-famhp.yaml").rename(cli.folder / "be-famhp.yaml.txt")
    (cli.folder / "at").mkdir()
    (cli.folder / "at" / "at-basg.yaml").write_text(BE)
    (cli.folder / "certs").mkdir()
    (cli.folder / "certs" / "old.yaml").write_text(BE)  # the certificates' folder: not a profile folder
    (cli.folder / "examples").mkdir()
    (cli.folder / "examples" / "de-bfarm.yaml").write_text(BE)  # documentation, never loaded
    (cli.folder / ".be-famhp.yaml.swp").write_text("")  # an editor's
    (cli.folder / "notes").mkdir()  # no profile in it
    (cli.folder / "README.md").write_text("# partners\n")

    code, output = cli("profiles", "check")
    text = " ".join(output.split())

    assert code == 0, output
    assert f"{cli.folder}: 1 partner profile(s) OK: ch-swissmedic" in text
    assert (
        f"warning {cli.folder / 'be-famhp.yaml.txt'} is not loaded: a partner profile's file name ends in .yaml or "
        ".yml; rename it to be-famhp.yaml" in text
    )
    assert (
        f"warning {cli.folder / 'at'}/ holds 1 profile file(s) (at-basg.yaml) that are not loaded: partner profiles "
        f"are read only from {cli.folder} itself, not from its subfolders; move them up into {cli.folder}" in text
    )
    assert text.count("not loaded") == 2, output  # not certs/, examples/, the swap file, notes/ or README.md


def test_check_of_a_folder_with_no_profile_fails_saying_where_profiles_go(cli: Cli) -> None:  # noqa: F811
    for profile in cli.folder.glob("*.yaml"):
        profile.rename(profile.with_name(profile.name + ".txt"))

    code, output = cli("profiles", "check")
    text = " ".join(output.split())

    assert code == 1, output
    assert f"error: {cli.folder} ([profiles].folder) holds no partner profile" in text
    assert f"named NAME.yaml, directly in {cli.folder}" in text
    assert "rename it to ch-swissmedic.yaml" in text and "partner profile(s) OK" not in text


def test_rollover_names_the_certificate_partners_must_pin_and_what_the_others_do(cli: Cli) -> None:  # noqa: F811
    assert cli("keys", "generate")[0] == 0
    code, output = cli("keys", "generate")
    text = " ".join(output.split())
    assert code == 0, output
    upcoming = next(i for i in list_keys(cli.tmp / "keystore") if i.record.status.value == "next")
    pinned = cli.tmp / "keystore" / f"{upcoming.record.id}.crt.pem"
    assert (
        f"Give its certificate {pinned} to every partner before 'permit-gateway keys rollover': each pins it"
        in text
    )

    old = next(i for i in list_keys(cli.tmp / "keystore") if i.record.status.value == "current")
    code, output = cli("keys", "rollover")
    text = " ".join(output.split())

    assert code == 0, output
    assert f"Partners must pin {pinned} in their profile of us; they should have been given it before" in text
    assert (
        f"A partner that pinned only the previous certificate (SHA-256 {old.fingerprint[:16]}...) refuses every "
        "message we sign from now on (EBMS:0101) until it pins this one" in text
    )


def test_import_of_an_encrypted_key_without_a_passphrase_names_the_option(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    files = cli.pki.files_for("DE-BFARM")
    encrypted = tmp_path / "encrypted.key.pem"
    encrypted.write_bytes(
        load_private_key(files.key, None).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"import-pass"),
        )
    )

    code, output = cli("keys", "import", "--key", str(encrypted), "--certificate", str(files.certificate))
    text = " ".join(output.split())

    assert code == 1, output
    assert f"private key file {encrypted} is encrypted and needs a passphrase" in text
    assert "name that variable with --key-passphrase-env" in text

    result = cli.runner.invoke(
        app,
        [
            "keys",
            "import",
            "--key",
            str(encrypted),
            "--certificate",
            str(files.certificate),
            "--key-passphrase-env",
            "IMPORT_PASS",
            "--config",
            str(cli.config),
        ],
        env={"KS_PASS": PASSPHRASE, "IMPORT_PASS": "import-pass"},
    )
    assert result.exit_code == 0, result.output
    assert "does not name our PartyId" not in result.output  # DE-BFARM's own key


def test_import_warns_of_a_certificate_of_another_authority(cli: Cli) -> None:  # noqa: F811
    files = cli.pki.files_for("BE-FAMHP")  # into DE-BFARM's keystore

    code, output = cli("keys", "import", "--key", str(files.key), "--certificate", str(files.certificate))
    text = " ".join(output.split())

    assert code == 0, output  # a warning, not a refusal
    (info,) = list_keys(cli.tmp / "keystore")
    assert (
        f"warning the imported certificate {info.subject!r} does not name our PartyId 'DE-BFARM' "
        "([identity].party_id): it looks like BE-FAMHP's certificate" in text
    )
    assert (
        f"it is the keystore's current key: import ours as next, 'keys rollover', then 'keys retire "
        f"{info.record.id}' (or, if the keystore holds nothing else, remove {cli.tmp / 'keystore'} and import ours)"
        in text
    )


def test_retire_takes_a_next_key_out_and_refuses_the_current_one(cli: Cli) -> None:  # noqa: F811
    """Undoing a wrong import meant editing keystore.json by hand."""
    assert cli("keys", "generate")[0] == 0
    assert cli("keys", "generate")[0] == 0  # the next key
    by_status = {i.record.status.value: i.record.id for i in list_keys(cli.tmp / "keystore")}

    code, output = cli("keys", "retire", by_status["next"])
    assert code == 0, output
    assert f"retired key {by_status['next']} (was next" in " ".join(output.split())
    assert {i.record.id: i.record.status.value for i in list_keys(cli.tmp / "keystore")} == {
        by_status["current"]: "current",
        by_status["next"]: "retired",
    }
    code, output = cli("keys", "retire", by_status["next"])
    assert code == 0 and "was retired already; nothing changed" in output

    code, output = cli("keys", "retire", by_status["current"])
    assert code == 1 and "is the current edelivery-as4-1.15 key, which signs what we send" in " ".join(output.split())
    code, output = cli("keys", "retire", "no-such-key")
    text = " ".join(output.split())
    assert code == 1 and "has no key 'no-such-key'; its keys:" in text and by_status["current"] in text


def test_retire_on_a_keystore_that_does_not_exist_says_so_and_makes_none(cli: Cli) -> None:  # noqa: F811
    code, output = cli("keys", "retire", "abc")
    assert code == 1 and "no keystore at" in output and "creates one" in output, output
    assert not (cli.tmp / "keystore").exists()
