"""A document's cross-document rules, run again as it is recorded, do not wait for the documents thread.

The registry runs them inside the transaction that records the document: on SQLite it holds the one pooled
connection every store call of the process needs (reads included), on PostgreSQL the rows and the estimate
lock. Queued on the documents thread behind another request's parsing (a second per 4.6 MiB document), every
store call waited, and past twice ``[store] wait_seconds`` failed as unavailable. Here the documents thread is
kept busy until the test ends: recording, a refusal and a concurrent read must all finish meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

import gateway.documents._validate as validate_module
from gateway.documents import RULES, cross_document_findings, validation_report
from gateway.store import Direction
from gateway.store.permits import PermitChangedMeanwhile, Recheck
from gateway.store.unit import unit_of_work
from gateway.tasks import on_documents_thread
from tests.store.helpers import new_message
from tests.store.test_registry_races_review import (
    AS_OF,
    Checked,
    Node,
    _cancellation,
    _check,
    _documents,
    _ea,
    _ia,
    _keep,
    nodes,
)

__all__ = ["nodes"]

WAIT = 5.0
"""Seconds a store call may take here; the documents thread stays busy longer (until the test releases it)."""
CANCEL_IA = ("BE-CA-2026-0001", "ImportAuthorization", "BE-IA-2026-0001", "2026-11-10")
CONTEXT_RULES = {rule.id for rule in RULES if rule.needs == "context"}


@asynccontextmanager
async def documents_thread_busy() -> AsyncIterator[None]:
    """Another request's large document being parsed on the documents thread, until the block ends."""
    started, release = threading.Event(), threading.Event()

    def parse_a_large_document() -> None:
        started.set()
        release.wait(60)

    busy = asyncio.create_task(on_documents_thread(parse_a_large_document))
    assert await asyncio.to_thread(started.wait, WAIT)
    try:
        yield
    finally:
        release.set()
        await busy


async def _record(checked: Checked) -> None:
    document, message_id = checked.document, f"{checked.document.number}@test"
    async with unit_of_work(checked.node.messages, checked.node.permits) as work:
        recheck = Recheck(checked.parsed, AS_OF)
        await work.record_permit(document, direction=Direction.OUTBOUND, message_id=message_id, recheck=recheck)
        await work.add(new_message(message_id))


async def test_a_permit_is_recorded_and_the_store_read_while_the_documents_thread_is_busy(
    nodes: tuple[Node, Node],
) -> None:
    node = nodes[0]
    await _keep(node, _ia())
    checked = await _check(node, _ea("CH-EA-2026-0301"))
    async with documents_thread_busy():
        recording = asyncio.create_task(_record(checked))
        await asyncio.sleep(0.05)  # the recording's transaction is open, its rules about to run again
        await asyncio.wait_for(node.messages.count_by_state(), WAIT)
        await asyncio.wait_for(recording, WAIT)
    assert set(await _documents(node, "ExportAuthorization")) == {"CH-EA-2026-0301"}


async def test_a_permit_changed_meanwhile_is_refused_while_the_documents_thread_is_busy(
    nodes: tuple[Node, Node],
) -> None:
    node = nodes[0]
    await _keep(node, _ia())
    checked = await _check(node, _ea("CH-EA-2026-0302"))
    await _keep(node, _cancellation(*CANCEL_IA))
    async with documents_thread_busy():
        with pytest.raises(PermitChangedMeanwhile) as refused:
            await asyncio.wait_for(_record(checked), WAIT)
    assert refused.value.rule == "X-025"
    assert {f.rule for f in refused.value.findings} == {"X-025"}
    assert all(f.severity == "error" and f.hint for f in refused.value.findings)
    assert all("found as the document was recorded" in f.message for f in refused.value.findings)
    assert await _documents(node, "ExportAuthorization") == {}


async def test_cross_document_findings_are_the_reports_own_without_parsing_or_the_schema(
    nodes: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rules that need context find what the whole report finds with them, on the tree already read."""
    node = nodes[0]
    await _keep(node, _ia())
    checked = await _check(node, _ea("CH-EA-2026-0303"))
    await _keep(node, _cancellation(*CANCEL_IA))
    context = await node.permits.context_for(checked.parsed.outline)
    report = validation_report(checked.parsed, as_of=AS_OF, context=context)
    expected = tuple(f for f in report.findings if f.rule in CONTEXT_RULES)
    assert [f.rule for f in expected if f.severity == "error"] == ["X-025"]

    def untouchable(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed or schema-validated again")

    monkeypatch.setattr(validate_module, "parse_xml", untouchable)
    monkeypatch.setattr(validate_module, "schema_findings", untouchable)
    assert cross_document_findings(checked.parsed, as_of=AS_OF, context=context) == expected
