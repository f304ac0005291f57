"""A new administrator's first steps (README "Running a real gateway"): each refusal names the fix, and a start
that cannot work stops before the store is opened and "gateway started" is logged."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.clock import SystemClock
from gateway.errors import ConfigError
from gateway.interfaces.cli import app
from gateway.interfaces.demo import DemoFailed, gateway_settings, start_gateway, write_profiles
from gateway.interfaces.node import create_app
from gateway.profiles import DevPki, generate_dev_pki
from gateway.settings import Settings, load_settings
from tests.conftest import free_port
from tests.profiles.conftest import AUTHORITIES
from tests.profiles.helpers import default_structlog

PASSPHRASE = "setup-review-passphrase"


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    yield from default_structlog()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return generate_dev_pki(tmp_path_factory.mktemp("pki"), AUTHORITIES, now=datetime.now(UTC))


def write_config(folder: Path, extra: str = "") -> Path:
    """A configuration as shipped: [keys] at its default files, which a fresh installation does not have."""
    (folder / "profiles").mkdir(exist_ok=True)
    config = folder / "gateway.toml"
    config.write_text(
        f"""data_dir = "var"
[identity]
party_id = "BE-FAMHP"
country = "BE"
authority_name = "FAMHP"
[http]
port = {free_port()}
[store]
url = "sqlite+aiosqlite:///var/gateway.db"
[profiles]
folder = "profiles"
certificates = "profiles"
{extra}"""
    )
    return config


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"SETUP_PASS": PASSPHRASE})
    return result.exit_code, result.output


def flat(output: str) -> str:
    """The output on one line, without the frame typer draws around usage errors."""
    return " ".join(output.replace("│", " ").split())


def says_how_to_make_a_key(output: str) -> bool:
    text = flat(output)
    needed = ("[keys].keystore", "[keys].passphrase_env or passphrase_file", "permit-gateway keys generate")
    return all(part in text for part in needed) and "[keys].private_key as PEM" in text


def test_serve_without_our_key_says_how_to_make_one(tmp_path: Path) -> None:
    code, output = invoke("serve", "--config", str(write_config(tmp_path)), "--log-level", "ERROR")

    assert code == 1, output
    default = tmp_path.parent / "var" / "keys" / "gateway.key.pem"  # ../var/keys, beside the configuration
    assert f"private key file {default} ([keys].private_key) not found" in flat(output)
    assert says_how_to_make_a_key(output), output
    assert not (tmp_path / "var" / "gateway.db").exists()  # refused before the store was opened


def test_ping_without_our_key_says_how_to_make_one(tmp_path: Path) -> None:
    code, output = invoke("profiles", "ping", "ch-swissmedic", "--config", str(write_config(tmp_path)))

    assert code == 1, output
    assert says_how_to_make_a_key(output), output


def test_a_certificate_without_its_key_file_is_named_too(tmp_path: Path, pki: DevPki) -> None:
    files = pki.files_for("BE-FAMHP")
    extra = f'[keys]\nprivate_key = "{files.key}"\ncertificate = "{tmp_path / "missing.crt.pem"}"\n'
    code, output = invoke("serve", "--config", str(write_config(tmp_path, extra)), "--log-level", "ERROR")

    assert code == 1, output
    assert f"certificate file {tmp_path / 'missing.crt.pem'} ([keys].certificate) not found" in flat(output)


def test_keys_commands_without_a_keystore_name_the_passphrase_it_needs(tmp_path: Path) -> None:
    config = str(write_config(tmp_path))
    for args in (("keys", "generate"), ("keys", "list"), ("keys", "rollover")):
        code, output = invoke(*args, "--config", config)
        text = flat(output)
        assert code == 1, (args, output)
        assert "set [keys].keystore" in text and "[keys].passphrase_env" in text, (args, output)
        assert "[keys].passphrase_file" in text, (args, output)


def test_the_fix_the_errors_name_works(tmp_path: Path) -> None:
    """What the refusals say, done: a keystore with its passphrase, 'keys generate', and the gateway starts."""
    config = write_config(tmp_path, '[keys]\nkeystore = "var/keystore"\npassphrase_env = "SETUP_PASS"\n')

    code, output = invoke("keys", "generate", "--config", str(config))
    assert code == 0, output
    assert "generated key" in output and "(current)" in output

    settings = settings_of_file(config)
    create_app(settings)  # its start-up checks pass


def settings_of_file(config: Path) -> Settings:
    return load_settings(config)


def test_rollover_names_the_setting_a_running_gateway_waits_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The alert for an expiring certificate sends the operator to 'keys generate' then 'keys rollover'."""
    monkeypatch.setattr("gateway.profiles.keystore.GENERATED_KEY_BITS", 2048)
    config = str(write_config(tmp_path, '[keys]\nkeystore = "var/keystore"\npassphrase_env = "SETUP_PASS"\n'))
    for status in ("current", "next"):
        code, output = invoke("keys", "generate", "--config", config)
        assert code == 0 and f"({status})" in output, output

    code, output = invoke("keys", "rollover", "--config", config)

    assert code == 0, output
    assert "A running gateway switches within [profiles].poll_seconds." in flat(output)


@pytest.mark.parametrize("status", ["previous", "retired"])
def test_a_new_key_is_offered_only_the_statuses_it_may_have(tmp_path: Path, status: str) -> None:
    config = str(write_config(tmp_path, '[keys]\nkeystore = "var/keystore"\npassphrase_env = "SETUP_PASS"\n'))
    for command in ("generate", "import"):
        code, output = invoke("keys", command, "--help")
        assert code == 0 and "<current|next>" in output and status not in output, output

    code, output = invoke("keys", "generate", "--status", status, "--config", config)

    assert code == 2, output  # a usage error, before anything is done
    assert f"'{status}' is not one of 'current', 'next'" in flat(output), output
    assert not (tmp_path / "var" / "keystore").exists()


@pytest.mark.parametrize(
    ("admin", "expected"),
    [
        ('token_env = "SETUP_REVIEW_UNSET_TOKEN"', "[admin].token_env names the environment variable"),
        ('tokens_file = "no-such-tokens-file"', "[admin].tokens_file: cannot read"),
    ],
)
def test_an_admin_token_that_cannot_be_read_stops_the_start_before_the_store_opens(
    tmp_path: Path, pki: DevPki, admin: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SETUP_REVIEW_UNSET_TOKEN", raising=False)
    files = pki.files_for("BE-FAMHP")
    extra = f'[keys]\nprivate_key = "{files.key}"\ncertificate = "{files.certificate}"\n[admin]\n{admin}\n'
    settings = settings_of_file(write_config(tmp_path, extra))

    with pytest.raises(ConfigError) as caught:
        create_app(settings)

    assert expected in str(caught.value)
    assert not (tmp_path / "var" / "gateway.db").exists()


async def test_the_demo_on_a_taken_port_says_which_setting_moves_it(tmp_path: Path, pki: DevPki) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        profiles = tmp_path / "profiles"
        write_profiles(profiles, {"BE-FAMHP": f"http://127.0.0.1:{port}/as4", "CH-SWISSMEDIC": "http://x/as4"})
        settings = gateway_settings(AUTHORITIES[0], pki, port=port, data_dir=tmp_path, profiles=profiles)

        with pytest.raises(DemoFailed) as caught:
            await start_gateway("BE", settings, SystemClock())

    message = str(caught.value)
    assert f"BE gateway cannot listen on 127.0.0.1:{port}" in message
    assert f"change the port in the endpoint of the BE-FAMHP profile in {profiles}" in message
    assert "'demo --profiles DIR'" in message
