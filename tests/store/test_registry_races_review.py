"""The permit registry under concurrency: a document checked against the registry, then recorded after another
document changed what it names, is refused at record time with the rule it now breaks.

Each test runs on SQLite (two requests on one engine) and on PostgreSQL (two nodes: two engines on one
database). Both documents are checked, as ``submit.py`` and ``receive.py`` check them (parse, the registry's
context, the rules), before either is recorded: the window a submission's routing and packing open.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

import gateway.inbound.receive as receive_module
import gateway.outbound.submit as submit_module
from gateway.clock import FixedClock
from gateway.documents import ControlTables, ParsedDocument, PermitDocument, parse_document, validate_document
from gateway.interfaces.demo import redate
from gateway.interfaces.keys import NODE
from gateway.settings import DocumentSettings
from gateway.store import Direction, MessageStore, PermitRefused, PermitRegistry, State, create_engine, upgrade
from gateway.store.permits import Recheck
from gateway.store.schema import permit_documents
from gateway.store.unit import unit_of_work
from tests.conftest import NOW
from tests.e2e.conftest import Harness, harness, session, submit
from tests.e2e.test_two_gateways import _error_code, _forged_user_message, _post_as4
from tests.store.helpers import new_message

__all__ = ["harness", "session"]  # the gateways' fixtures, for the tests of what submitters are told

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AS_OF = date.fromisoformat((EXAMPLES / "as-of.txt").read_text().strip())
TABLES = ControlTables.load(EXAMPLES / "context")
BE_AUTHORITY = "Federal Agency for Medicines and Health Products (FAMHP)"
CH_AUTHORITY = "Swissmedic, Swiss Agency for Therapeutic Products"
DE_AUTHORITY = "Federal Institute for Drugs and Medical Devices (BfArM), Federal Opium Agency"


def _xml(name: str) -> str:
    return (EXAMPLES / "valid" / name).read_text()


def _sub(text: str, *pairs: tuple[str, str]) -> bytes:
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    return text.encode()


def _ia(number: str = "BE-IA-2026-0001", *, single: bool = False, kg: str = "5", grams: str = "3760.000") -> bytes:
    return _sub(
        _xml("BE-IA-2026-0001.xml"),
        ("BE-IA-2026-0001", number),
        ('<GrossQuantity unitCode="KGM">5</GrossQuantity>', f'<GrossQuantity unitCode="KGM">{kg}</GrossQuantity>'),
        ("<BaseQuantityGrams>3760.000</BaseQuantityGrams>", f"<BaseQuantityGrams>{grams}</BaseQuantityGrams>"),
        ("<MultipleConsignmentsAllowed>true<", f"<MultipleConsignmentsAllowed>{'false' if single else 'true'}<"),
    )


def _ea(number: str = "CH-EA-2026-0001", *, kg: str = "2.5", grams: str = "1880.000") -> bytes:
    return _sub(
        _xml("CH-EA-2026-0001.xml"),
        ("CH-EA-2026-0001", number),
        (
            '<GrossQuantity unitCode="KGM">2.5</GrossQuantity>',
            f'<GrossQuantity unitCode="KGM">{kg}</GrossQuantity>',
        ),
        ("<BaseQuantityGrams>1880.000</BaseQuantityGrams>", f"<BaseQuantityGrams>{grams}</BaseQuantityGrams>"),
    )


def _ex(number: str) -> bytes:
    return _sub(_xml("CH-EX-2026-0001.xml"), ("CH-EX-2026-0001", number))


def _cancellation(number: str, subject_type: str, subject: str, subject_issued: str) -> bytes:
    country, authority_id, authority = (
        ("BE", "BE-FAMHP", BE_AUTHORITY) if number.startswith("BE") else ("CH", "CH-SWISSMEDIC", CH_AUTHORITY)
    )
    return _sub(
        _xml("DE-CA-2026-0003.xml"),
        ("<DocumentNumber>DE-CA-2026-0003</DocumentNumber>", f"<DocumentNumber>{number}</DocumentNumber>"),
        ("<ImportingCountry>DE</ImportingCountry>", "<ImportingCountry>BE</ImportingCountry>"),
        ("<ExportingCountry>NL</ExportingCountry>", "<ExportingCountry>CH</ExportingCountry>"),
        ("<CountryCode>DE</CountryCode>", f"<CountryCode>{country}</CountryCode>"),
        ("<AuthorityId>DE-BFARM</AuthorityId>", f"<AuthorityId>{authority_id}</AuthorityId>"),
        (f"<AuthorityName>{DE_AUTHORITY}</AuthorityName>", f"<AuthorityName>{authority}</AuthorityName>"),
        ("<DocumentType>ImportAuthorization</DocumentType>", f"<DocumentType>{subject_type}</DocumentType>"),
        ("<DocumentNumber>DE-IA-2026-0417</DocumentNumber>", f"<DocumentNumber>{subject}</DocumentNumber>"),
        ("<IssueDate>2026-11-16</IssueDate>", f"<IssueDate>{subject_issued}</IssueDate>"),
        # in force from the day the export was issued: the export counts as issued after it
        ("<IssueDate>2026-11-25</IssueDate>", "<IssueDate>2026-11-24</IssueDate>"),
        ("<EffectiveDate>2026-11-25</EffectiveDate>", "<EffectiveDate>2026-11-24</EffectiveDate>"),
    )


def _amendment(number: str, amended: bytes, *, subject_type: str, subject: str, subject_issued: str) -> bytes:
    country, authority_id, authority = (
        ("BE", "BE-FAMHP", BE_AUTHORITY) if number.startswith("BE") else ("CH", "CH-SWISSMEDIC", CH_AUTHORITY)
    )
    body = amended.decode().split("?>", 1)[1].replace(' xmlns="urn:permit-gateway:cs-permits:1"', "")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Amendment xmlns="urn:permit-gateway:cs-permits:1" schemaVersion="1.0">
  <DocumentNumber>{number}</DocumentNumber>
  <IssueDate>2026-11-25</IssueDate>
  <IssuingAuthority>
    <CountryCode>{country}</CountryCode>
    <AuthorityId>{authority_id}</AuthorityId>
    <AuthorityName>{authority}</AuthorityName>
  </IssuingAuthority>
  <ImportingCountry>BE</ImportingCountry>
  <ExportingCountry>CH</ExportingCountry>
  <AmendedDocument>
    <DocumentType>{subject_type}</DocumentType>
    <DocumentNumber>{subject}</DocumentNumber>
    <IssueDate>{subject_issued}</IssueDate>
    <IssuingAuthority>
      <CountryCode>{country}</CountryCode>
      <AuthorityId>{authority_id}</AuthorityId>
      <AuthorityName>{authority}</AuthorityName>
    </IssuingAuthority>
  </AmendedDocument>
  <Version>2</Version>
  <Reason>Corrected.</Reason>
  <Replacement>{body}</Replacement>
</Amendment>
""".encode()


