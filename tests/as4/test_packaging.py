"""Packaging: SOAP 1.2 and (where allowed) 1.1, multipart/related framing, several payloads, payload in the
Body, CRLF and LF-only MIME, Content-IDs with or without brackets and URL-encoded cid: references."""

from __future__ import annotations

import pytest

from gateway.as4 import (
    EbmsCode,
    EbmsError,
    KeyPair,
    Payload,
    SoapVersion,
    build_receipt,
    build_user_message,
    mime,
    parse_incoming,
    parse_response,
    wss,
)
from gateway.as4.mime import parse_content_type
from gateway.as4.model import PartInfo, Property
from gateway.xmlsafe import parse_xml
from tests.as4.helpers import PERMIT, build, hand_built, permit, policy_of, user_message
from tests.as4.mimeutil import repackage
from tests.conftest import NOW


def _parse(content_type: str, body: bytes, sender: KeyPair, recipient: KeyPair, **policy: object):  # type: ignore[no-untyped-def]
    return parse_incoming(
        content_type, body, policy_for=lambda um: policy_of(sender, **policy), keys=[recipient], now=NOW
    )


def test_multipart_related_has_type_and_a_start_naming_the_envelope(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    media, params = parse_content_type(out.content_type)
    assert media == "multipart/related"
    assert params["type"] == "application/soap+xml"
    start = params["start"]
    assert start.startswith("<") and start.endswith(">")
    root = out.body.split(b"\r\n\r\n", 1)[0]
    assert f"Content-ID: {start}".encode() in root
    assert b"Content-Type: application/soap+xml" in root


def test_a_message_without_payloads_is_plain_soap(alice: KeyPair, bob: KeyPair) -> None:
    out = build_user_message(user_message(NOW), [], sender=alice, recipient_certificate=bob.certificate)
    assert out.content_type.startswith("application/soap+xml")
    event = _parse(out.content_type, out.body, alice, bob)
    assert event.payloads == ()


def test_several_payloads_keep_their_order_types_and_bytes(alice: KeyPair, bob: KeyPair) -> None:
    payloads = [
        permit(),
        Payload(
            content_id="annex-1@be-famhp.test", mime_type="application/pdf", data=b"%PDF" + bytes(range(256)) * 40
        ),
        Payload(
            content_id="annex-2@be-famhp.test",
            mime_type="text/plain",
            data=b"line 1\nline 2\n",
            character_set="utf-8",
        ),
        Payload(content_id="empty@be-famhp.test", mime_type="application/octet-stream", data=b""),
    ]
    for compress in (True, False):
        out = build_user_message(
            user_message(NOW), payloads, sender=alice, recipient_certificate=bob.certificate, compress=compress
        )
        event = _parse(out.content_type, out.body, alice, bob)
        assert [(p.content_id, p.mime_type, p.data) for p in event.payloads] == [
            (p.content_id, p.mime_type, p.data) for p in payloads
        ]
        assert len(event.references) == 2 + len(payloads)


@pytest.mark.parametrize(
    "shape",
    [
        {"newline": b"\n"},
        {"brackets": False},
        {"start": False},
        {"start": False, "type_param": False},
        {"quote_boundary": False, "boundary": "simple-boundary_42"},
        {"preamble": b"This is a MIME message.\r\n", "epilogue": b"\r\ntrailing epilogue\r\n"},
        {"padding": b"  \t"},
        {"base64_parts": True},
        {"base64_parts": True, "newline": b"\n"},
        {"header_case": "content-id"},
        {"fold": True},
        {"root_last": True},
        {"newline": b"\n", "brackets": False, "start": False, "fold": True},
    ],
    ids=lambda shape: ",".join(f"{k}={v!r}"[:24] for k, v in shape.items()),
)
def test_other_msh_framings_parse_to_the_same_message(
    alice: KeyPair, bob: KeyPair, shape: dict[str, object]
) -> None:
    out = build(alice, bob, NOW)
    content_type, body = repackage(out.content_type, out.body, **shape)  # type: ignore[arg-type]
    event = _parse(content_type, body, alice, bob)
    assert event.payloads[0].data == PERMIT


def test_root_last_without_start_is_a_mime_inconsistency(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    content_type, body = repackage(out.content_type, out.body, root_last=True, start=False)
    with pytest.raises(EbmsError) as caught:
        _parse(content_type, body, alice, bob)
    assert caught.value.code is EbmsCode.MIME_INCONSISTENCY
    assert "root MIME part" in caught.value.detail


def test_type_parameter_must_match_the_root_part(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    content_type = out.content_type.replace('type="application/soap+xml"', 'type="text/xml"')
    with pytest.raises(EbmsError) as caught:
        _parse(content_type, out.body, alice, bob)
    assert caught.value.code is EbmsCode.MIME_INCONSISTENCY
    assert "type parameter" in caught.value.detail


@pytest.mark.parametrize("content_id", ["permit/1{a}@be-famhp.test", "100%@be-famhp.test", "a^b|c@x.test"])
def test_cid_references_are_url_encoded_and_decoded_on_compare(
    alice: KeyPair, bob: KeyPair, content_id: str
) -> None:
    out = build_user_message(
        user_message(NOW), [permit(content_id=content_id)], sender=alice, recipient_certificate=bob.certificate
    )
    encoded = mime.cid_url(content_id)
    assert encoded != f"cid:{content_id}" and "%" in encoded
    assert f'href="{encoded}"'.encode() in out.body and f'URI="{encoded}"'.encode() in out.body
    assert f"Content-ID: <{content_id}>".encode() in out.body
    event = _parse(out.content_type, out.body, alice, bob)
    assert event.payloads[0].content_id == content_id


def test_cid_scheme_is_case_insensitive_and_plain_ids_need_no_decoding() -> None:
    assert mime.cid_of_url("CID:a%40b") == "a@b"
    assert mime.cid_of_url("cid:a@b") == "a@b"
    assert mime.cid_of_url("http://x/a") is None
    assert mime.cid_of_url("cid:%FF%FE") is None  # not UTF-8 once decoded: names nothing
    assert mime.content_id_of_header(" <a@b> ") == "a@b" and mime.content_id_of_header("a@b") == "a@b"


# --- SOAP 1.1 --------------------------------------------------------------------------------------------


def test_soap11_is_refused_unless_the_policy_accepts_it(alice: KeyPair, bob: KeyPair) -> None:
    out = build_user_message(
        user_message(NOW),
        [permit()],
        sender=alice,
        recipient_certificate=bob.certificate,
        soap_version=SoapVersion.SOAP11,
    )
    assert 'type="text/xml"' in out.content_type
    with pytest.raises(EbmsError) as caught:
        _parse(out.content_type, out.body, alice, bob)
    assert caught.value.code is EbmsCode.PROCESSING_MODE_MISMATCH
    assert "SOAP 1.1" in caught.value.detail
    event = _parse(out.content_type, out.body, alice, bob, accept_soap11=True)
    assert event.soap_version is SoapVersion.SOAP11
    assert event.payloads[0].data == PERMIT
    receipt = build_receipt(
        out.message_id,
        event.references,
        key=bob,
        message_id="r-11@ch.test",
        now=NOW,
        soap_version=event.soap_version,
    )
    assert receipt.content_type.startswith("text/xml")
    with pytest.raises(EbmsError):
        parse_response(receipt.content_type, receipt.body, sent=out, policy=policy_of(bob), now=NOW)
    answer = parse_response(
        receipt.content_type, receipt.body, sent=out, policy=policy_of(bob, accept_soap11=True), now=NOW
    )
    assert answer.ref_to_message_id == out.message_id


_OTHER_MEDIA_TYPE = {SoapVersion.SOAP12: b"text/xml", SoapVersion.SOAP11: b"application/soap+xml"}


@pytest.mark.parametrize("version", list(SoapVersion))
@pytest.mark.parametrize("attachments", [True, False], ids=["multipart", "single part"])
def test_an_envelope_sent_as_the_other_soap_versions_media_type_is_ebms_0007(
    alice: KeyPair, bob: KeyPair, version: SoapVersion, attachments: bool
) -> None:
    out = build_user_message(
        user_message(NOW),
        [permit()] if attachments else [],
        sender=alice,
        recipient_certificate=bob.certificate,
        soap_version=version,
    )
    assert _parse(out.content_type, out.body, alice, bob, accept_soap11=True).soap_version is version
    own, other = version.content_type.encode(), _OTHER_MEDIA_TYPE[version]
    content_type = out.content_type.replace(own.decode(), other.decode())
    body = out.body.replace(b"Content-Type: " + own, b"Content-Type: " + other)
    with pytest.raises(EbmsError) as caught:
        _parse(content_type, body, alice, bob, accept_soap11=True)
    assert caught.value.code is EbmsCode.MIME_INCONSISTENCY
    assert f"the envelope is {version.label} but is sent as {other.decode()}" in caught.value.detail
    assert caught.value.ref_to_message_id == out.message_id


# --- payload in the SOAP Body (accepted on receipt; we never send it) --------------------------------------

MIME_XML = (Property(name="MimeType", value="application/xml"),)


def test_payload_in_the_body_is_accepted_when_the_policy_does_not_require_encryption(
    alice: KeyPair, bob: KeyPair
) -> None:
    message = user_message(NOW, parts=(PartInfo(href=None, properties=MIME_XML),))
    content_type, body = hand_built(alice, message, body_children=[b'<p:Permit xmlns:p="urn:p">42</p:Permit>'])
    event = _parse(content_type, body, alice, bob, require_encryption=False)
    assert event.payloads[0].content_id == "soap-body"
    delivered = parse_xml(event.payloads[0].data)  # the Body child with every namespace in scope declared
    assert (delivered.tag, delivered.text) == ("{urn:p}Permit", "42")
    with pytest.raises(EbmsError) as caught:
        _parse(content_type, body, alice, bob)
    assert caught.value.code is EbmsCode.POLICY_NONCOMPLIANCE
    assert "SOAP Body is not encrypted" in caught.value.detail


def test_body_content_without_a_part_info_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    content_type, body = hand_built(alice, user_message(NOW), body_children=[b'<x:Smuggled xmlns:x="urn:x"/>'])
    with pytest.raises(EbmsError) as caught:
        _parse(content_type, body, alice, bob, require_encryption=False)
    assert caught.value.code is EbmsCode.VALUE_INCONSISTENT
    assert "{urn:x}Smuggled" in caught.value.detail


def test_two_body_part_infos_are_refused(alice: KeyPair, bob: KeyPair) -> None:
    message = user_message(NOW, parts=(PartInfo(href=None), PartInfo(href=None)))
    content_type, body = hand_built(alice, message, body_children=[b"<a/>"])
    with pytest.raises(EbmsError) as caught:
        _parse(content_type, body, alice, bob, require_encryption=False)
    assert caught.value.code is EbmsCode.VALUE_INCONSISTENT
    assert "2 eb:PartInfo elements refer to the SOAP Body" in caught.value.detail


def test_external_payload_reference_is_ebms_0011(alice: KeyPair, bob: KeyPair) -> None:
    message = user_message(NOW, parts=(PartInfo(href="https://evil.example/permit.xml", properties=MIME_XML),))
    content_type, body = hand_built(alice, message)
    with pytest.raises(EbmsError) as caught:
        _parse(content_type, body, alice, bob, require_encryption=False)
    assert caught.value.code is EbmsCode.EXTERNAL_PAYLOAD_ERROR
    assert "https://evil.example/permit.xml" in caught.value.detail


def test_part_info_naming_a_missing_mime_part_is_a_mime_inconsistency(alice: KeyPair, bob: KeyPair) -> None:
    message = user_message(NOW, parts=(PartInfo(href="cid:gone@x.test", properties=MIME_XML),))
    content_type, body = hand_built(alice, message)
    with pytest.raises(EbmsError) as caught:
        _parse(content_type, body, alice, bob, require_encryption=False)
    assert caught.value.code is EbmsCode.MIME_INCONSISTENCY
    assert "cid:gone@x.test" in caught.value.detail


def test_mime_part_without_part_info_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    content_type, body = hand_built(alice, user_message(NOW), attachments=[("extra@x.test", "text/plain", b"hi")])
    with pytest.raises(EbmsError) as caught:
        _parse(content_type, body, alice, bob, require_encryption=False)
    assert caught.value.code is EbmsCode.MIME_INCONSISTENCY
    assert "<extra@x.test> has no eb:PartInfo" in caught.value.detail


def test_compressed_part_without_mime_type_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    import gzip

    gz = (Property(name="CompressionType", value="application/gzip"),)
    message = user_message(NOW, parts=(PartInfo(href="cid:p@x.test", properties=gz),))
    content_type, body = hand_built(
        alice, message, attachments=[("p@x.test", "application/gzip", gzip.compress(b"x"))]
    )
    with pytest.raises(EbmsError) as caught:
        _parse(content_type, body, alice, bob, require_encryption=False)
    assert caught.value.code is EbmsCode.VALUE_INCONSISTENT
    assert "no MimeType part property" in caught.value.detail


def test_uncompressed_parts_are_accepted_even_where_compression_is_usual(alice: KeyPair, bob: KeyPair) -> None:
    message = user_message(NOW, parts=(PartInfo(href="cid:p@x.test", properties=MIME_XML),))
    content_type, body = hand_built(alice, message, attachments=[("p@x.test", "application/xml", PERMIT)])
    event = _parse(content_type, body, alice, bob, require_encryption=False)
    assert event.payloads[0].data == PERMIT


def test_without_a_mime_type_property_a_part_is_octets_whatever_its_unsigned_content_type_says(
    alice: KeyPair, bob: KeyPair
) -> None:
    """The part's Content-Type header is not signed (the SwA transform covers the content only): without the
    signed MimeType property the payload is delivered as octets, its long name and charset parameters ignored."""
    message = user_message(NOW, parts=(PartInfo(href="cid:t@x.test"),))
    content_type = 'text/plain; charset=windows-1252; name="Einfuhrgenehmigung-' + "x" * 90 + '.txt"'
    built_type, body = hand_built(alice, message, attachments=[("t@x.test", content_type, b"caf\xe9")])
    event = _parse(built_type, body, alice, bob, require_encryption=False)
    assert event.payloads[0].mime_type == "application/octet-stream"
    assert event.payloads[0].data == b"caf\xe9"


def test_text_and_xml_attachments_are_digested_as_the_swa_transform_says(alice: KeyPair, bob: KeyPair) -> None:
    """XML content: exclusive C14N; other text: CRLF line ends; so equivalent forms verify."""
    message = user_message(
        NOW,
        parts=(
            PartInfo(href="cid:x@x.test", properties=MIME_XML),
            PartInfo(href="cid:t@x.test", properties=(Property(name="MimeType", value="text/plain"),)),
        ),
    )
    xml = b'<?xml version="1.0"?><a xmlns:unused="urn:u"   b="1" ><!-- note --><c/></a>'
    content_type, body = hand_built(
        alice,
        message,
        attachments=[("x@x.test", "application/xml", xml), ("t@x.test", "text/plain", b"one\ntwo\r\n")],
    )
    refs = {
        r.uri: r.digest_value for r in _parse(content_type, body, alice, bob, require_encryption=False).references
    }
    # the same content in other serializations has the same digests
    equivalent = body.replace(xml, b'<a b="1"><c></c></a>').replace(b"one\ntwo\r\n", b"one\r\ntwo\n")
    again = {
        r.uri: r.digest_value
        for r in _parse(content_type, equivalent, alice, bob, require_encryption=False).references
    }
    assert again == refs


def _wss4j_text(data: bytes) -> bytes:
    """Apache WSS4J's CRLFOutputStream, byte by byte: a CR becomes CRLF, an LF right after it is dropped, any
    other LF becomes CRLF."""
    out, after_cr = bytearray(), False
    for byte in data:
        if byte == 0x0D:
            out += b"\r\n"
        elif byte != 0x0A or not after_cr:
            out += b"\r\n" if byte == 0x0A else bytes([byte])
        after_cr = byte == 0x0D
    return bytes(out)


@pytest.mark.parametrize(
    ("content_type", "data", "octets"),
    [
        ("text/plain", b"row1;a\rrow2;b\r", _wss4j_text(b"row1;a\rrow2;b\r")),
        ("text/csv; charset=utf-8", b"a\r\r\nb\n\rc", _wss4j_text(b"a\r\r\nb\n\rc")),
        ("text/vnd.example+xml", b"<a>\n<!-- c --><b/></a>\n", b"<a>\r\n<!-- c --><b/></a>\r\n"),
        ("text/xml-external-parsed-entity", b"<a>\n<!-- c --><b/></a>\n", b"<a>\n<b></b></a>"),
        ("Application/XML; charset=utf-8", b"<a>\n<!-- c --><b/></a>\n", b"<a>\n<b></b></a>"),
        ("image/svg+xml", b"<a>\n<!-- c --><b/></a>\n", b"<a>\n<b></b></a>"),
        ("model/vnd.example+xml", b"<a>\n<!-- c --><b/></a>\n", b"<a>\n<!-- c --><b/></a>\n"),
        ("application/gzip", b"\x1f\x8b\r\n\r", b"\x1f\x8b\r\n\r"),
    ],
)
def test_attachments_are_digested_over_the_octets_wss4j_digests(
    content_type: str, data: bytes, octets: bytes
) -> None:
    """phase4 and Domibus digest attachments with Apache WSS4J: which Content-Types are XML and which text, and
    what a lone CR becomes, must agree with it, or an uncompressed text attachment fails the signature."""
    produced = b"".join(bytes(c) for c in wss.attachment_octets(mime.MimePart.of("p@x.test", content_type, data)))
    assert produced == octets


def test_a_cr_at_a_chunk_boundary_waits_for_its_lf() -> None:
    chunks = [b"a\r", b"\nb\r", b"c\r"]
    assert b"".join(wss._crlf(chunks)) == b"a\r\nb\r\nc\r\n" == _wss4j_text(b"".join(chunks))
