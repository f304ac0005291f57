"""Receive-side PMode matching over HTTP, on a real gateway: a message whose roles, Service type, To PartyId type or
AgreementRef are not the agreement's is refused with EBMS:0010 naming the field, what came, what the profile
expects and the fix, and nothing of it is kept; roles agreed in both profiles still let two of our gateways
exchange a permit."""

from __future__ import annotations

import html
from typing import Any

import aiohttp
import pytest

from gateway.as4 import ROLE_INITIATOR, ROLE_RESPONDER, Outgoing, Party, PartyId, Payload, build_user_message
from gateway.interfaces.demo import exchange, write_profiles
from gateway.interfaces.keys import NODE, PROFILE_WATCHER
from gateway.store import Direction
from tests.e2e.conftest import (  # noqa: F401 - the two-gateway fixtures
    RETRIES,
    UNREGISTERED,
    Harness,
    example,
    harness,
    permit_user_message,
    session,
)

IA = "BE-IA-2026-0001.xml"


def _party(value: str, role: str, type_: str | None = UNREGISTERED) -> Party:
    return Party(party_ids=(PartyId(value=value, type=type_),), role=role)


CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "From role": (
        {"from_party": _party("BE-FAMHP", "urn:x:anything")},
        ["From Role is 'urn:x:anything'", f"roles.initiator '{ROLE_INITIATOR}'", "partner 'be-famhp'"],
    ),
    "To role": (
        {"to_party": _party("CH-SWISSMEDIC", "urn:x:whatever")},
        ["To Role is 'urn:x:whatever'", f"roles.responder '{ROLE_RESPONDER}'", "sets roles.responder"],
    ),
    "Service type": (
        {"service_type": "urn:x:other-scheme"},
        ["has type 'urn:x:other-scheme'", "without a type", "leaves the type attribute out of eb:Service"],
    ),
    "To PartyId type": (
        {"to_party": _party("CH-SWISSMEDIC", ROLE_RESPONDER, "urn:x:othertype")},
        ["To PartyId 'CH-SWISSMEDIC' has type 'urn:x:othertype'", f"type '{UNREGISTERED}'", "party_id_type"],
    ),
    "To PartyId without type": (
        {"to_party": _party("CH-SWISSMEDIC", ROLE_RESPONDER, None)},
        ["has no type attribute", "[identity] party_id_type"],
    ),
    "AgreementRef": (
        {"agreement_ref": "urn:x:unknown-agreement", "agreement_ref_pmode": "bogus"},
        [
            "AgreementRef 'urn:x:unknown-agreement' (no type attribute, pmode 'bogus')",
            "partner 'be-famhp' names none",
            "leaves it out",
            "sets agreement.value",
        ],
    ),
}


def _sent(harness: Harness, message_id: str, **changes: Any) -> Outgoing:  # noqa: F811
    """A permit message from Belgium to Switzerland, with ``changes`` to its header."""
    return build_user_message(
        permit_user_message(harness, message_id, **changes),
        [Payload(content_id="p@be", mime_type="application/xml", data=example(IA, today=harness.clock.now()))],
        sender=harness.keys("BE-FAMHP"),
        recipient_certificate=harness.keys("CH-SWISSMEDIC").certificate,
    )


async def _post(client: aiohttp.ClientSession, url: str, content_type: str, body: bytes) -> tuple[int, str]:
    async with client.post(f"{url}/as4", data=body, headers={"Content-Type": content_type}) as response:
        return response.status, html.unescape((await response.read()).decode())


@pytest.mark.parametrize("case", list(CASES))
async def test_a_message_outside_the_agreement_is_refused_naming_the_field_and_the_fix(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
    case: str,
) -> None:
    changes, expected = CASES[case]
    ch = await harness.start("CH-SWISSMEDIC")
    message_id = f"pmode-{case.replace(' ', '-').lower()}@be-famhp.test"
    sent = _sent(harness, message_id, **changes)

    status, answer = await _post(session, ch.url, sent.content_type, sent.body)

    assert status == 400 and "EBMS:0010" in answer, answer[:2000]
    for words in expected:
        assert words in answer, (words, answer[:2000])
    assert await ch.runner.app[NODE].store.find_all(Direction.INBOUND, message_id) == []


