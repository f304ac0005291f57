"""eDelivery AS4 2.0 suites (experimental): Ed25519 + X25519/HKDF, and ECDSA P-256 + ECDH-ES/HKDF."""

from __future__ import annotations

import base64

import pytest
from lxml import etree

from gateway.as4 import (
    EbmsCode,
    EbmsError,
    KeyPair,
    ReceiptReceived,
    SecurityPolicy,
    Suite,
    build_receipt,
    build_user_message,
    parse_incoming,
    parse_response,
)
from gateway.as4 import _ns as ns
from tests.as4.helpers import PERMIT, permit, user_message
from tests.as4.suitekeys import SUITE_PAIRS, ed_x_pair
from tests.conftest import NOW


@pytest.fixture(scope="module", params=list(SUITE_PAIRS), ids=lambda s: s.value)
def suite(request: pytest.FixtureRequest) -> Suite:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def keys(suite: Suite) -> tuple[KeyPair, KeyPair]:
    make = SUITE_PAIRS[suite]
    return make("BE-FAMHP"), make("CH-SWISSMEDIC")


def policy(suite: Suite, partner: KeyPair) -> SecurityPolicy:
    return SecurityPolicy.for_suite(suite, signing_certificates=(partner.certificate,))


def send(suite: Suite, sender: KeyPair, recipient: KeyPair) -> tuple[str, bytes, object]:
    out = build_user_message(
        user_message(NOW),
        [permit()],
        sender=sender,
        recipient_certificate=recipient.encryption_certificate,
        suite=suite,
    )
    return out.content_type, out.body, out


def receive(suite: Suite, content_type: str, body: bytes, sender: KeyPair, recipient: KeyPair, **kw: object):  # type: ignore[no-untyped-def]
    pol = kw.pop("policy", None) or policy(suite, sender)
    return parse_incoming(content_type, body, policy_for=lambda um: pol, keys=[recipient], now=NOW)  # type: ignore[arg-type]


def header(body: bytes) -> etree._Element:
    start = body.index(b"<?xml") if b"<?xml" in body else body.index(b"<env:Envelope")
    end = body.index(b"</env:Envelope>") + len(b"</env:Envelope>")
    return etree.fromstring(body[start:end])


def test_round_trip_with_receipt(suite: Suite, keys: tuple[KeyPair, KeyPair]) -> None:
    alice, bob = keys
    content_type, body, out = send(suite, alice, bob)
    assert PERMIT not in body
    event = receive(suite, content_type, body, alice, bob)
    assert event.payloads[0].data == PERMIT
    receipt = build_receipt(
        event.user_message.message_id, event.references, key=bob, message_id="r-1@ch", now=NOW, suite=suite
    )
    result = parse_response(receipt.content_type, receipt.body, sent=out, policy=policy(suite, bob), now=NOW)  # type: ignore[arg-type]
    assert isinstance(result, ReceiptReceived)
    assert result.ref_to_message_id == event.user_message.message_id


def test_wire_layout(suite: Suite, keys: tuple[KeyPair, KeyPair]) -> None:
    alice, bob = keys
    _, body, _ = send(suite, alice, bob)
    root = header(body)
    nsmap = {"ds": ns.DS, "xenc": ns.XENC, "xenc11": ns.XENC11, "dm": ns.DSIG_MORE, "wsse": ns.WSSE}
    signature_method = root.find(".//ds:SignedInfo/ds:SignatureMethod", nsmap)
    assert signature_method is not None
    expected_sig = "eddsa-ed25519" if suite is Suite.EDELIVERY_2_0 else "ecdsa-sha256"
    assert signature_method.get("Algorithm", "").endswith(expected_sig)
    value = root.findtext(".//ds:SignatureValue", namespaces=nsmap) or ""
    assert len(base64.b64decode(value)) == 64  # Ed25519, and ECDSA as raw r || s
    key = root.find(".//xenc:EncryptedKey", nsmap)
    assert key is not None
    assert (
        key.find("xenc:EncryptionMethod", nsmap).get("Algorithm") == "http://www.w3.org/2001/04/xmlenc#kw-aes128"
    )  # type: ignore[union-attr]
    method = key.find("ds:KeyInfo/xenc:AgreementMethod", nsmap)
    assert method is not None
    assert [etree.QName(c).localname for c in method] == [
        "KeyDerivationMethod",
        "OriginatorKeyInfo",
        "RecipientKeyInfo",
    ]
    params = method.find("xenc11:KeyDerivationMethod/dm:HKDFParams", nsmap)
    assert params is not None
    assert params.find("dm:PRF", nsmap).get("Algorithm") == "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"  # type: ignore[union-attr]
    assert len(base64.b64decode(params.findtext("dm:Salt", namespaces=nsmap) or "")) == 16
    assert method.find("xenc:RecipientKeyInfo/wsse:SecurityTokenReference/wsse:Reference", nsmap) is not None


