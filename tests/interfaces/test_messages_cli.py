"""``permit-gateway messages list|show|retry`` on a real SQLite store, through typer's CliRunner."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.clock import SystemClock
from gateway.interfaces.cli import app
from gateway.profiles import DevPki
from gateway.store import Direction, Event, MessageStore, State, create_engine, upgrade
from tests.conftest import free_port
from tests.profiles.helpers import profile_text
from tests.store.helpers import new_message

FAILED_BECAUSE = "EBMS:0301 MissingReceipt: no receipt after 4 attempts"


async def _fill(url: str) -> None:
    """One FAILED outbound message, one waiting, one received."""
    engine = create_engine(url)
    await upgrade(engine)
    store = MessageStore(engine, SystemClock())
    await store.add(new_message("failed@be"))
    await store.add(new_message("waiting@be"))
    await store.add(new_message("in@ch", direction=Direction.INBOUND))
    (claimed,) = await store.claim_due("node", limit=1, lease=timedelta(minutes=1))
    await store.move(claimed.id, Event.GIVE_UP, detail={"reason": FAILED_BECAUSE}, last_error=FAILED_BECAUSE)
    await engine.dispose()


@pytest.fixture
def config(tmp_path: Path, pki: DevPki) -> Path:
    return config_with(tmp_path, pki, _fill)


def config_with(tmp_path: Path, pki: DevPki, fill: Callable[[str], Awaitable[None]]) -> Path:
    """A gateway.toml whose SQLite store ``fill`` has put messages in."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "ch-swissmedic.yaml").write_text(profile_text("ch-swissmedic", "ch-swissmedic.crt.pem"))
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    asyncio.run(fill(url))
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""data_dir = "var"
[identity]
party_id = "BE-FAMHP"
country = "BE"
authority_name = "FAMHP"
[store]
url = "{url}"
[profiles]
folder = "profiles"
certificates = "{pki.folder}"
"""
    )
    return path


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["messages", *args, "--config", str(config)])
    return result.exit_code, result.output


def _state_of(config: Path, message_id: str) -> tuple[State, list[str]]:
    async def read() -> tuple[State, list[str]]:
        engine = create_engine(f"sqlite+aiosqlite:///{config.parent / 'gateway.db'}")
        store = MessageStore(engine, SystemClock())
        record = await store.find(Direction.OUTBOUND, message_id)
        assert record is not None
        events = [f"{e.kind}: {e.detail.get('reason', '')}" for e in await store.events(record.id)]
        await engine.dispose()
        return record.state, events

    return asyncio.run(read())


def test_list_filters_by_direction_and_state_and_shows_why(config: Path) -> None:
    code, out = run(config, "list", "--state", "failed", "--direction", "outbound")
    assert code == 0 and "failed@be" in out and "waiting@be" not in out and "in@ch" not in out
    assert "EBMS:0301" in out and "1 message(s)" in out
    code, out = run(config, "list")
    assert code == 0 and all(m in out for m in ("failed@be", "waiting@be", "in@ch"))


def test_list_json_gives_whole_message_ids_a_line_each(config: Path) -> None:
    """The table folds a long MessageId over several lines, which a copy takes with the breaks."""
    code, out = run(config, "list", "--json", "--direction", "outbound")
    assert code == 0, out
    listed = [json.loads(line) for line in out.splitlines()]
    assert {m["message_id"] for m in listed} == {"failed@be", "waiting@be"}
    failed = next(m for m in listed if m["message_id"] == "failed@be")
    assert failed["state"] == "FAILED" and failed["direction"] == "outbound" and "EBMS:0301" in failed["last_error"]


def test_show_of_a_cut_short_message_id_names_the_ones_that_start_so(config: Path) -> None:
    """A MessageId copied from the folded table lost its end: "no message" left the operator to guess."""
    code, out = run(config, "show", "fail")
    text = " ".join(out.split())
    assert code == 1 and "no message with MessageId 'fail'" in text and "MessageIds that start so: failed@be" in text


def test_list_refuses_an_unknown_state_or_direction_naming_the_choices(config: Path) -> None:
    code, out = run(config, "list", "--state", "LOST")
    assert code == 2 and "FAILED" in out and "'LOST'" in out
    code, out = run(config, "list", "--direction", "sideways")
    assert code == 2 and "outbound or inbound" in out


def test_show_prints_the_timeline(config: Path) -> None:
    code, out = run(config, "show", "failed@be")
    assert code == 0 and "FAILED" in out and "submitted" in out and "give_up" in out and FAILED_BECAUSE[:30] in out
    code, out = run(config, "show", "nobody@nowhere")
    assert code == 1 and "no message with MessageId 'nobody@nowhere'" in out


def test_retry_refuses_a_message_that_is_not_failed(config: Path) -> None:
    """Sending again, and building anew, are in tests/interfaces/test_messages_cli_review.py on messages a real
    Submitter built: these fixture messages have no signed bytes to send again."""
    code, out = run(config, "retry", "waiting@be", "--reason", "impatient")
    assert code == 1 and "only a FAILED message can be retried" in out
    assert _state_of(config, "waiting@be")[0] is State.SUBMITTED


def test_a_partners_words_are_shown_as_they_are_never_read_as_markup(config: Path) -> None:
    """A MessageId with a domain literal and an error text with brackets: rich would parse both as markup."""
    said = "EBMS:0004 Other: [/bold] closing tag in [partner] text"

    async def add() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{config.parent / 'gateway.db'}")
        store = MessageStore(engine, SystemClock())
        record, _ = await store.add(new_message("a@[/x]"))
        await store.note(record.id, "note", {}, last_error=said)
        await engine.dispose()

    asyncio.run(add())
    code, listed = run(config, "list")
    assert code == 0, listed
    assert "a@[/x]" in listed and "[partner]" in listed
    code, shown = run(config, "show", "a@[/x]")
    assert code == 0, shown
    assert f"last error: {said}" in shown


def _with_store_url(config: Path, url: str) -> Path:
    text = config.read_text()
    config.write_text(text.replace(f"sqlite+aiosqlite:///{config.parent / 'gateway.db'}", url))
    return config


COMMANDS = [("list",), ("show", "failed@be"), ("retry", "failed@be", "--reason", "fixed")]


def test_show_never_prints_the_store_password(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sqlite = f"sqlite+aiosqlite:///{config.parent / 'gateway.db'}"
    monkeypatch.setattr("gateway.interfaces.messages_cli.create_engine", lambda _url: create_engine(sqlite))
    _with_store_url(config, "postgresql+asyncpg://gateway:S3cretPw@db.example:5432/gateway")
    code, out = run(config, "show", "nobody@nowhere")
    assert code == 1 and "S3cretPw" not in out
    assert "in postgresql+asyncpg://gateway:***@db.example:5432/gateway" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_a_store_without_tables_asks_for_db_upgrade(config: Path, command: tuple[str, ...]) -> None:
    empty = config.parent / "empty.db"
    sqlite3.connect(empty).close()
    code, out = run(_with_store_url(config, f"sqlite+aiosqlite:///{empty}"), *command)
    assert code == 1 and "Traceback" not in out
    assert "has no tables yet; run 'permit-gateway db upgrade' first" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_a_mistyped_sqlite_path_is_named_and_not_created(config: Path, command: tuple[str, ...]) -> None:
    mistyped = config.parent / "nowhere" / "gatewy.db"
    code, out = run(_with_store_url(config, f"sqlite+aiosqlite:///{mistyped}"), *command)
    assert code == 1
    assert f"no store at {mistyped}; check [store].url, or run 'permit-gateway db upgrade'" in out
    assert not mistyped.parent.exists()


def test_an_unreachable_store_is_named_without_its_password(config: Path) -> None:
    url = f"postgresql+asyncpg://gateway:S3cretPw@127.0.0.1:{free_port()}/gateway"
    code, out = run(_with_store_url(config, url), "list")
    assert code == 1 and "S3cretPw" not in out and "Traceback" not in out
    assert "cannot use the store at postgresql+asyncpg://gateway:***@127.0.0.1:" in out
    assert "check [store].url and that the database is running" in out
