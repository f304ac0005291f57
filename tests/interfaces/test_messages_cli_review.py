"""``permit-gateway messages show|retry`` on messages a real ``Submitter`` built, signed and stored (real keys,
real xmlsec, a real SQLite store): a retry checks the stored bytes against the partner's current profile and
builds the message anew as the REST retry does, says honestly when a running gateway will send it, and
``show`` refuses to pick one of several messages sharing a MessageId."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from gateway.clock import SystemClock
from gateway.documents import DocumentKey, DocumentType
from gateway.interfaces.cli import app
from gateway.interfaces.demo import redate
from gateway.outbound.submit import Submitter
from gateway.profiles import DevPki
from gateway.profiles.keystore import load_own_keys
from gateway.profiles.loader import load_profiles
from gateway.profiles.trust import Partners
from gateway.settings import load_settings
from gateway.store import (
    Direction,
    Event,
    MessageRecord,
    MessageStore,
    PayloadStore,
    PermitRegistry,
    State,
    create_engine,
    upgrade,
)
from gateway.store.schema import messages
from tests.profiles.helpers import profile_text
from tests.store.helpers import new_message

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BE_IA = DocumentKey(DocumentType.IMPORT_AUTHORIZATION, "BE", "BE-IA-2026-0001")
FAILED_BECAUSE = "EBMS:0301 MissingReceipt: no receipt after 4 attempts"


@pytest.fixture
def config(tmp_path: Path, pki: DevPki) -> Path:
    """Belgium's configuration: its dev keys, a store, and a profile of Switzerland."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "ch-swissmedic.yaml").write_text(profile_text("ch-swissmedic", "ch-swissmedic.crt.pem"))
    keys = pki.files_for("BE-FAMHP")
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""data_dir = "var"
[identity]
party_id = "BE-FAMHP"
country = "BE"
authority_name = "FAMHP"
[keys]
private_key = "{keys.key}"
certificate = "{keys.certificate}"
[store]
url = "sqlite+aiosqlite:///{tmp_path / "gateway.db"}"
[profiles]
folder = "profiles"
certificates = "{pki.folder}"
"""
    )
    asyncio.run(_upgraded(path))
    return path


async def _upgraded(config: Path) -> None:
    engine = create_engine(load_settings(config).store.url)
    await upgrade(engine)
    await engine.dispose()


def _profile(config: Path) -> Path:
    return config.parent / "profiles" / "ch-swissmedic.yaml"


def _edit_profile(config: Path, old: str, new: str) -> None:
    text = _profile(config).read_text()
    assert old in text
    _profile(config).write_text(text.replace(old, new))


def _ia_today() -> bytes:
    as_of = date.fromisoformat((EXAMPLES / "as-of.txt").read_text().strip())
    data = (EXAMPLES / "valid" / "BE-IA-2026-0001.xml").read_bytes()
    return redate(data, (datetime.now(UTC).date() - as_of).days)


def _failed_submission(config: Path) -> str:
    """Belgium's ImportAuthorization submitted through a real Submitter under the current profiles (signed,
    encrypted, stored), then FAILED as the dispatcher fails it: its MessageId."""

    async def submit() -> str:
        settings = load_settings(config)
        clock = SystemClock()
        engine = create_engine(settings.store.url)
        store = MessageStore(engine, clock)
        profiles = load_profiles(settings.profiles.folder, certificates_dir=settings.profiles.certificates)
        submitter = Submitter(
            store=store,
            permits=PermitRegistry(engine, clock),
            payloads=PayloadStore(settings.data_dir / "payloads"),
            partners=Partners(profiles, now=clock.now()),
            identity=settings.identity,
            keys=load_own_keys(settings.keys, now=clock.now()),
            clock=clock,
        )
        submitted = await submitter.submit(_ia_today())
        (claimed,) = await store.claim_due("node", limit=1, lease=timedelta(minutes=1))
        await store.move(claimed.id, Event.GIVE_UP, detail={"reason": FAILED_BECAUSE}, last_error=FAILED_BECAUSE)
        await engine.dispose()
        return submitted.record.message_id

    return asyncio.run(submit())


def run(config: Path, *args: str) -> tuple[int, str]:
    """The exit code and the output, its lines (wrapped at the console's width) joined."""
    result = CliRunner().invoke(app, ["messages", *args, "--config", str(config)])
    return result.exit_code, " ".join(result.output.split())


def _stored(config: Path, message_id: str) -> tuple[MessageRecord, list[str], str | None]:
    """The outbound message, its events' kinds, and the MessageId the registry names as BE_IA's carrier."""

    async def read() -> tuple[MessageRecord, list[str], str | None]:
        engine = create_engine(load_settings(config).store.url)
        store = MessageStore(engine, SystemClock())
        record = await store.find(Direction.OUTBOUND, message_id)
        assert record is not None, message_id
        kinds = [e.kind for e in await store.events(record.id)]
        detail = await PermitRegistry(engine, SystemClock()).get(BE_IA)
        await engine.dispose()
        return record, kinds, detail.permit.message_id if detail else None

    return asyncio.run(read())


# --- retry: the same bytes, or built anew ----------------------------------------------------------------


def test_an_unchanged_message_goes_again_under_its_message_id_and_bytes(config: Path) -> None:
    old = _failed_submission(config)
    before, _, _ = _stored(config, old)

    code, out = run(config, "retry", old, "--reason", "Swissmedic fixed its endpoint")

    assert code == 0, out
    assert f"{old} is RETRY_WAIT: a running gateway sends it at its next sweep" in out
    after, kinds, carrier = _stored(config, old)
    assert after.state is State.RETRY_WAIT and after.wire_sha256 == before.wire_sha256
    assert kinds[-1] == "operator_retry" and carrier == old
    code, out = run(config, "retry", old, "--reason", "impatient")
    assert code == 1 and "only a FAILED message can be retried" in out


def test_a_message_built_before_the_partners_party_id_was_corrected_is_built_anew(config: Path) -> None:
    """The CLI resent the stale bytes (To PartyId CH-SWISSMEDC) and exited 0: they failed again at once."""
    _edit_profile(config, "party_id: CH-SWISSMEDIC", "party_id: CH-SWISSMEDC")
    old = _failed_submission(config)
    _edit_profile(config, "party_id: CH-SWISSMEDC", "party_id: CH-SWISSMEDIC")

    code, out = run(config, "retry", old, "--reason", "profile fixed")

    assert code == 0, out
    before, old_kinds, carrier = _stored(config, old)
    assert before.state is State.FAILED and old_kinds[-1] == "superseded"
    new = carrier
    assert new is not None and new != old
    assert f"{old} cannot be sent again as it was built" in out and "the To party was CH-SWISSMEDC" in out
    assert f"{new} was built anew from its document and supersedes {old}" in out
    assert f"{new} is SUBMITTED: a running gateway sends it at its next sweep" in out
    rebuilt, new_kinds, _ = _stored(config, new)
    assert rebuilt.to_party == "CH-SWISSMEDIC" and rebuilt.conversation_id == before.conversation_id
    assert new_kinds == ["submitted", "supersedes"]
    code, out = run(config, "retry", old, "--reason", "again")
    assert code == 1 and f"superseded by message {new!r}" in out


@pytest.mark.parametrize(
    "keys_unusable",
    [
        ("private_key = ", 'private_key = "/nowhere/be.key.pem"\n#'),  # the service account's file, not here
        ("[keys]\n", '[keys]\npassphrase_env = "PERMIT_GATEWAY_TEST_UNSET_PASSPHRASE"\n'),  # not exported
    ],
    ids=["key-file-missing", "passphrase-variable-unset"],
)
def test_an_unchanged_message_goes_again_where_our_keys_cannot_be_loaded(
    config: Path, keys_unusable: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deciding that the same bytes may go needs no keys: the CLI loaded them first and refused every retry in
    an operator's shell that cannot read them (the README: keys are needed only to build a message anew)."""
    monkeypatch.delenv("PERMIT_GATEWAY_TEST_UNSET_PASSPHRASE", raising=False)
    old = _failed_submission(config)
    before, _, _ = _stored(config, old)
    config.write_text(config.read_text().replace(*keys_unusable, 1))

    code, out = run(config, "retry", old, "--reason", "Swissmedic fixed its endpoint")

    assert code == 0, out
    assert f"{old} is RETRY_WAIT: a running gateway sends it at its next sweep" in out
    after, kinds, carrier = _stored(config, old)
    assert after.state is State.RETRY_WAIT and after.wire_sha256 == before.wire_sha256
    assert kinds[-1] == "operator_retry" and carrier == old


def test_a_retry_that_needs_our_keys_names_them_and_changes_nothing(config: Path) -> None:
    """Only a message that must be built anew needs our keys: the retry says why it must, and how to do it."""
    _edit_profile(config, "party_id: CH-SWISSMEDIC", "party_id: CH-SWISSMEDC")
    old = _failed_submission(config)
    _edit_profile(config, "party_id: CH-SWISSMEDC", "party_id: CH-SWISSMEDIC")
    config.write_text(config.read_text().replace("private_key = ", 'private_key = "/nowhere/be.key.pem"\n#'))

    code, out = run(config, "retry", old, "--reason", "try")

    assert code == 1 and "Traceback" not in out
    assert "the To party was CH-SWISSMEDC" in out
    assert "signed with our keys ([keys] in the configuration), which cannot be loaded" in out
    assert "/nowhere/be.key.pem" in out and f"POST /api/v1/messages/{old}/retry" in out
    record, kinds, carrier = _stored(config, old)
    assert record.state is State.FAILED and "superseded" not in kinds and carrier == old


def _aged(config: Path, message_id: str, hours: float) -> None:
    """The stored message dated ``hours`` earlier, as if built then (the window is measured from its date)."""

    async def age() -> None:
        engine = create_engine(load_settings(config).store.url)
        record = await MessageStore(engine, SystemClock()).find(Direction.OUTBOUND, message_id)
        assert record is not None
        dated = update(messages).where(messages.c.id == record.id)
        async with engine.begin() as conn:
            await conn.execute(dated.values(created_at=record.created_at - timedelta(hours=hours)))
        await engine.dispose()

    asyncio.run(age())


def test_the_configured_duplicate_window_decides_whether_it_is_built_anew(config: Path) -> None:
    """800 hours old: inside a 2000-hour window the same bytes go again; past the default 720 it is built anew."""
    old = _failed_submission(config)
    _aged(config, old, 800)
    default_window = config.read_text()
    config.write_text(default_window + "[inbound]\nduplicate_window_hours = 2000.0\n")

    code, out = run(config, "retry", old, "--reason", "window is 2000 h here")

    assert code == 0 and f"{old} is RETRY_WAIT" in out, out
    config.write_text(default_window)
    _failed_again(config, old)
    code, out = run(config, "retry", old, "--reason", "window is 720 h here")
    assert code == 0 and "is past the duplicate-detection window" in out and f"supersedes {old}" in out, out


def _failed_again(config: Path, message_id: str) -> None:
    async def fail() -> None:
        engine = create_engine(load_settings(config).store.url)
        store = MessageStore(engine, SystemClock())
        (claimed,) = await store.claim_due("node", limit=1, lease=timedelta(minutes=1))
        assert claimed.message_id == message_id
        await store.move(claimed.id, Event.GIVE_UP, detail={"reason": FAILED_BECAUSE}, last_error=FAILED_BECAUSE)
        await engine.dispose()

    asyncio.run(fail())


# --- retry: when a running gateway sends it --------------------------------------------------------------


def test_a_retry_for_a_suspended_partner_says_it_is_held_not_sent_at_the_next_sweep(config: Path) -> None:
    old = _failed_submission(config)
    _profile(config).write_text(_profile(config).read_text() + "enabled: false\n")

    code, out = run(config, "retry", old, "--reason", "try")

    assert code == 0, out
    assert f"{old} is RETRY_WAIT: held unsent, partner 'ch-swissmedic' is suspended (enabled: false" in out
    assert "once that is put right, unless its time to live runs out first" in out
    assert "next sweep" not in out


def test_a_retry_for_a_pull_partner_says_it_waits_for_the_partners_pull_request(config: Path) -> None:
    old = _failed_submission(config)
    _profile(config).write_text(_profile(config).read_text() + "transport: pull\n")

    code, out = run(config, "retry", old, "--reason", "try")

    assert code == 0, out
    assert f"{old} is RETRY_WAIT: partner 'ch-swissmedic' pulls it (transport: pull" in out
    assert "waits for the partner's next signed PullRequest on MPC" in out
    assert "next sweep" not in out


# --- show: one message, or the options that name one ------------------------------------------------------


def _received(config: Path, message_id: str, *senders: tuple[str, str]) -> None:
    """Messages received under ``message_id`` from each (partner, PartyId) of ``senders``."""

    async def add() -> None:
        engine = create_engine(load_settings(config).store.url)
        store = MessageStore(engine, SystemClock())
        for partner_id, party in senders:
            received = new_message(message_id, direction=Direction.INBOUND, partner_id=partner_id)
            await store.add(dataclasses.replace(received, from_party=party))
        await engine.dispose()

    asyncio.run(add())


def test_show_lists_the_messages_a_message_id_names_and_the_options_that_name_each(config: Path) -> None:
    """It showed one of them, whichever the database returned first."""
    _received(config, "same@x", ("ch-swissmedic", "CH-SWISSMEDIC"), ("de-bfarm", "DE-BFARM"))

    code, out = run(config, "show", "same@x")

    assert code == 1 and "MessageId 'same@x' names 2 messages" in out
    assert "inbound from CH-SWISSMEDIC (partner ch-swissmedic, RECEIVED)" in out
    assert "inbound from DE-BFARM (partner de-bfarm, RECEIVED)" in out
    assert "--direction inbound --from DE-BFARM" in out and "timeline" not in out
    code, out = run(config, "show", "same@x", "--from", "DE-BFARM")
    assert code == 0 and "partner de-bfarm" in out and "timeline" in out
    code, out = run(config, "show", "same@x", "--direction", "outbound")
    assert code == 1 and "no message with MessageId 'same@x' direction" in out


def test_show_tells_our_message_from_a_partners_one_under_its_message_id(config: Path) -> None:
    ours = _failed_submission(config)
    _received(config, ours, ("ch-swissmedic", "CH-SWISSMEDIC"))

    code, out = run(config, "show", ours)
    assert code == 1 and "outbound from BE-FAMHP (partner ch-swissmedic, FAILED)" in out
    assert "inbound from CH-SWISSMEDIC (partner ch-swissmedic, RECEIVED)" in out

    code, out = run(config, "show", ours, "--direction", "out")
    assert code == 0 and "FAILED" in out and FAILED_BECAUSE[:30] in out
    code, out = run(config, "show", ours, "--direction", "inbound", "--from", "CH-SWISSMEDIC")
    assert code == 0 and "RECEIVED" in out and "FAILED" not in out
    # retry names outbound messages only: the partner's message under the same MessageId does not stand in its way
    code, out = run(config, "retry", ours, "--reason", "endpoint fixed")
    assert code == 0 and f"{ours} is RETRY_WAIT" in out
