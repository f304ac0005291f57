"""``permit-gateway messages ...``: what an operator on the server needs without the REST API: list messages
by direction and state, show one with its timeline, and send a FAILED one again. It works on the store the
configuration names, so it also works while the gateway is stopped; a running gateway sends a retried message
at its next sweep (``[outbound].sweep_seconds``)."""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import make_url

from gateway.clock import SystemClock
from gateway.errors import GatewayError
from gateway.interfaces.cli_common import (
    DEFAULT_CONFIG,
    STORE_ERRORS,
    ConfigOption,
    console,
    fail,
    load_profiles_of,
    settings_of,
    shown_url,
    store_unusable,
)
from gateway.outbound.retry import retry_failed
from gateway.profiles.trust import Partners
from gateway.settings import Settings
from gateway.store import (
    Direction,
    MessageRecord,
    MessageStore,
    State,
    create_engine,
    direction_named,
    state_named,
)
from gateway.store.migrate import SchemaMismatch, require_head

messages_app = typer.Typer(help="Messages in the store: list, show, retry a FAILED one.")
T = TypeVar("T")


def _run(settings: Settings, work: Callable[[MessageStore], Awaitable[T]]) -> T:
    """``work`` on the configured store, or exit 1 saying why the store cannot be used and what to do."""
    url = settings.store.url
    _require_sqlite_file(url)
    try:
        return asyncio.run(_on_store(url, work))
    except STORE_ERRORS as exc:
        raise store_unusable(url, exc) from None


async def _on_store(url: str, work: Callable[[MessageStore], Awaitable[T]]) -> T:
    engine = create_engine(url)
    try:
        try:
            await require_head(engine)  # a store not upgraded yet lacks columns every query names
        except SchemaMismatch as exc:
            raise fail(str(exc)) from None
        return await work(MessageStore(engine, SystemClock()))
    finally:
        await engine.dispose()


def _shown(text: str) -> str:
    """``text`` with its control and format characters (C0, C1, bidi overrides) as ``\\uXXXX``: a partner's words
    must not move the cursor, recolour or reorder what the terminal shows. Tab and newline stay: layout."""
    return "".join(_escaped(c) if unicodedata.category(c) in ("Cc", "Cf") and c not in "\t\n" else c for c in text)


def _escaped(character: str) -> str:
    code = ord(character)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _require_sqlite_file(url: str) -> None:
    """A mistyped SQLite path would otherwise be created as an empty database."""
    parsed = make_url(url)
    database = parsed.database or ""
    on_disk = parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
    if on_disk and not Path(database).is_file():
        raise fail(f"no store at {database}; check [store].url, or run 'permit-gateway db upgrade' to create it")


def _direction(text: str | None) -> Direction | None:
    try:
        return direction_named(text) if text else None
    except ValueError as exc:
        raise fail(f"--direction {exc}", code=2) from None


def _state(text: str | None) -> State | None:
    try:
        return state_named(text) if text else None
    except ValueError as exc:
        raise fail(f"--state {exc}", code=2) from None


@messages_app.command("list")
def list_messages(
    config: ConfigOption = DEFAULT_CONFIG,
    direction: Annotated[str | None, typer.Option(help="outbound or inbound; both when left out")] = None,
    state: Annotated[
        str | None, typer.Option(help="FAILED, RETRY_WAIT, DELIVERED, ...; all when left out")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="how many, newest first")] = 50,
) -> None:
    """The newest messages, with their state and, for those that went wrong, why."""
    settings = settings_of(config)
    wanted_direction, wanted_state = _direction(direction), _state(state)

    async def run(store: MessageStore) -> list[MessageRecord]:
        return await store.recent(limit=limit, direction=wanted_direction, state=wanted_state)

    records = _run(settings, run)
    table = Table(title=f"{len(records)} message(s)")
    for column in ("MessageId", "dir", "partner", "document", "state", "attempts", "updated (UTC)", "last error"):
        table.add_column(column, overflow="fold")
    for r in records:
        document = f"{r.document_type or ''} {r.document_number or ''}".strip() or r.action
        updated = r.updated_at.strftime("%Y-%m-%d %H:%M:%S")
        error = (r.last_error or "")[:160]
        values = (
            r.message_id,
            r.direction.value,
            r.partner_id,
            document,
            r.state.value,
            str(r.attempts),
            updated,
            error,
        )
        table.add_row(*(Text(_shown(v)) for v in values))  # partners' words, never read as markup
    console.print(table)


@messages_app.command("show")
def show(
    message_id: Annotated[str, typer.Argument(help="the MessageId")], config: ConfigOption = DEFAULT_CONFIG
) -> None:
    """One message: its fields and its whole timeline."""
    settings = settings_of(config)

    async def run(store: MessageStore) -> tuple[MessageRecord, list[tuple[str, str, str, str]]] | None:
        record = await store.find_either(message_id)
        if record is None:
            return None
        events = await store.events(record.id)
        rows = [
            (e.at.strftime("%Y-%m-%d %H:%M:%S"), e.kind, e.state.value if e.state else "", str(e.detail))
            for e in events
        ]
        return record, rows

    found = _run(settings, run)
    if found is None:
        raise fail(f"no message with MessageId {message_id!r} in {shown_url(settings.store.url)}")
    record, events = found
    heading = (
        f"{record.message_id}  {record.direction.value}  partner {record.partner_id}  "
        f"{record.document_type or record.action} {record.document_number or ''}  "
    )
    console.print(Text.assemble(_shown(heading), (record.state.value, "bold")), highlight=False)
    if record.last_error:
        console.print(Text(f"last error: {_shown(record.last_error)}"), highlight=False)
    table = Table(title="timeline")
    for column in ("at (UTC)", "event", "state", "detail"):
        table.add_column(column, overflow="fold")
    for row in events:
        table.add_row(*(Text(_shown(v)) for v in row))
    console.print(table)


@messages_app.command("retry")
def retry(
    message_id: Annotated[str, typer.Argument(help="the MessageId of a FAILED outbound message")],
    reason: Annotated[str, typer.Option(help="why it may go now (kept in its timeline)")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Send a FAILED message again under its MessageId and signed bytes, with a fresh round of attempts and time
    to live from the partner's current profile."""
    settings = settings_of(config)
    clock = SystemClock()
    why = f"operator (CLI): {reason}"
    try:
        partners = Partners(
            load_profiles_of(settings).registry, now=clock.now(), max_age=settings.inbound.duplicate_window
        )
        record = _run(settings, lambda store: retry_failed(store, partners, clock, message_id, reason=why))
    except GatewayError as exc:
        raise fail(str(exc)) from None
    console.print(
        Text(
            f"{record.message_id} is {record.state.value}: a running gateway sends it at its next sweep "
            f"(within [outbound].sweep_seconds = {settings.outbound.sweep_seconds:g} s)"
        ),
        highlight=False,
    )
