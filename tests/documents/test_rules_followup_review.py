"""Follow-ups of the permit-awareness review: a re-export line kept before counts against no later estimate,
the rules on the document alone run without a context, and an emergency export can be endorsed (its
endorsement names no ImportAuthorization, which only such an endorsement may leave out: EN-010)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from gateway.clock import FixedClock
from gateway.documents import (
    RULES,
    ControlTables,
    DocumentKey,
    DocumentType,
    InMemoryContext,
    parse_document,
    validate_document,
    validation_report,
)
from gateway.documents import _checks as c
from gateway.store import Direction, PermitRegistry, PermitState, create_engine, upgrade
from tests.conftest import NOW
from tests.documents.conftest import AS_OF, EXAMPLES, Without
from tests.documents.test_rules_review_permit_awareness import (
    DEMO_EXPORT,
    _big_import,
    _check,
    _doc,
    _emergency_export,
    _errors,
    _example,
    _lsd_import,
    _sub,
)

EMERGENCY = DocumentKey(DocumentType.EXPORT_AUTHORIZATION, "CH", "CH-EA-2026-0905")

# 2. Re-export lines of documents kept before count against no estimate either.


def test_a_known_re_export_line_does_not_count_against_the_estimate_of_a_later_import(
    tables: ControlTables,
) -> None:
    """BE's morphine estimate is 60,000 g: 52,640 g for re-export and 52,640 g for manufacture both fit."""
    context = InMemoryContext([_doc(_big_import("reExport"))], tables)
    second = _sub(_big_import("manufacture"), ("BE-IA-2026-0902", "BE-IA-2026-0906"))
    report = _check(second, context)
    assert "X-026" not in _errors(report) and report.document is not None, _errors(report)
    ia = DocumentType.IMPORT_AUTHORIZATION
    assert context.authorized_base_grams(ia, "BE", "morphine", 2026) == 0
    assert context.authorized_base_grams(ia, "BE", "codeine", 2026) == 1474


def test_a_known_line_for_the_importing_countrys_own_use_still_counts(tables: ControlTables) -> None:
    context = InMemoryContext([_doc(_big_import("manufacture"))], tables)
    second = _sub(_big_import("manufacture"), ("BE-IA-2026-0902", "BE-IA-2026-0906"))
    assert "X-026" in _errors(_check(second, context))


# 4. and EA-012 read the document alone: they live with those checks and need no context.


@pytest.mark.parametrize("rule_id", ["X-034", "X-035", "EA-012"])
def test_the_document_only_rules_live_with_the_document_checks(rule_id: str) -> None:
    (rule,) = [rule for rule in RULES if rule.id == rule_id]
    assert rule.needs == "document"
    assert rule.check.__module__ == c.__name__ and getattr(c, rule.check.__name__) is rule.check


def test_the_document_only_rules_run_without_a_context() -> None:
    found = {
        f.rule
        for text in (_lsd_import("enterprise", "laboratory"), _big_import("reExport"), _emergency_export())
        for f in validation_report(text.encode(), as_of=AS_OF).findings
    }
    assert {"X-034", "X-035", "EA-012"} <= found


# 5. An emergency export is endorsed without an ImportAuthorizationReference; no other export is.


def _endorsement(export: str, *, import_reference: bool) -> str:
    en = _sub(
        _example("BE-EN-2026-0001.xml"),
        ("BE-EN-2026-0001", "BE-EN-2026-0905"),
        ("<DocumentNumber>CH-EA-2026-0001</DocumentNumber>", f"<DocumentNumber>{export}</DocumentNumber>"),
    )
    if import_reference:
        return en
    return re.sub(r"\s*<ImportAuthorizationReference>.*?</ImportAuthorizationReference>", "", en, flags=re.S)


def test_an_emergency_export_is_endorsed_without_an_import_authorization_reference(without: Without) -> None:
    context = without(*DEMO_EXPORT, extra=(_doc(_emergency_export()),))
    report = _check(_endorsement("CH-EA-2026-0905", import_reference=False), context)
    assert report.document is not None, [(f.rule, f.message) for f in report.findings]
    assert report.document.import_authorization_ref is None
    assert not [f for f in report.findings if f.severity == "error"]


def test_an_endorsement_leaving_out_the_import_authorization_its_export_names_is_refused(
    without: Without,
) -> None:
    context = without("BE-EN-2026-0001", "BE-AK-2026-0001")
    report = _check(_endorsement("CH-EA-2026-0001", import_reference=False), context)
    assert report.document is None
    (finding,) = [f for f in report.findings if f.severity == "error"]
    assert finding.rule == "EN-010"
    assert "ExportAuthorization CH-EA-2026-0001 was issued against ImportAuthorization BE-IA-2026-0001" in (
        finding.message
    )
    assert "Add ImportAuthorizationReference naming ImportAuthorization BE-IA-2026-0001" in finding.hint
    assert finding.path and "ExportAuthorizationReference" in finding.path
    assert _check(_endorsement("CH-EA-2026-0001", import_reference=True), context).document is not None


@pytest.fixture
async def registry(store_url: str) -> AsyncIterator[PermitRegistry]:
    engine = create_engine(store_url)
    await upgrade(engine)
    yield PermitRegistry(engine, FixedClock(NOW), ControlTables.load(EXAMPLES / "context"))
    await engine.dispose()


async def test_the_registry_endorses_an_emergency_export(registry: PermitRegistry) -> None:
    for text in (_emergency_export(), _endorsement("CH-EA-2026-0905", import_reference=False)):
        parsed = parse_document(text.encode())
        context = await registry.context_for(parsed.outline)
        document = validate_document(parsed, as_of=AS_OF, context=context)
        await registry.record(document, direction=Direction.INBOUND, message_id=f"m-{document.number}")
    detail = await registry.get(EMERGENCY)
    assert detail is not None and detail.permit.status is PermitState.ENDORSED_FULL
    assert [d.key.number for d in detail.against] == ["BE-EN-2026-0905"]
    assert detail.against[0].refers_to == EMERGENCY
