"""The sender writes eb:Messaging, the Body and ds:SignedInfo as exclusive-C14N text (``gateway.as4._canon``)
instead of canonicalizing trees. These tests hold that text against lxml: it equals what the tree builder
gives when canonicalized, and it canonicalizes to itself once parsed from the envelope we send."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.as4 import (
    KeyPair,
    PartInfo,
    PartSchema,
    Party,
    PartyId,
    Payload,
    Property,
    SoapVersion,
    UserMessage,
    build_user_message,
    mime,
    wss,
)
from gateway.as4._canon import attr, text
from gateway.as4._ns import WSU, q
from gateway.as4.algorithms import DigestMethod
from gateway.as4.envelope import parse_envelope
from gateway.as4.header import add_user_message, new_messaging, user_messaging_xml
from tests.as4.helpers import user_message
from tests.conftest import NOW

DS = "{http://www.w3.org/2000/09/xmldsig#}"
# XML markup, the characters C14N escapes, whitespace, non-ASCII and a character outside the BMP
_CHARS = st.sampled_from(list("aZ9 -_:/@&<>\"'\r\n\té€\u2028\U0001f600"))
_VALUE = st.text(alphabet=_CHARS, min_size=1, max_size=12)
_OPTIONAL = st.none() | _VALUE


@st.composite
def _messages(draw: st.DrawFn) -> UserMessage:
    def party(role: str) -> Party:
        ids = draw(st.lists(st.builds(PartyId, value=_VALUE, type=_OPTIONAL), min_size=1, max_size=2))
        return Party(party_ids=tuple(ids), role=role)

    properties = st.lists(st.builds(Property, name=_VALUE, value=st.text(alphabet=_CHARS), type=_OPTIONAL))
    part = st.builds(
        PartInfo,
        href=st.none() | st.just("cid:a&b@x"),
        properties=properties.map(tuple),
        schemas=st.lists(
            st.builds(PartSchema, location=_VALUE, version=_OPTIONAL, namespace=_OPTIONAL), max_size=2
        ).map(tuple),
        description=_OPTIONAL,
        description_lang=st.none() | st.just("fr"),
    )
    agreement = draw(_OPTIONAL)
    try:
        return user_message(
            NOW,
            from_party=party("urn:role:a&b"),
            to_party=party("r<2>"),
            service=draw(st.text(alphabet="aZ&<>\"' é€", min_size=1, max_size=12).filter(str.strip)),
            service_type=draw(_OPTIONAL),
            conversation_id=draw(st.text(alphabet="aZ&<>\"' é€", max_size=12)),
            agreement_ref=agreement,
            agreement_ref_type=draw(_OPTIONAL) if agreement else None,
            agreement_ref_pmode=draw(_OPTIONAL) if agreement else None,
            mpc=draw(st.sampled_from([UserMessage.__dataclass_fields__["mpc"].default, "urn:mpc:a&b"])),
            ref_to_message_id=draw(st.none() | st.just("earlier@ch.test")),
            properties=tuple(draw(properties)),
            parts=tuple(draw(st.lists(part, max_size=2))),
        )
    except ValueError:
        assume(False)
        raise


def _c14n(element: etree._Element) -> str:
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False).decode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=_messages(), soap_version=st.sampled_from(list(SoapVersion)))
def test_messaging_text_is_the_canonical_form_of_the_tree(message: UserMessage, soap_version: SoapVersion) -> None:
    root = etree.Element(f"{{{soap_version.value}}}Envelope", nsmap={"env": soap_version.value})
    header = etree.SubElement(root, f"{{{soap_version.value}}}Header")
    tree = new_messaging(header, wsu_id="_m1", soap_ns=soap_version.value)
    add_user_message(tree, message)
    written = user_messaging_xml(message, wsu_id="_m1", soap_ns=soap_version.value)
    assert written == _c14n(tree)
    reparsed = etree.fromstring(
        f'<env:Envelope xmlns:env="{soap_version.value}"><env:Header>{written}</env:Header></env:Envelope>'.encode()
    )
    assert _c14n(reparsed[0][0]) == written


@pytest.mark.parametrize("soap_version", list(SoapVersion))
def test_sent_signed_parts_canonicalize_to_what_was_digested(
    alice: KeyPair, bob: KeyPair, soap_version: SoapVersion
) -> None:
    message = user_message(NOW, conversation_id="a&b <c> \"d\" 'e' é", service="urn:s&<>")
    payload = Payload(content_id="p&q@be-famhp.test", mime_type="application/pdf", data=b"%PDF")
    out = build_user_message(
        message, [payload], sender=alice, recipient_certificate=bob.certificate, soap_version=soap_version
    )
    incoming = parse_envelope(mime.parse(out.content_type, out.body).envelope)
    signed_info = incoming.header.find(f".//{DS}SignedInfo")
    assert signed_info is not None
    envelope_text = mime.parse(out.content_type, out.body).envelope.decode()
    for element in (incoming.messaging, incoming.body, signed_info):
        assert _c14n(element) in envelope_text
    digests = {r.uri: r.digest_value for r in out.references}
    body_id = incoming.body.get(q(WSU, "Id"))
    assert digests[f"#{body_id}"] == wss.digest_chunks(DigestMethod.SHA256, [wss.exc_c14n(incoming.body)])
    for reference in out.references:  # each stored ds:Reference is standalone XML, as receipts need it
        assert etree.fromstring(reference.xml).get("URI") == reference.uri


@pytest.mark.parametrize("bad", ["\x00", "a\x01b", "\x1f", "\ufffe", "\ud800"])
def test_characters_xml_cannot_carry_are_refused_like_lxml_refuses_them(bad: str) -> None:
    with pytest.raises(ValueError):
        text(bad)
    with pytest.raises(ValueError):
        attr("name", bad)
    with pytest.raises(ValueError):
        etree.Element("a").text = bad


def test_escapes_are_those_of_c14n() -> None:
    assert text("a&b<c>d\re\"f'\t\n") == "a&amp;b&lt;c&gt;d&#xD;e\"f'\t\n"
    assert attr("n", "a&b<c>d\re\"f'\t\n") == ' n="a&amp;b&lt;c>d&#xD;e&quot;f\'&#x9;&#xA;"'
    assert attr("n", None) == ""