async def test_the_agreed_message_is_receipted(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    ch = await harness.start("CH-SWISSMEDIC")
    sent = _sent(harness, "agreed@be-famhp.test")

    status, answer = await _post(session, ch.url, sent.content_type, sent.body)

    assert status == 200 and "Receipt" in answer and "EBMS:" not in answer, answer[:2000]


async def test_roles_set_in_both_profiles_are_sent_and_accepted(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    """The fix the refusal names: with roles.initiator/responder agreed in both profiles, our gateways send and
    accept those roles, and a message with the ebMS default roles is now the one refused."""
    roles = "roles:\n  initiator: urn:permits:roles:issuer\n  responder: urn:permits:roles:recipient\n"
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in harness.ports.items()}
    write_profiles(harness.tmp / "profiles", endpoints, extra=RETRIES + roles)
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")

    await exchange(session, be, ch, example(IA, today=harness.clock.now()), IA)  # raises unless DELIVERED

    sent = _sent(harness, "default-roles@be-famhp.test")
    status, answer = await _post(session, ch.url, sent.content_type, sent.body)
    assert status == 400 and "EBMS:0010" in answer
    assert f"From Role is '{ROLE_INITIATOR}'" in answer and "roles.initiator 'urn:permits:roles:issuer'" in answer


async def test_an_agreement_set_in_both_profiles_is_sent_and_required(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    """A partner whose PMode names an agreement (Domibus, phase4 and Holodeck B2B examples all do): with
    ``agreement`` in both profiles our gateways send that AgreementRef and accept it, and a message without it,
    or with another type, is refused naming the agreement expected."""
    agreement = "agreement:\n  value: urn:fdc:incb.org:i2es:agreement\n  type: urn:x:types\n  pmode: permits\n"
    endpoints = {party: f"http://127.0.0.1:{port}/as4" for party, port in harness.ports.items()}
    write_profiles(harness.tmp / "profiles", endpoints, extra=RETRIES + agreement)
    be = await harness.start("BE-FAMHP")
    ch = await harness.start("CH-SWISSMEDIC")

    # delivered: Switzerland requires the agreement, so Belgium sent it
    await exchange(session, be, ch, example(IA, today=harness.clock.now()), IA)  # raises unless DELIVERED

    for n, changes in enumerate(({}, {"agreement_ref": "urn:fdc:incb.org:i2es:agreement"})):
        sent = _sent(harness, f"agreement-{n}@be-famhp.test", **changes)
        status, answer = await _post(session, ch.url, sent.content_type, sent.body)
        assert status == 400 and "EBMS:0010" in answer, answer[:2000]
        assert "names 'urn:fdc:incb.org:i2es:agreement' (type 'urn:x:types')" in answer, answer[:2000]


async def test_a_resend_of_a_message_accepted_before_the_agreement_changed_gets_its_receipt(
    harness: Harness,  # noqa: F811
    session: aiohttp.ClientSession,  # noqa: F811
) -> None:
    """The partners agree on an AgreementRef after Switzerland accepted a message whose receipt Belgium never got:
    Belgium's resend of those very bytes gets the stored receipt (it was refused with EBMS:0010, and Belgium
    failed a message Switzerland had delivered); a new message without the AgreementRef is refused."""
    ch = await harness.start("CH-SWISSMEDIC")
    sent = _sent(harness, "before-the-agreement@be-famhp.test")
    status, first = await _post(session, ch.url, sent.content_type, sent.body)
    assert status == 200 and "Receipt" in first, first[:2000]
    profile = harness.tmp / "profiles" / "be-famhp.yaml"
    profile.write_text(profile.read_text() + "agreement:\n  value: urn:fdc:incb.org:i2es:agreement\n")
    assert ch.runner.app[PROFILE_WATCHER].reload("test: the partners agreed on an AgreementRef")

    status, again = await _post(session, ch.url, sent.content_type, sent.body)

    assert (status, again) == (200, first)
    new = _sent(harness, "after-the-agreement@be-famhp.test")
    status, answer = await _post(session, ch.url, new.content_type, new.body)
    assert status == 400 and "EBMS:0010" in answer and "no AgreementRef" in answer, answer[:2000]
    assert "after-the-agreement@be-famhp.test" in answer  # RefToMessageId