@dataclass
class Node:
    engine: AsyncEngine

    def __post_init__(self) -> None:
        self.messages = MessageStore(self.engine, FixedClock(NOW))
        self.permits = PermitRegistry(self.engine, FixedClock(NOW), TABLES)


@dataclass
class Checked:
    node: Node
    parsed: ParsedDocument
    document: PermitDocument


@pytest.fixture
async def nodes(store_url: str) -> AsyncIterator[tuple[Node, Node]]:
    """Two gateway nodes on one PostgreSQL database; on SQLite one node, which serves two requests at once."""
    first = create_engine(store_url)
    await upgrade(first)
    second = create_engine(store_url) if store_url.startswith("postgresql") else first
    yield Node(first), Node(second)
    for engine in {id(first): first, id(second): second}.values():
        await engine.dispose()


async def _check(node: Node, data: bytes) -> Checked:
    parsed = parse_document(data)
    context = await node.permits.context_for(parsed.outline)
    return Checked(node, parsed, validate_document(parsed, as_of=AS_OF, context=context))


async def _record(checked: Checked, then: Callable[[], Awaitable[None]] | None = None) -> str | None:
    """Record as a submission does, in one unit of work with its message; None when kept, else the rule refused.
    ``then`` runs before the unit commits, its locks held."""
    document, message_id = checked.document, f"{checked.document.number}@test"
    try:
        async with unit_of_work(checked.node.messages, checked.node.permits) as work:
            await work.record_permit(
                document,
                direction=Direction.OUTBOUND,
                message_id=message_id,
                recheck=Recheck(checked.parsed, AS_OF),
            )
            await work.add(new_message(message_id))
            if then is not None:
                await then()
    except PermitRefused as refused:
        assert all(f.hint and f.message for f in refused.findings)
        return refused.rule
    return None


