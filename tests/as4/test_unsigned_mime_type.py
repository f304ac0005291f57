"""A received payload's MIME type comes from signed data only: the eb:PartInfo MimeType part property, else
application/octet-stream. xenc:EncryptedData/@MimeType and an unencrypted part's Content-Type are outside every
signature; they only choose how the Attachment-Content-Signature-Transform reads the part."""

from __future__ import annotations

import gzip

import pytest
from lxml import etree

from gateway.as4 import EbmsCode, EbmsError, KeyPair, Outgoing, Payload, build_user_message, parse_incoming
from gateway.as4._ns import EB, XENC, q
from gateway.as4.model import PartInfo, Property
from gateway.as4.msh import GZIP_LEVEL
from tests.as4.helpers import PERMIT, hand_built, policy_of, user_message
from tests.as4.test_hostile import resign, rewrap
from tests.conftest import NOW

PDF = b"%PDF-1.4\r\n1 0 obj\r\n<< /Type /Catalog >>\r\nendobj\r\n"


def _parse(content_type: str, body: bytes, sender: KeyPair, recipient: KeyPair, **policy: object):  # type: ignore[no-untyped-def]
    return parse_incoming(
        content_type, body, policy_for=lambda um: policy_of(sender, **policy), keys=[recipient], now=NOW
    )


def _without_mime_type(encrypted_as: str):  # type: ignore[no-untyped-def]
    """What a sender that leaves the optional MimeType part property out sends (it signs this)."""

    def mutate(root: etree._Element) -> None:
        for prop in list(root.iter(q(EB, "Property"))):
            if prop.get("name") == "MimeType":
                prop.getparent().remove(prop)
        for props in list(root.iter(q(EB, "PartProperties"))):
            if len(props) == 0:
                props.getparent().remove(props)
        for data in root.iter(q(XENC, "EncryptedData")):
            data.set("MimeType", encrypted_as)

    return mutate


def _encrypted_data_typed(mime_type: str):  # type: ignore[no-untyped-def]
    def mutate(root: etree._Element) -> None:
        for data in root.iter(q(XENC, "EncryptedData")):
            data.set("MimeType", mime_type)

    return mutate


def test_an_attacker_editing_encrypted_data_mime_type_does_not_choose_the_payloads_type(
    alice: KeyPair, bob: KeyPair
) -> None:
    scan = Payload(content_id="scan@be-famhp.test", mime_type="application/pdf", data=PDF)
    out = build_user_message(
        user_message(NOW), [scan], sender=alice, recipient_certificate=bob.certificate, compress=False
    )
    signed_type, signed_body = resign(out, alice, _without_mime_type("application/pdf"))
    as_sent = _parse(signed_type, signed_body, alice, bob)
    edited = Outgoing(message_id="m-1@be-famhp.test", content_type=signed_type, body=signed_body)
    attacked = _parse(*rewrap(edited, _encrypted_data_typed("text/html")), alice, bob)

    assert as_sent.payloads[0].mime_type == "application/octet-stream"
    assert attacked.payloads[0].mime_type == "application/octet-stream"
    assert attacked.payloads[0].data == PDF


def test_the_signed_mime_type_property_decides_whatever_encrypted_data_says(alice: KeyPair, bob: KeyPair) -> None:
    scan = Payload(content_id="scan@be-famhp.test", mime_type="application/pdf", data=PDF)
    out = build_user_message(
        user_message(NOW), [scan], sender=alice, recipient_certificate=bob.certificate, compress=False
    )

    event = _parse(*rewrap(out, _encrypted_data_typed("application/x-evil")), alice, bob)

    assert event.payloads[0].mime_type == "application/pdf"
    assert event.payloads[0].data == PDF


def test_an_unencrypted_parts_content_type_does_not_choose_the_payloads_type(alice: KeyPair, bob: KeyPair) -> None:
    message = user_message(NOW, parts=(PartInfo(href="cid:t@x.test"),))
    content_type, body = hand_built(
        alice, message, attachments=[("t@x.test", "text/plain; charset=windows-1252", b"caf\xe9")]
    )
    attacked = body.replace(b"text/plain; charset=windows-1252", b"text/html; charset=utf-7")
    assert attacked != body

    for wire in (body, attacked):
        event = _parse(content_type, wire, alice, bob, require_encryption=False)
        assert event.payloads[0].mime_type == "application/octet-stream"
        assert event.payloads[0].character_set is None
        assert event.payloads[0].data == b"caf\xe9"


