"""``permit-gateway messages ...``: what an operator on the server needs without the REST API: list messages
by direction and state, show one with its timeline, and send a FAILED one again (as the REST retry does: the
same signed bytes, or a message built anew when they can no longer be delivered). It works on the store the
configuration names, so it also works while the gateway is stopped; a running gateway sends a retried message
at its next sweep (``[outbound].sweep_seconds``), unless its partner is held or pulls it."""

from __future__ import annotations

import asyncio
import json
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import make_url

from gateway.clock import SystemClock
from gateway.errors import GatewayError, KeyMaterialError
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
from gateway.interfaces.rest import message_json
from gateway.outbound.retry import SUPERSEDES, BuiltWith, retry_failed
from gateway.outbound.submit import Submitter, building_with_now, stored_built_with
from gateway.profiles.keystore import load_own_keys
from gateway.profiles.model import Transport
from gateway.profiles.trust import Partner, Partners
from gateway.settings import Settings
from gateway.store import (
    Direction,
    MessageRecord,
    MessageStore,
    PayloadStore,
    PermitRegistry,
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
    """``outbound`` or ``inbound``; also ``out`` or ``in``, as the tables show it."""
    if text in (Direction.OUTBOUND.value, Direction.INBOUND.value):
        return Direction(text)
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
    every: Annotated[
        bool, typer.Option("--all", help="every message of the direction and state, however many (no --limit)")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object per line, as GET /api/v1/messages gives it: whole MessageIds and errors")
    ] = False,
) -> None:
    """The newest messages, with their state and, for those that went wrong, why."""
    settings = settings_of(config)
    wanted_direction, wanted_state = _direction(direction), _state(state)

    async def run(store: MessageStore) -> list[MessageRecord]:
        if not every:
            return await store.recent(limit=limit, direction=wanted_direction, state=wanted_state)
        return await _every_message(store, wanted_direction, wanted_state)

    records = _run(settings, run)
    if as_json:
        for r in records:
            typer.echo(json.dumps(message_json(r), ensure_ascii=False))  # as the REST API gives it
        return
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


_ALL_PAGE = 500


async def _every_message(
    store: MessageStore, direction: Direction | None, state: State | None
) -> list[MessageRecord]:
    """Newest first, read a page at a time by id, so messages stored meanwhile neither repeat nor push others out."""
    found: list[MessageRecord] = []
    while True:
        before = found[-1].id if found else None
        page = await store.recent(limit=_ALL_PAGE, direction=direction, state=state, before=before)
        found.extend(page)
        if len(page) < _ALL_PAGE:
            return found


@messages_app.command("show")
def show(
    message_id: Annotated[str, typer.Argument(help="the MessageId")],
    config: ConfigOption = DEFAULT_CONFIG,
    direction: Annotated[
        str | None, typer.Option(help="outbound (out) or inbound (in): when a MessageId names several messages")
    ] = None,
    from_party: Annotated[
        str | None,
        typer.Option("--from", help="the sender's PartyId: when a MessageId names several messages"),
    ] = None,
) -> None:
    """One message: its fields and its whole timeline."""
    settings = settings_of(config)
    wanted = _direction(direction)

    async def run(store: MessageStore) -> list[MessageRecord] | tuple[MessageRecord, list[tuple[str, ...]]]:
        found = await store.find_named(message_id, direction=wanted, from_party=from_party)
        if len(found) != 1:
            return found
        events = await store.events(found[0].id)
        rows: list[tuple[str, ...]] = [
            (e.at.strftime("%Y-%m-%d %H:%M:%S"), e.kind, e.state.value if e.state else "", str(e.detail))
            for e in events
        ]
        return found[0], rows

    found = _run(settings, run)
    if isinstance(found, list):
        near = _run(settings, lambda store: store.ids_starting_with(message_id)) if not found else []
        raise _not_one(found, message_id, wanted, from_party, settings, near)
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


def _not_one(
    found: list[MessageRecord],
    message_id: str,
    direction: Direction | None,
    from_party: str | None,
    settings: Settings,
    near: list[str] | None = None,
) -> typer.Exit:
    """The exit for a MessageId that names no message, or several (a MessageId is its sender's: a partner may
    use one that names another message), listing them and the options that name each."""
    if not found:
        among = "".join(
            f" {name} {value!r}" for name, value in (("direction", direction), ("from", from_party)) if value
        )
        starting = f"; MessageIds that start so: {', '.join(near)}" if near else ""
        return fail(
            _shown(f"no message with MessageId {message_id!r}{among} in {shown_url(settings.store.url)}{starting}")
        )
    listed = "; ".join(
        f"{_direction_name(r)} from {r.from_party} (partner {r.partner_id}, {r.state.value})" for r in found
    )
    options = " or ".join(f"--direction {_direction_name(r)} --from {r.from_party}" for r in found)
    return fail(
        _shown(
            f"MessageId {message_id!r} names {len(found)} messages: {listed}. A MessageId is its sender's, and a "
            f"partner used one that names another message: name the one meant with {options}"
        )
    )


def _direction_name(record: MessageRecord) -> str:
    return "outbound" if record.direction is Direction.OUTBOUND else "inbound"