async def _keep(node: Node, *documents: bytes) -> None:
    for data in documents:
        assert await _record(await _check(node, data)) is None


async def _at_once(nodes: tuple[Node, Node], first: bytes, second: bytes) -> list[str | None]:
    """Both checked, then both recorded at once, one on each node: the outcomes, the kept one's None first."""
    checked = await asyncio.gather(_check(nodes[0], first), _check(nodes[1], second))
    outcomes = await asyncio.gather(*(_record(c) for c in checked))
    return sorted(outcomes, key=lambda rule: rule or "")


async def _one_then_other(nodes: tuple[Node, Node], first: bytes, second: bytes) -> tuple[str | None, str | None]:
    """Both checked; ``first`` recorded, and while its unit still holds its locks ``second`` starts recording on
    the other node (on PostgreSQL it waits for those locks, on SQLite for the writer)."""
    one, other = await asyncio.gather(_check(nodes[0], first), _check(nodes[1], second))
    recorded = asyncio.Event()
    second_started: list[asyncio.Task[str | None]] = []

    async def hold() -> None:
        recorded.set()
        second_started.append(asyncio.create_task(_record(other)))
        await asyncio.sleep(0.3)

    outcome = await _record(one, then=hold)
    assert recorded.is_set()
    return outcome, await second_started[0]


async def _documents(node: Node, document_type: str) -> dict[str, str]:
    query = select(permit_documents.c.number, permit_documents.c.status).where(
        permit_documents.c.document_type == document_type
    )
    async with node.engine.connect() as conn:
        return {number: status for number, status in await conn.execute(query)}


async def test_two_exports_on_a_single_consignment_import_one_is_refused_ea010(nodes: tuple[Node, Node]) -> None:
    await _keep(nodes[0], _ia(single=True))
    outcomes = await _at_once(
        nodes, _ea("CH-EA-2026-0101", kg="1", grams="752.000"), _ea("CH-EA-2026-0102", kg="1", grams="752.000")
    )
    assert outcomes == [None, "EA-010"]
    assert len(await _documents(nodes[0], "ExportAuthorization")) == 1


async def test_an_export_recorded_after_its_import_was_cancelled_is_refused_x025(nodes: tuple[Node, Node]) -> None:
    await _keep(nodes[0], _ia())
    cancel = _cancellation("BE-CA-2026-0001", "ImportAuthorization", "BE-IA-2026-0001", "2026-11-10")
    assert await _one_then_other(nodes, cancel, _ea("CH-EA-2026-0201")) == (None, "X-025")
    assert await _documents(nodes[0], "ExportAuthorization") == {}
    assert await _documents(nodes[0], "ImportAuthorization") == {"BE-IA-2026-0001": "CANCELLED"}


async def test_an_execution_recorded_after_its_export_was_cancelled_is_refused_x025(
    nodes: tuple[Node, Node],
) -> None:
    await _keep(nodes[0], _ia(), _ea())
    cancel = _cancellation("CH-CA-2026-0001", "ExportAuthorization", "CH-EA-2026-0001", "2026-11-24")
    assert await _one_then_other(nodes, cancel, _ex("CH-EX-2026-0201")) == (None, "X-025")
    assert await _documents(nodes[0], "ExportExecution") == {}


async def test_two_executions_shipping_more_than_authorized_one_is_refused_ex004(nodes: tuple[Node, Node]) -> None:
    await _keep(nodes[0], _ia(), _ea())
    assert await _at_once(nodes, _ex("CH-EX-2026-0301"), _ex("CH-EX-2026-0302")) == [None, "EX-004"]
    assert len(await _documents(nodes[0], "ExportExecution")) == 1


async def test_two_imports_over_the_estimate_together_one_is_refused_x026(nodes: tuple[Node, Node]) -> None:
    # Belgium's 2026 morphine estimate is 60,000 g (examples/context): each fits alone, not both
    first, second = (_ia(f"BE-IA-2026-040{n}", kg="50", grams="37600.000") for n in (1, 2))
    assert await _at_once(nodes, first, second) == [None, "X-026"]
    assert len(await _documents(nodes[0], "ImportAuthorization")) == 1


