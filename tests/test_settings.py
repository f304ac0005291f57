"""The configuration file: the shipped one loads, and mistakes name the file, the key and the expectation."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import BaseModel
from typer.testing import CliRunner

from gateway.errors import ConfigError, KeyMaterialError
from gateway.interfaces import cli
from gateway.profiles.trust import load_key_pair
from gateway.settings import AdminSettings, KeySettings, Settings, load_settings
from tests.conftest import NOW, make_key_pair

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_config_loads_with_paths_resolved_against_its_folder() -> None:
    settings = load_settings(ROOT / "config" / "gateway.toml")
    assert settings.identity.party_id == "BE-FAMHP"
    assert settings.profiles.folder == ROOT / "partner_profiles"
    assert settings.store.url == f"sqlite+aiosqlite:///{ROOT / 'var' / 'gateway.db'}"
    assert settings.http.as4_url() == "http://127.0.0.1:8480/as4"


def test_the_shipped_config_shows_every_key_with_its_default() -> None:
    """An administrator reads the file, not the code: each key is there (set or commented out), and a key set
    there has its default value."""
    text = (ROOT / "config" / "gateway.toml").read_text()
    shipped = tomllib.loads(text)
    defaults = Settings.model_fields
    for section, field in defaults.items():
        annotation = field.annotation
        if (
            section in ("faults", "identity")
            or not isinstance(annotation, type)
            or not issubclass(annotation, BaseModel)
        ):
            continue
        assert f"[{section}]" in text, section
        default = field.get_default(call_default_factory=True)
        for key in annotation.model_fields:
            if key.startswith(("edelivery_2", "passphrase", "keystore", "token_env", "tables", "public_url")):
                continue
            assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), (
                f"[{section}].{key} is not in the shipped config"
            )
            if key in shipped.get(section, {}) and section not in ("store", "folders", "profiles", "keys"):
                assert shipped[section][key] == getattr(default, key), f"[{section}].{key}"


def test_the_readme_documents_every_key() -> None:
    """The README's configuration table names every key of every section (the test-only ``[faults]`` too)."""
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `[")]
    for section, field in Settings.model_fields.items():
        annotation = field.annotation
        if not isinstance(annotation, type) or not issubclass(annotation, BaseModel):
            continue
        for key in annotation.model_fields:
            if key.startswith("edelivery_2"):
                key = f"keys.{key}"
                assert any(f"`[{key}]`" in row for row in rows), f"[{key}] is not in the README's table"
                continue
            mine = [row for row in rows if row.startswith(f"| `[{section}]")]
            assert any(f"] {key}`" in row or f"`{key}`" in row for row in mine), f"[{section}].{key} not in README"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_missing_file_names_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothere\.toml: configuration file not found"):
        load_settings(tmp_path / "nothere.toml")


def test_misspelt_key_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, '[identity]\nparty_id="X"\ncountry="BE"\nauthority_name="A"\n[http]\nprot=1\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(path) in str(caught.value)
    assert "[http].prot: unknown key; expected one of: host, port, public_url" in str(caught.value)