@messages_app.command("retry")
def retry(
    message_id: Annotated[str, typer.Argument(help="the MessageId of a FAILED outbound message")],
    reason: Annotated[str, typer.Option(help="why it may go now (kept in its timeline)")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Send a FAILED message again under its MessageId and signed bytes, with a fresh round of attempts and time
    to live from the partner's current profile; or, when those bytes can no longer be delivered (the partner's
    profile was corrected since it was built, or it is past the duplicate window), a message built anew from
    its document, with a new MessageId, that supersedes it."""
    settings = settings_of(config)
    clock = SystemClock()
    why = f"operator (CLI): {reason}"
    try:
        partners = Partners(
            load_profiles_of(settings).registry, now=clock.now(), max_age=settings.inbound.duplicate_window
        )
        record, because = _run(settings, lambda store: _retried(store, settings, partners, clock, message_id, why))
        when = _when_it_goes(record, partners, settings, clock.now())
    except GatewayError as exc:
        raise fail(str(exc)) from None
    if because is not None:
        console.print(
            Text(
                f"{message_id} cannot be sent again as it was built: {_shown(because)}.\n{record.message_id} was "
                f"built anew from its document and supersedes {message_id}."
            ),
            highlight=False,
        )
    console.print(Text(f"{record.message_id} is {record.state.value}: {_shown(when)}"), highlight=False)


async def _retried(
    store: MessageStore, settings: Settings, partners: Partners, clock: SystemClock, message_id: str, reason: str
) -> tuple[MessageRecord, str | None]:
    """The message retried, and why it was built anew when it was (else None)."""
    rebuilder = _Rebuilder(store, settings, partners, clock)
    record = await retry_failed(store, partners, clock, message_id, reason=reason, rebuilder=rebuilder)
    if record.message_id == message_id:
        return record, None
    events = [e for e in await store.events(record.id) if e.kind == SUPERSEDES]
    return record, str(events[0].detail.get("because", "")) if events else ""


class _Rebuilder:
    """The ``Rebuilder`` of a retry. Whether a message must be built anew is read from its stored bytes and the
    partner's profile alone; our keys are loaded only to build one, so an operator's shell that cannot read
    them (a key only the service account reads, its passphrase variable unset) still sends the same bytes
    again, as the README promises."""

    def __init__(self, store: MessageStore, settings: Settings, partners: Partners, clock: SystemClock) -> None:
        self._store = store
        self._settings = settings
        self._partners = partners
        self._clock = clock
        self._payloads = PayloadStore(settings.data_dir / "payloads")

    async def built_with(self, record: MessageRecord) -> BuiltWith | str:
        return await stored_built_with(self._payloads, record)

    def building_with(self, record: MessageRecord, partner: Partner) -> BuiltWith:
        return building_with_now(self._settings.identity, self._clock, record, partner)

    async def rebuild(
        self, record: MessageRecord, partner: Partner, *, because: str, reason: str
    ) -> MessageRecord:
        submitter = self._submitter(record, because)
        return await submitter.rebuild(record, partner, because=because, reason=reason)

    def _submitter(self, record: MessageRecord, because: str) -> Submitter:
        """A ``Submitter`` as the node makes one: our keys, the payload store, the partners' profiles."""
        try:
            keys = load_own_keys(self._settings.keys, now=self._clock.now())
        except (GatewayError, OSError) as exc:
            raise KeyMaterialError(
                f"{because}. A message built anew is signed with our keys ([keys] in the configuration), which "
                f"cannot be loaded: {exc}. Run the retry where they can be (as the gateway's service account, with "
                f"its passphrase set), or retry it through the running gateway's REST API "
                f"(POST /api/v1/messages/{record.message_id}/retry)"
            ) from None
        return Submitter(
            store=self._store,
            permits=PermitRegistry(self._store.engine, self._clock),  # a message built anew records no permit
            payloads=self._payloads,
            partners=self._partners,
            identity=self._settings.identity,
            keys=keys,
            clock=self._clock,
        )


def _when_it_goes(record: MessageRecord, partners: Partners, settings: Settings, now: datetime) -> str:
    """When a running gateway sends the retried message, as its partner's state says (as the dispatcher
    decides): held while the partner is suspended or its certificate is not valid now, pulled by a partner
    with ``transport: pull``, otherwise sent at the next sweep."""
    partner = partners.get(record.partner_id)
    try:
        partners.usable(partner, now)  # the dispatcher's reason for holding a partner's messages unsent
    except GatewayError as exc:
        until = f" at {record.expires_at.isoformat()}" if record.expires_at else ""
        return (
            f"held unsent, {exc}; a running gateway sends it once that is put right, unless its time to live "
            f"runs out first{until} (then it is FAILED, saying why it was held)"
        )
    if partner.profile.transport is Transport.PULL:
        return (
            f"partner {partner.profile.id!r} pulls it (transport: pull in its profile): a running gateway sends "
            f"nothing, the message waits for the partner's next signed PullRequest on MPC "
            f"{partner.profile.pull.mpc!r}"
        )
    return (
        f"a running gateway sends it at its next sweep (within [outbound].sweep_seconds = "
        f"{settings.outbound.sweep_seconds:g} s)"
    )