async def test_an_export_recorded_after_its_import_was_shortened_is_refused_ea006(
    nodes: tuple[Node, Node],
) -> None:
    await _keep(nodes[0], _ia())
    shortened = _sub(
        _ia().decode(), ("<ValidUntil>2027-02-09</ValidUntil>", "<ValidUntil>2027-01-10</ValidUntil>")
    )
    amend = _amendment(
        "BE-AM-2026-0001",
        shortened,
        subject_type="ImportAuthorization",
        subject="BE-IA-2026-0001",
        subject_issued="2026-11-10",
    )
    assert await _one_then_other(nodes, amend, _ea("CH-EA-2026-0601")) == (None, "EA-006")
    assert await _documents(nodes[0], "ExportAuthorization") == {}


async def test_an_endorsement_after_its_export_was_amended_weighs_the_amended_lines(
    nodes: tuple[Node, Node],
) -> None:
    await _keep(nodes[0], _ia(), _ea())
    raised = _amendment(
        "CH-AM-2026-0001",
        _ea(kg="4", grams="3008.000"),
        subject_type="ExportAuthorization",
        subject="CH-EA-2026-0001",
        subject_issued="2026-11-24",
    )
    endorsement = _xml("BE-EN-2026-0001.xml").encode()  # 1,880 g: now part of the 3,008 g authorized
    assert await _one_then_other(nodes, raised, endorsement) == (None, None)
    assert await _documents(nodes[0], "ExportAuthorization") == {"CH-EA-2026-0001": "ENDORSED_PARTIAL"}


# --- what the submitter and the sending partner are told ------------------------------------------------


def _checked_then_recorded_together(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
    """Each request of ``module`` enters its unit of work (records) only once both have been checked."""
    barrier, original = asyncio.Barrier(2), module.unit_of_work

    @asynccontextmanager
    async def after_both_checked(*args: Any) -> AsyncIterator[Any]:
        await asyncio.wait_for(barrier.wait(), 20)
        async with original(*args) as work:
            yield work

    monkeypatch.setattr(module, "unit_of_work", after_both_checked)


def _redated(data: bytes, harness: Harness) -> bytes:
    return redate(data, (harness.clock.now().date() - AS_OF).days)


async def test_a_submission_refused_as_it_is_recorded_gets_422_naming_the_rule(
    harness: Harness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    ch = await harness.start("CH-SWISSMEDIC")
    ia = _redated(_ia(single=True), harness)
    assert (await _post_as4(session, ch.url, *_forged_user_message(harness, ia, "ia@be-famhp.test")))[0] == 200
    _checked_then_recorded_together(monkeypatch, submit_module)
    exports = [_redated(_ea(f"CH-EA-2026-010{n}", kg="1", grams="752.000"), harness) for n in (1, 2)]
    answers = await asyncio.gather(*(submit(session, ch, data) for data in exports))
    assert sorted(status for status, _ in answers) == [202, 422]
    refused = next(body for status, body in answers if status == 422)
    errors = [f for f in refused["findings"] if f["severity"] == "error"]
    assert [f["rule"] for f in errors] == ["EA-010"]
    assert errors[0]["hint"] and "recorded" in errors[0]["message"]


async def test_a_received_permit_refused_as_it_is_recorded_gets_a_delivery_failure(
    harness: Harness, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    ch = await harness.start("CH-SWISSMEDIC", documents=DocumentSettings(tables=EXAMPLES / "context"))
    _checked_then_recorded_together(monkeypatch, receive_module)
    imports = [_redated(_ia(f"BE-IA-2026-040{n}", kg="50", grams="37600.000"), harness) for n in (1, 2)]
    sent = [_forged_user_message(harness, data, f"ia{n}@be-famhp.test") for n, data in enumerate(imports)]
    answers = await asyncio.gather(*(_post_as4(session, ch.url, *message) for message in sent))
    codes = []
    for n, (status, content_type, body) in enumerate(answers):
        if status != 200 or b"Receipt" not in body:
            codes.append(await _error_code(harness, status, content_type, body, about=f"ia{n}@be-famhp.test"))
    assert codes == ["EBMS:0202"]
    store = ch.runner.app[NODE].store
    kept = [await store.find(Direction.INBOUND, f"ia{n}@be-famhp.test") for n in range(2)]
    states = sorted(record.state for record in kept if record is not None)
    assert len(states) == 2 and states.count(State.REJECTED) == 1, states
    rejected = next(record for record in kept if record and record.state is State.REJECTED)
    assert "X-026" in (rejected.last_error or "")