def test_tampered_payload_is_detected(suite: Suite, keys: tuple[KeyPair, KeyPair]) -> None:
    alice, bob = keys
    content_type, body, _ = send(suite, alice, bob)
    marker = body.rindex(b"\r\n--")  # the encrypted payload ends just before the closing boundary
    tampered = body[: marker - 5] + bytes([body[marker - 5] ^ 1]) + body[marker - 4 :]
    with pytest.raises(EbmsError) as caught:
        receive(suite, content_type, tampered, alice, bob)
    assert caught.value.code is EbmsCode.FAILED_DECRYPTION


def test_tampered_header_fails_the_signature(suite: Suite, keys: tuple[KeyPair, KeyPair]) -> None:
    alice, bob = keys
    content_type, body, _ = send(suite, alice, bob)
    tampered = body.replace(b"conv-1", b"conv-2", 1)
    with pytest.raises(EbmsError) as caught:
        receive(suite, content_type, tampered, alice, bob)
    assert caught.value.code is EbmsCode.FAILED_AUTHENTICATION


def test_a_1_15_policy_refuses_a_2_0_message(suite: Suite, keys: tuple[KeyPair, KeyPair]) -> None:
    alice, bob = keys
    content_type, body, _ = send(suite, alice, bob)
    old = SecurityPolicy(signing_certificates=(alice.certificate,))
    with pytest.raises(EbmsError) as caught:
        receive(suite, content_type, body, alice, bob, policy=old)
    assert caught.value.code is EbmsCode.POLICY_NONCOMPLIANCE


def test_a_2_0_policy_refuses_a_1_15_message(suite: Suite, alice: KeyPair, bob: KeyPair) -> None:
    out = build_user_message(user_message(NOW), [permit()], sender=alice, recipient_certificate=bob.certificate)
    new = SecurityPolicy.for_suite(suite, signing_certificates=(alice.certificate,))
    with pytest.raises(EbmsError) as caught:
        parse_incoming(out.content_type, out.body, policy_for=lambda um: new, keys=[bob], now=NOW)
    assert caught.value.code is EbmsCode.POLICY_NONCOMPLIANCE


def test_the_other_2_0_suite_is_refused(suite: Suite, keys: tuple[KeyPair, KeyPair]) -> None:
    alice, bob = keys
    content_type, body, _ = send(suite, alice, bob)
    other = Suite.EDELIVERY_2_0_ECC if suite is Suite.EDELIVERY_2_0 else Suite.EDELIVERY_2_0
    with pytest.raises(EbmsError) as caught:
        receive(suite, content_type, body, alice, bob, policy=policy(other, alice))
    assert caught.value.code is EbmsCode.POLICY_NONCOMPLIANCE


def test_wrong_recipient_key_is_a_decryption_failure(suite: Suite, keys: tuple[KeyPair, KeyPair]) -> None:
    alice, bob = keys
    content_type, body, _ = send(suite, alice, bob)
    impostor = SUITE_PAIRS[suite]("CH-SWISSMEDIC")
    # same certificates, another private key: the agreed key differs, so the key wrap does not open
    if suite is Suite.EDELIVERY_2_0:
        assert impostor.agreement_key is not None
        wrong = KeyPair(
            private_key=bob.private_key,
            certificate=bob.certificate,
            agreement_key=impostor.agreement_key,
            agreement_certificate=bob.agreement_certificate,
        )
    else:
        wrong = KeyPair(private_key=impostor.private_key, certificate=bob.certificate)
    with pytest.raises(EbmsError) as caught:
        receive(suite, content_type, body, alice, wrong)
    assert caught.value.code is EbmsCode.FAILED_DECRYPTION


