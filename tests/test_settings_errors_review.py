"""The configuration's errors as the error review found them: Python's and pydantic's own words reached the
administrator (``<class 'pathlib.Path'>``, ``Value error,``, a regular expression), a key outside any section was
shown as a section, and an ``*_env`` key given the secret itself repeated the secret in the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import AdminSettings, ApiSettings, KeySettings, load_settings

IDENTITY = '[identity]\nparty_id="X"\ncountry="BE"\nauthority_name="A"\n'
SECRET = "Correct Horse Battery Staple 42!"


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "data_dir = 5\n" + IDENTITY,
            "line 1: data_dir: expected a path, as text in quotes (got 5); data_dir: the folder of the gateway's",
        ),
        ("keys = 5\n" + IDENTITY, "line 1: [keys]: expected a section (a [table] of keys) (got 5)"),
        ("datadir = 'x'\n" + IDENTITY, "line 1: datadir: unknown top-level key; expected one of: identity, http,"),
        (
            IDENTITY + '[store]\nurl="sqlite:///x.db"\n',
            "line 6: [store].url: expected a sqlite+aiosqlite:/// or postgresql+asyncpg:// URL",
        ),
        (
            IDENTITY.replace('"BE"', '"Belgium"'),
            "line 3: [identity].country: expected an ISO 3166-1 alpha-2 country code, two capital letters such as "
            "BE (got 'Belgium')",
        ),
        (
            IDENTITY + "[outbound]\nlease_seconds = -1\n",
            "[outbound].lease_seconds: Input should be greater than 0 (got -1); lease_seconds: how long a node owns",
        ),
        (IDENTITY + "[keys]\nprivate_key = ['a']\n", "[keys].private_key: expected a path, as text in quotes"),
        (IDENTITY + "[admin]\ntoken_env = true\n", "[admin].token_env: expected text, in quotes; token_env: "),
        (
            IDENTITY + "[retention]\ndelivered_days = 1\n",
            "configuration: [retention].delivered_days = 1 days is shorter than",
        ),
    ],
    ids=["key-outside-sections", "section-as-value", "unknown-top-level", "url", "country", "described", "path",
         "text", "model-check"],
)  # fmt: skip
def test_a_configuration_error_is_in_plain_words_with_the_keys_description(
    tmp_path: Path, text: str, expected: str
) -> None:
    message = _error(tmp_path, text)

    assert expected in message, message
    for internal in (
        "<class",
        "pathlib",
        "Value error",
        "should match pattern",
        "^[A-Z]",
        "instance of",
        "[data_dir]",
    ):
        assert internal not in message, message


@pytest.mark.parametrize(
    ("settings", "key", "secret"),
    [
        (lambda env: KeySettings(passphrase_env=env).passphrase(), "[keys].passphrase_env", "passphrase"),
        (lambda env: ApiSettings(token_env=env).token(), "[api].token_env", "token"),
        (lambda env: AdminSettings(token_env=env).token(), "[admin].token_env", "token"),
    ],
    ids=["passphrase", "api", "admin"],
)
def test_an_env_key_given_the_secret_itself_says_so_without_repeating_it(
    settings: object, key: str, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERMIT_GATEWAY_TEST_SECRET", "s3cret")
    use = settings
    assert callable(use)
    with pytest.raises(ConfigError) as caught:
        use(SECRET)

    message = str(caught.value)
    assert SECRET not in message and "Correct Horse" not in message, message
    assert message.startswith(f"{key} must name an environment variable"), message
    assert f"it looks like the {secret} itself" in message and "Put the variable's name there" in message
    assert use("PERMIT_GATEWAY_TEST_SECRET") is not None  # a name is still looked up


def test_an_env_key_naming_an_unset_variable_still_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERMIT_GATEWAY_UNSET", raising=False)
    with pytest.raises(
        ConfigError, match="names the environment variable 'PERMIT_GATEWAY_UNSET', which is not set"
    ):
        ApiSettings(token_env="PERMIT_GATEWAY_UNSET").token()


def test_the_national_systems_folders_must_be_folders_of_their_own(tmp_path: Path) -> None:
    """With the inbox and the outbox one folder, every received permit was taken as a document to send and
    refused into the rejected folder: delivered, receipted, and never in the national system's inbox."""
    config = tmp_path / "gateway.toml"
    identity = '[identity]\nparty_id = "AT-BASG"\ncountry = "AT"\nauthority_name = "BASG"\n'
    config.write_text(f'data_dir = "var"\n{identity}[folders]\ninbox = "exchange"\noutbox = "exchange/"\n')
    with pytest.raises(ConfigError) as same:
        load_settings(config)
    assert "[folders].inbox and [folders].outbox are the same folder" in str(same.value)
    assert "received permits are delivered there: give each its own folder" in str(same.value)

    config.write_text(f'data_dir = "var"\n{identity}[folders]\nrejected = "var"\n')
    with pytest.raises(ConfigError, match=r"\[folders\].rejected and data_dir are the same folder"):
        load_settings(config)

    config.write_text(f'data_dir = "var"\n{identity}[folders]\noutbox = "out"\ninbox = "out/sent"\n')
    with pytest.raises(ConfigError, match=r"\[folders\].inbox \(.*\) is inside \[folders\].outbox"):
        load_settings(config)


def test_a_configuration_saved_with_a_byte_order_mark_says_so(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_bytes(b'\xef\xbb\xbf[identity]\nparty_id = "AT-BASG"\ncountry = "AT"\nauthority_name = "BASG"\n')
    with pytest.raises(ConfigError, match=r"starts with a byte-order mark .* save it as UTF-8 without one"):
        load_settings(config)
