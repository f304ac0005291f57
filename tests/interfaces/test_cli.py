"""``permit-gateway db upgrade``, ``serve`` and ``demo``: the user's mistakes end in a message, not a traceback."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from gateway.interfaces.cli import app
from gateway.interfaces.cli_common import shown_url
from gateway.store import create_engine
from tests.conftest import free_port
from tests.profiles.helpers import default_structlog

ROOT = Path(__file__).resolve().parents[2]
SECRET_URL = "postgresql+asyncpg://gateway:S3cretPw@db.example:5432/gateway"


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    yield from default_structlog()


def config_with(tmp_path: Path, *, url: str, port: int = 8480) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""data_dir = "var"
[identity]
party_id = "BE-FAMHP"
country = "BE"
authority_name = "FAMHP"
[http]
host = "127.0.0.1"
port = {port}
[store]
url = "{url}"
"""
    )
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_db_upgrade_never_prints_the_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sqlite = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"

    def on_sqlite(_url: str, **_options: float) -> AsyncEngine:
        return create_engine(sqlite)

    monkeypatch.setattr("gateway.store.create_engine", on_sqlite)
    code, output = invoke("db", "upgrade", "--config", str(config_with(tmp_path, url=SECRET_URL)))
    assert code == 0, output
    assert "S3cretPw" not in output
    assert "store at postgresql+asyncpg://gateway:***@db.example:5432/gateway is up to date" in output


def test_db_upgrade_names_an_unreachable_store(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+asyncpg://gateway:S3cretPw@127.0.0.1:{port}/gateway"
    code, output = invoke("db", "upgrade", "--config", str(config_with(tmp_path, url=url)))
    assert code == 1 and "S3cretPw" not in output
    assert f"cannot use the store at postgresql+asyncpg://gateway:***@127.0.0.1:{port}/gateway" in output


def test_serve_on_a_taken_port_names_it_and_the_setting(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = config_with(tmp_path, url=url, port=port)
        code, output = invoke("serve", "--config", str(config), "--log-level", "ERROR")
    assert code == 1, output
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in output
    assert f"set another [http] port in {config}" in output


@pytest.fixture
def examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of examples/valid whose parent has no as-of.txt yet."""
    monkeypatch.chdir(ROOT)
    folder = tmp_path / "mine" / "valid"
    shutil.copytree(ROOT / "examples" / "valid", folder)
    return folder


def test_demo_names_a_missing_as_of_file(tmp_path: Path, examples: Path) -> None:
    code, output = invoke("demo", "--data-dir", str(tmp_path / "var"), "--examples", str(examples))
    assert code == 1, output
    assert f"demo failed: cannot read {examples.parent / 'as-of.txt'}: No such file or directory" in output
    assert "in a folder that holds as-of.txt" in output


def test_demo_names_a_missing_example(tmp_path: Path, examples: Path) -> None:
    shutil.copy(ROOT / "examples" / "as-of.txt", examples.parent)
    (examples / "CH-EA-2026-0001.xml").unlink()
    code, output = invoke("demo", "--data-dir", str(tmp_path / "var"), "--examples", str(examples))
    assert code == 1, output
    assert f"demo failed: cannot read {examples / 'CH-EA-2026-0001.xml'}: No such file or directory" in output


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('[api]\ntoken_env = "PERMIT_GATEWAY_TEST_UNSET"\n', "the gateway did not start: [api].token_env names"),
        ("", "the gateway did not start: private key file"),  # the default key files are not there
    ],
)
def test_serve_names_what_it_found_wrong_at_start_instead_of_a_traceback(
    tmp_path: Path, extra: str, expected: str
) -> None:
    config = config_with(tmp_path, url=f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}", port=free_port())
    config.write_text(config.read_text() + extra)
    code, output = invoke("serve", "--config", str(config))
    assert code == 1 and expected in output and "Traceback" not in output, output


@pytest.mark.parametrize("url", ["postgresql+asyncpg://gateway:S3cretPw@db:port/gateway", "not a url at all"])
def test_an_unreadable_store_url_is_shown_without_its_secret_and_without_a_traceback(url: str) -> None:
    assert shown_url(url) == "(an unreadable URL)"