def test_a_charset_comes_from_the_signed_character_set_property(alice: KeyPair, bob: KeyPair) -> None:
    props = (Property(name="MimeType", value="text/plain"), Property(name="CharacterSet", value="windows-1252"))
    message = user_message(NOW, parts=(PartInfo(href="cid:t@x.test", properties=props),))
    content_type, body = hand_built(
        alice, message, attachments=[("t@x.test", "text/plain; charset=utf-8", b"caf")]
    )

    event = _parse(content_type, body, alice, bob, require_encryption=False)

    assert (event.payloads[0].mime_type, event.payloads[0].character_set) == ("text/plain", "windows-1252")


def test_a_standard_sender_omitting_mime_type_for_an_xml_permit_still_gets_it_through(
    alice: KeyPair, bob: KeyPair
) -> None:
    """Digested as XML (exclusive C14N), as the sender's @MimeType says; delivered as octets, byte for byte."""
    permit = Payload(content_id="permit@be-famhp.test", mime_type="application/xml", data=PERMIT)
    out = build_user_message(
        user_message(NOW), [permit], sender=alice, recipient_certificate=bob.certificate, compress=False
    )

    event = _parse(*resign(out, alice, _without_mime_type("application/xml")), alice, bob)

    assert event.payloads[0].data == PERMIT
    assert event.payloads[0].mime_type == "application/octet-stream"
    assert len(event.references) == 3


def test_an_unsigned_type_that_makes_the_digest_normalize_a_binary_payload_is_refused(
    alice: KeyPair, bob: KeyPair
) -> None:
    """The sender signed application/pdf as octets; typed text/plain, the digest reads line ends as CRLF, so
    without the check a PDF with its CRLFs turned into LFs verified and was delivered as the signed PDF."""
    props = (Property(name="MimeType", value="application/pdf"),)
    message = user_message(NOW, parts=(PartInfo(href="cid:s@x.test", properties=props),))
    content_type, body = hand_built(alice, message, attachments=[("s@x.test", "application/pdf", PDF)])
    assert _parse(content_type, body, alice, bob, require_encryption=False).payloads[0].data == PDF
    attacked = body.replace(b"Content-Type: application/pdf", b"Content-Type: text/plain").replace(
        PDF, PDF.replace(b"\r\n", b"\n")
    )

    with pytest.raises(EbmsError) as caught:
        _parse(content_type, attacked, alice, bob, require_encryption=False)

    assert caught.value.code is EbmsCode.VALUE_INCONSISTENT
    assert caught.value.detail.startswith("eb:PartInfo 'cid:s@x.test' declares 'application/pdf'")
    assert "reads as text (SwA profile 1.1 section 5.4.2)" in caught.value.detail
    assert caught.value.detail.endswith(
        "send the part with the type of its MimeType part property (application/gzip when compressed)"
    )


def test_a_compressed_part_typed_as_text_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    """CompressionType gzip: the digest is over the gzip bytes as they are. These gzip bytes hold no CR or LF,
    so read as text they digest the same, and only the type check tells."""
    data = b'<permit n="0"/>'
    assert not {0x0A, 0x0D} & set(gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0))
    out = build_user_message(
        user_message(NOW),
        [Payload(content_id="permit@be-famhp.test", mime_type="application/xml", data=data)],
        sender=alice,
        recipient_certificate=bob.certificate,
    )
    assert _parse(out.content_type, out.body, alice, bob).payloads[0].mime_type == "application/xml"
    content_type, body = rewrap(out, _encrypted_data_typed("text/plain"))

    with pytest.raises(EbmsError) as caught:
        _parse(content_type, body, alice, bob)

    assert caught.value.code is EbmsCode.VALUE_INCONSISTENT
    assert "declares 'application/gzip' (its MimeType part property, or CompressionType)" in caught.value.detail