def test_a_message_for_someone_else_is_a_decryption_failure(suite: Suite, keys: tuple[KeyPair, KeyPair]) -> None:
    alice, bob = keys
    content_type, body, _ = send(suite, alice, bob)
    with pytest.raises(EbmsError) as caught:
        receive(suite, content_type, body, alice, SUITE_PAIRS[suite]("CAROL"))
    assert caught.value.code is EbmsCode.FAILED_DECRYPTION


def test_signing_with_the_wrong_key_type_is_our_mistake(alice: KeyPair, bob: KeyPair) -> None:
    with pytest.raises(ValueError, match="cannot sign"):
        build_user_message(
            user_message(NOW),
            [permit()],
            sender=alice,
            recipient_certificate=bob.certificate,
            suite=Suite.EDELIVERY_2_0,
        )


def test_encrypting_for_an_rsa_certificate_under_2_0_is_our_mistake(bob: KeyPair) -> None:
    with pytest.raises(ValueError, match="X25519"):
        build_user_message(
            user_message(NOW),
            [permit()],
            sender=ed_x_pair("BE-FAMHP"),
            recipient_certificate=bob.certificate,
            suite=Suite.EDELIVERY_2_0,
        )


def test_for_suite_defaults() -> None:
    partner = ed_x_pair("X")
    p = SecurityPolicy.for_suite(Suite.EDELIVERY_2_0, signing_certificates=(partner.certificate,))
    assert p.suite is Suite.EDELIVERY_2_0
    assert not p.key_transport
    with pytest.raises(ValueError, match="key_agreement and key_wrap"):
        SecurityPolicy.for_suite(
            Suite.EDELIVERY_2_0, signing_certificates=(partner.certificate,), key_wrap=frozenset()
        )


def test_an_originator_key_of_an_unknown_type_is_a_decryption_failure(
    keys_x25519: tuple[KeyPair, KeyPair],
) -> None:
    """Found by fuzzing: a DEREncodedKeyValue whose algorithm OID cryptography does not know (1.3.101.92 for
    X25519's 1.3.101.110) raised UnsupportedAlgorithm instead of an ebMS error."""
    alice, bob = keys_x25519
    content_type, body, _ = send(Suite.EDELIVERY_2_0, alice, bob)
    text = header(body).findtext(f".//{{{ns.DSIG11}}}DEREncodedKeyValue")
    assert text is not None
    der = base64.b64decode(text)
    x25519_oid = bytes.fromhex("06032b656e")
    assert x25519_oid in der
    unknown = base64.b64encode(der.replace(x25519_oid, bytes.fromhex("06032b655c"))).decode()
    with pytest.raises(EbmsError) as caught:
        receive(Suite.EDELIVERY_2_0, content_type, body.replace(text.encode(), unknown.encode()), alice, bob)
    assert caught.value.code is EbmsCode.FAILED_DECRYPTION
    assert "originator public key cannot be read" in caught.value.detail


@pytest.fixture(scope="module")
def keys_x25519() -> tuple[KeyPair, KeyPair]:
    return ed_x_pair("BE-FAMHP"), ed_x_pair("CH-SWISSMEDIC")


@pytest.mark.parametrize(("written", "accepted"), [("016", True), ("+16", True), ("128", True), ("32", False)])
def test_hkdf_key_length_is_read_as_an_integer(
    suite: Suite, keys: tuple[KeyPair, KeyPair], written: str, accepted: bool
) -> None:
    """KeyLength is an xs:positiveInteger: "016" and "+16" are 16 (Santuario parses it so); it was compared as
    text and refused with EBMS:0103."""
    alice, bob = keys
    content_type, body, _ = send(suite, alice, bob)
    assert body.count(b"KeyLength>16<") == 1
    edited = body.replace(b"KeyLength>16<", f"KeyLength>{written}<".encode())
    if accepted:
        assert receive(suite, content_type, edited, alice, bob).payloads[0].data == PERMIT
    else:
        with pytest.raises(EbmsError, match="does not fit kw-aes128"):
            receive(suite, content_type, edited, alice, bob)
