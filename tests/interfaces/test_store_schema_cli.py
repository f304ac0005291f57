"""The commands on a store whose schema is not this gateway's (a newer gateway upgraded it, or it was not
upgraded yet) say so, with the fix, instead of a traceback or a missing column; ``messages`` shows a partner's
control and format characters escaped, never raw to the terminal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from gateway.clock import SystemClock
from gateway.interfaces.cli import app
from gateway.profiles import DevPki
from gateway.store import MessageStore, create_engine, upgrade
from tests.conftest import free_port
from tests.store.helpers import new_message

HEAD = "0015"
COMMANDS = [("list",), ("show", "m@be"), ("retry", "m@be", "--reason", "fixed")]


def _config(tmp_path: Path, url: str) -> Path:
    (tmp_path / "profiles").mkdir(exist_ok=True)  # `messages retry` loads the profiles first
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""data_dir = "var"
[identity]
party_id = "BE-FAMHP"
country = "BE"
authority_name = "FAMHP"
[http]
host = "127.0.0.1"
port = {free_port()}
[store]
url = "{url}"
[profiles]
folder = "profiles"
certificates = "profiles"
"""
    )
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


async def _store_at(url: str, revision: str, *, set_to: str | None = None, last_error: str | None = None) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine, revision)
        if set_to is not None:
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": set_to})
        if last_error is not None:
            store = MessageStore(engine, SystemClock())
            record, _ = await store.add(new_message("m@be"))
            await store.note(record.id, "note", {"said": last_error}, last_error=last_error)
    finally:
        await engine.dispose()


@pytest.fixture
def newer(tmp_path: Path, store_url: str) -> Path:
    """A store a newer gateway upgraded: its revision is one this gateway does not know."""
    asyncio.run(_store_at(store_url, "head", set_to="0099"))
    return _config(tmp_path, store_url)


NEWER = f"is at revision 0099, newer than this gateway's (head {HEAD}): run the gateway version that upgraded it"


def test_db_upgrade_on_a_newer_schema_names_both_revisions(newer: Path) -> None:
    code, output = invoke("db", "upgrade", "--config", str(newer))
    assert code == 1 and "Traceback" not in output and "CommandError" not in output, output
    assert NEWER in output and "or upgrade this one" in output


def test_serve_on_a_newer_schema_names_both_revisions(newer: Path, pki: DevPki) -> None:
    files = pki.files_for("BE-FAMHP")  # the start checks our key files before it opens the store
    newer.write_text(
        newer.read_text() + f'[keys]\nprivate_key = "{files.key}"\ncertificate = "{files.certificate}"\n'
    )
    code, output = invoke("serve", "--config", str(newer), "--log-level", "ERROR")
    assert code == 1 and "Traceback" not in output, output
    assert "the gateway did not start: the store's schema at " in output and NEWER in output


@pytest.mark.parametrize("command", COMMANDS)
def test_messages_on_a_newer_schema_names_both_revisions(newer: Path, command: tuple[str, ...]) -> None:
    code, output = invoke("messages", *command, "--config", str(newer))
    assert code == 1 and "Traceback" not in output and NEWER in output, output


@pytest.mark.parametrize("command", COMMANDS)
def test_messages_on_a_store_not_upgraded_yet_ask_for_db_upgrade(tmp_path: Path, command: tuple[str, ...]) -> None:
    """A 0006 store lacks messages.mpc: every query failed on 'no such column', blaming the connection."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    asyncio.run(_store_at(url, "0006"))
    code, output = invoke("messages", *command, "--config", str(_config(tmp_path, url)))
    assert code == 1 and "Traceback" not in output, output
    assert (
        f"is at revision 0006, older than this gateway's (head {HEAD}); run 'permit-gateway db upgrade'" in output
    )
    assert "no such column" not in output


# CSI 2J (clear the screen) and CSI 31m (red) as C1 controls, ESC, a right-to-left override, a zero-width joiner
SAID = "EBMS:0004 INN \u009b2J\u009b31mmorph\u202eenip \x1b[0m\u200d\U000e0001 end"
ESCAPED = "EBMS:0004 INN \\u009b2J\\u009b31mmorph\\u202eenip \\u001b[0m\\u200d\\U000e0001 end"


@pytest.mark.parametrize("command", [("list",), ("show", "m@be")])
def test_messages_shows_a_partners_control_characters_escaped(tmp_path: Path, command: tuple[str, ...]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    asyncio.run(_store_at(url, "head", last_error=SAID))
    code, output = invoke("messages", *command, "--config", str(_config(tmp_path, url)))
    assert code == 0, output
    assert not any(c in output for c in "\u009b\u202e\x1b\u200d\U000e0001"), ascii(output)
    cells = "".join(line.strip(" │") for line in output.splitlines())  # the list's table folds long cells
    assert "".join(ESCAPED.split()) in "".join(cells.split()), output