def test_missing_required_key_and_wrong_value_are_both_reported(tmp_path: Path) -> None:
    path = _write(tmp_path, '[identity]\nparty_id="X"\ncountry="Belgium"\n[http]\nport="eighty"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "[identity].country: expected an ISO 3166-1 alpha-2 country code" in message
    assert "[identity].authority_name: Field required" in message
    assert "[http].port: Input should be a valid integer" in message and "'eighty'" in message


def test_store_url_needs_an_async_driver(tmp_path: Path) -> None:
    path = _write(
        tmp_path, '[identity]\nparty_id="X"\ncountry="BE"\nauthority_name="A"\n[store]\nurl="sqlite:///x.db"\n'
    )
    with pytest.raises(ConfigError, match=r"\[store\]\.url: expected a sqlite\+aiosqlite"):
        load_settings(path)


def test_bad_toml_says_where(tmp_path: Path) -> None:
    path = _write(tmp_path, "[identity\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)


@pytest.mark.parametrize("value", [None, ""])
def test_a_passphrase_variable_that_is_unset_or_empty_is_named(
    value: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty variable (an unfilled secret in a deployment) is no passphrase; it is not tried as one."""
    if value is None:
        monkeypatch.delenv("TEST_KEY_PASSPHRASE", raising=False)
    else:
        monkeypatch.setenv("TEST_KEY_PASSPHRASE", value)
    with pytest.raises(ConfigError, match="'TEST_KEY_PASSPHRASE', which is not set or empty"):
        KeySettings(passphrase_env="TEST_KEY_PASSPHRASE").passphrase()


def test_our_own_rsa_key_below_2048_bits_is_refused(tmp_path: Path) -> None:
    weak = make_key_pair("BE-FAMHP", key_size=1024)
    key_file, cert_file = tmp_path / "k.pem", tmp_path / "c.pem"
    key_file.write_bytes(
        weak.private_key.private_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_file.write_bytes(weak.certificate.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(KeyMaterialError, match="at least 2048 bits; this is a 1024-bit RSA key"):
        load_key_pair(key_file, cert_file, None, now=NOW)


def test_the_admin_tokens_file_names_each_administrator_and_a_bad_line_is_named(tmp_path: Path) -> None:
    digest = "a" * 64
    tokens = tmp_path / "admin-tokens"
    tokens.write_text(
        f"# who may edit partner profiles\nalice {digest}  # since 2026-11\n\nbob.smith@famhp {'b' * 64}\n"
    )
    assert AdminSettings(tokens_file=tokens).named_tokens() == {
        digest: "alice",
        "b" * 64: "bob.smith@famhp",
    }
    tokens.write_text(f"alice {digest}\ncarol not-a-hash\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(tokens))}:2: expected 'NAME SHA256'"):
        AdminSettings(tokens_file=tokens).named_tokens()


def test_admin_token_prints_a_token_and_the_line_that_admits_it() -> None:
    result = CliRunner().invoke(cli.app, ["admin", "token", "alice"])
    assert result.exit_code == 0, result.output
    token = result.output.splitlines()[0].rsplit(" ", 1)[1]
    assert (
        result.output.splitlines()[1]
        == f"line for [admin].tokens_file: alice {hashlib.sha256(token.encode()).hexdigest()}"
    )
    assert CliRunner().invoke(cli.app, ["admin", "token", "al ice"]).exit_code == 1


IDENTITY = '[identity]\nparty_id="X"\ncountry="BE"\nauthority_name="A"\n'


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('[store]\nurl="postgresql+psycopg://gateway:S3cretPw@db/gw"\n', "[store].url: expected a"),
        ('[store]\nurl="postgresql+asyncpg://gateway:S3cretPw@db:54x2/gw"\n', "HOST:PORT/DATABASE"),
        ("[keys]\npassphrase='S3cretPw'\n", "[keys].passphrase: unknown key; expected one of: private_key,"),
        ('[retention]\ndelivered_days=1\n[store]\nurl="postgresql+asyncpg://g:S3cretPw@db/gw"\n', "[retention]"),
        ("[outbund]\nsweep_seconds=5\n", "[outbund]: unknown section; expected one of: identity, http,"),
        ("[outbound]\nsweep_seconds=inf\n", "[outbound].sweep_seconds: Input should be a finite number"),
        ("[http]\nport=0\n", "[http].port: Input should be greater than or equal to 1"),
        ("[inbound]\nmax_message_bytes=1\n", "[inbound].max_message_bytes: Input should be greater than or equal"),
    ],
)
def test_a_configuration_mistake_names_the_key_and_never_echoes_a_secret(
    tmp_path: Path, extra: str, expected: str
) -> None:
    """A store URL carries its password, and a passphrase put under the wrong key is still a passphrase: the
    error named them with the value as given. An infinite interval crashed the running gateway."""
    path = _write(tmp_path, IDENTITY + extra)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert expected in str(caught.value) and "S3cretPw" not in str(caught.value), str(caught.value)


def test_files_that_are_not_utf_8_are_named_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, IDENTITY)
    path.write_bytes(path.read_bytes() + b"# K\xf6ln\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_settings(path)
    secret = tmp_path / "passphrase"
    secret.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"\[keys\].passphrase_file: .* is not UTF-8 text"):
        KeySettings(passphrase_file=secret).passphrase()


def test_a_value_error_names_the_line_the_key_is_written_on(tmp_path: Path) -> None:
    """tomllib keeps no positions; the loader finds the key's line, whether written under its table, as a
    dotted or quoted key, or as a table of its own."""
    path = _write(
        tmp_path,
        IDENTITY
        + "# the HTTP face\n[http]\nhost = '127.0.0.1'\n  port = 0  # a mistake\n"
        + 'inbound."max_message_bytes" = 1\n'
        + "[outbund]\nsweep_seconds = 5\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "line 8: [http].port: Input should be greater than or equal to 1" in message, message
    assert "line 9: [http].inbound: unknown key" in message, message  # under [http], not [inbound]
    assert "line 10: [outbund]: unknown section" in message, message


def test_the_default_store_is_beside_the_config_folder_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With [store] url left out, the database was opened at the working directory's ../var/gateway.db: two
    authorities set up side by side shared one store, and a service started elsewhere opened an empty one."""
    site = tmp_path / "site" / "config"
    site.mkdir(parents=True)
    text = (ROOT / "config" / "gateway.toml").read_text()
    (site / "gateway.toml").write_text(re.sub(r'(?m)^url = "sqlite\+aiosqlite:///\.\./var/gateway\.db"\n', "", text))
    elsewhere = tmp_path / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    settings = load_settings(site / "gateway.toml")
    assert settings.store.url == f"sqlite+aiosqlite:///{tmp_path / 'site' / 'var' / 'gateway.db'}"
