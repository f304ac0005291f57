"""eDelivery AS4 2.0 key agreement: an HKDFParams without a PRF is HMAC-SHA256, as Apache Santuario reads it
(HKDFParamsImpl), so a message from a sender that leaves it out decrypts; any other PRF is still refused with
EBMS:0103 naming the PRF expected."""

from __future__ import annotations

import re

import pytest
from lxml import etree

from gateway.as4 import EbmsCode, EbmsError, KeyPair, Suite
from gateway.as4 import _ns as ns
from tests.as4.helpers import PERMIT
from tests.as4.suitekeys import SUITE_PAIRS
from tests.as4.test_edelivery2 import header, receive, send

HMAC_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"
_PRF = re.compile(rb"<dsig-more:PRF [^>]*/>")


@pytest.fixture(scope="module", params=list(SUITE_PAIRS), ids=lambda s: s.value)
def suite(request: pytest.FixtureRequest) -> Suite:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def keys(suite: Suite) -> tuple[KeyPair, KeyPair]:
    make = SUITE_PAIRS[suite]
    return make("BE-FAMHP"), make("CH-SWISSMEDIC")


def _signed_elements(root: etree._Element) -> list[etree._Element]:
    """The elements the message's signature references by same-document URI (#id)."""
    by_id = {
        el.get(f"{{{ns.WSU}}}Id") or el.get("Id"): el
        for el in root.iter(etree.Element)
        if el.get(f"{{{ns.WSU}}}Id") or el.get("Id")
    }
    uris = [r.get("URI") or "" for r in root.iter(f"{{{ns.DS}}}Reference")]
    return [by_id[uri[1:]] for uri in uris if uri.startswith("#")]


def _with_prf(body: bytes, replacement: bytes) -> bytes:
    assert len(_PRF.findall(body)) == 1, "our sender writes one PRF"
    return _PRF.sub(replacement, body)


def test_the_prf_is_outside_what_the_signature_covers(suite: Suite, keys: tuple[KeyPair, KeyPair]) -> None:
    """So leaving it out needs no new signature: it sits in the EncryptedKey's AgreementMethod, in the Security
    header, which the signature does not reference."""
    alice, bob = keys
    _, body, _ = send(suite, alice, bob)
    root = header(body)
    signed = _signed_elements(root)
    assert {etree.QName(el).localname for el in signed} == {"Body", "Messaging"}
    for element in signed:
        assert element.find(f".//{{{ns.DSIG_MORE}}}PRF") is None
    assert root.find(f".//{{{ns.XENC}}}EncryptedKey//{{{ns.DSIG_MORE}}}PRF") is not None


def test_a_message_without_a_prf_decrypts_as_hmac_sha256(suite: Suite, keys: tuple[KeyPair, KeyPair]) -> None:
    alice, bob = keys
    content_type, body, _ = send(suite, alice, bob)
    without = _with_prf(body, b"")
    assert b"PRF" not in without

    event = receive(suite, content_type, without, alice, bob)

    assert event.payloads[0].data == PERMIT


@pytest.mark.parametrize(
    "prf",
    [b'<dsig-more:PRF Algorithm="http://www.w3.org/2001/04/xmldsig-more#hmac-sha512"/>', b"<dsig-more:PRF/>"],
    ids=["hmac-sha512", "no-algorithm"],
)
def test_another_prf_is_still_refused(suite: Suite, keys: tuple[KeyPair, KeyPair], prf: bytes) -> None:
    alice, bob = keys
    content_type, body, _ = send(suite, alice, bob)
    with pytest.raises(EbmsError) as caught:
        receive(suite, content_type, _with_prf(body, prf), alice, bob)
    assert caught.value.code is EbmsCode.POLICY_NONCOMPLIANCE
    assert "HKDF PRF" in caught.value.detail and f"is not allowed; expected {HMAC_SHA256}" in caught.value.detail
