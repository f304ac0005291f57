"""Every third-party sample in tests/fixtures/as4 against its expected outcome (one table, one case each).

Outcomes, as established against independent verifiers (see PROVENANCE.md):

* accepted: verifies (and decrypts, where we hold the key) through the public API;
* present parts verify: an envelope-only file; the signature value and the digests of the parts present
  check out, the attachments are reported absent (``samples.partial_verify``);
* signature fails as stored: the file was edited after signing (Harmony re-indented its files);
* refused with a code: by our default policy (then ``legacy`` says what a policy that explicitly allows the
  old algorithm gives), or because the sample is known-bad.

Each test passes an explicit clock inside the certificates' validity.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from gateway.as4 import (
    EbmsCode,
    EbmsError,
    ErrorReceived,
    KeyPair,
    Outgoing,
    PullRequestReceived,
    ReceiptReceived,
    SecurityPolicy,
    SignedReference,
    UserMessageReceived,
    build_error_signal,
    mime,
    parse_request,
    parse_response,
    wss,
)
from gateway.as4.algorithms import DigestMethod, KeyTransport, MaskGeneration, SignatureMethod
from gateway.as4.envelope import read_envelope
from tests.as4.samples import (
    FIXTURES,
    der_cert,
    element_of,
    embedded_certificates,
    load,
    partial_verify,
    pem_pair,
    pfx,
    without_prepended_comment,
)

SHA1 = frozenset({SignatureMethod.RSA_SHA1})
SHA384 = frozenset({SignatureMethod.RSA_SHA384})
MGF1P = frozenset({KeyTransport.RSA_OAEP_MGF1P})
MGF1_SHA1 = frozenset({MaskGeneration.MGF1_SHA1, DigestMethod.SHA1})  # RSA-OAEP with SHA-1 throughout


@dataclass(frozen=True, slots=True)
class Expect:
    kind: str  # user | pull | receipt | error
    outcome: str  # the table's wording
    code: EbmsCode | None  # under our default policy (None: accepted)
    now: datetime
    signer: str = "bst"  # A | B | blue | red | bst (the certificate embedded in the message)
    keys: tuple[str, ...] = ()  # our decryption keys
    content_type: str | None = None
    legacy: frozenset[str] = frozenset()  # algorithms a legacy policy allows
    legacy_code: EbmsCode | None = None  # outcome under that policy (None: accepted)
    policy: dict[str, object] = field(default_factory=dict)  # policy fields that differ from the default
    partial: str | None = None  # "verifies" or the element whose reference fails, for partial verification
    detail: str = ""  # a phrase the refusal's detail must contain


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC) + timedelta(minutes=1)


NO_ENC: dict[str, object] = {"require_encryption": False}
UNSIGNED: dict[str, object] = {"require_signature": False, "require_encryption": False}
AS4NET_CT = {
    "issuerserial": 'multipart/related; boundary="MIMEBoundary_416ba07b9ac392cc88fdb1c2ed23ba5e2e6d64fdf13325f1"; '
    'type="application/soap+xml"; start="<0.716ba07b9ac392cc88fdb1c2ed23ba5e2e6d64fdf13325f1@apache.org>"',
    "keyidentifier": 'multipart/related; boundary="MIMEBoundary_e26ba07b9ac392cc88fdb1c2ed23ba5e2e6d64fdf13325f1"; '
    'type="application/soap+xml"; start="<0.116ba07b9ac392cc88fdb1c2ed23ba5e2e6d64fdf13325f1@apache.org>"',
    "holodeck": 'multipart/related;boundary="MIMEBoundary_bcb27a6f984295aa9962b01ef2fb3e8d982de76d061ab23f"',
    "rssbus": 'multipart/related;boundary="NSMIMEBoundary__e5cfd617-6cec-4276-b190-23f0b25d9d4d";'
    'type="application/soap+xml";start="<_7a711d7c-4d1c-4ce7-ab38-794a01b445e1>"',
    "nri": 'multipart/related;boundary="NSMIMEBoundary__5c65cf85-89d2-4921-9029-63df49ef2fa2";'
    'type="application/soap+xml";start="<_7a711d7c-4d1c-4ce7-ab38-794a01b445e1>"',
    "multihop": 'multipart/related; boundary="=-M/sMGEhQK8RBNg/21Nf7Ig=="; type="application/soap+xml"',
}

EXPECTED: dict[str, Expect] = {
    # --- known-bad samples: each refused as its kind requires --------------------------------------------
    "BAD_as4net_receipt-invalid-nri-namespace-mime.as4": Expect(
        "receipt",
        "refused: NRI ds:Reference in no namespace",
        EbmsCode.INVALID_RECEIPT,
        at("2017-09-28T12:40"),
        content_type=AS4NET_CT["nri"],
        signer="A",
        detail="must hold one ds:Reference",
    ),
    "BAD_as4net_receipt-invalid-signature-template.as4": Expect(
        "receipt",
        "refused: RefToMessageId placeholder is no msg-id",
        EbmsCode.INVALID_RECEIPT,
        at("2017-03-01T16:18"),
        content_type="application/soap+xml",
        signer="A",
        detail="RFC 2822 msg-id",
    ),
    "BAD_harmony_no-messaging-header-signed.xml": Expect(
        "user",
        "refused: no eb:Messaging",
        EbmsCode.INVALID_HEADER,
        at("2016-03-01T00:00"),
        detail="no eb:Messaging",
    ),
    "BAD_jentrata_invalid-usermessage-mime.txt": Expect(
        "user", "refused: empty PartyId (XSD)", EbmsCode.INVALID_HEADER, at("2011-04-03T14:49"), detail="PartyId"
    ),
    "BAD_phase4_bundled-usermessage-and-signals-soap11.xml": Expect(
        "user", "refused: bundled units", EbmsCode.VALUE_INCONSISTENT, at("2006-07-25T12:19"), detail="bundles 3"
    ),
    "BAD_phase4_empty-messaging-soap11.xml": Expect(
        "user",
        "refused: empty eb:Messaging",
        EbmsCode.INVALID_HEADER,
        at("2006-07-25T12:19"),
        detail="no UserMessage or SignalMessage",
    ),
    "BAD_phase4_messageinfo-missing-soap11.xml": Expect(
        "user",
        "refused: no MessageInfo (XSD)",
        EbmsCode.INVALID_HEADER,
        at("2006-07-25T12:19"),
        detail="MessageInfo",
    ),
    "BAD_phase4_pullrequest-soap12-signed-space-in-ns-uri.xml": Expect(
        "pull",
        "refused: not namespace-well-formed (SOAP Fault)",
        EbmsCode.INVALID_HEADER,
        at("2011-02-19T11:30"),
        detail="is not a valid URI",
    ),
    "BAD_phase4_usermessage-soap12-compressed-malformed-xml.xml": Expect(
        "user",
        "refused: not well-formed (SOAP Fault)",
        EbmsCode.INVALID_HEADER,
        at("2011-04-03T14:49"),
        detail="tag mismatch",
    ),
    "BAD_phase4_wrong-compression-mime.mime": Expect(
        "user",
        "refused: CompressionType application/rar",
        EbmsCode.DECOMPRESSION_FAILURE,
        at("2016-12-21T10:01"),
        policy=UNSIGNED,
        detail="application/rar",
    ),
    "BAD_phase4_wrong-signing-algorithm.xml": Expect(
        "user",
        "refused: unknown SignatureMethod",
        EbmsCode.POLICY_NONCOMPLIANCE,
        at("2016-12-21T10:34"),
        policy=NO_ENC,
        detail="randomcrypt",
    ),
    # --- user messages -------------------------------------------------------------------------------------
    "as4net_holodeck-usermessage-signed-mime-2attachments.as4": Expect(
        "user",
        "refused by default (RSA-SHA384); verifies under legacy policy",
        EbmsCode.POLICY_NONCOMPLIANCE,
        at("2018-01-24T16:12"),
        signer="B",
        content_type=AS4NET_CT["holodeck"],
        legacy=SHA384,
        policy=NO_ENC,
        partial="verifies",
        detail="rsa-sha384",
    ),
    "as4net_usermessage-signed-encrypted-mime-issuerserial.as4": Expect(
        "user",
        "refused by default (RSA-OAEP-MGF1P); verifies and decrypts under legacy policy",
        EbmsCode.POLICY_NONCOMPLIANCE,
        at("2018-12-19T08:56"),
        signer="A",
        keys=("B",),
        content_type=AS4NET_CT["issuerserial"],
        legacy=SHA384 | MGF1P,
        partial="verifies",
        detail="rsa-oaep-mgf1p",
    ),
    "as4net_usermessage-signed-encrypted-mime-keyidentifier.as4": Expect(
        "user",
        "refused by default (RSA-OAEP-MGF1P); verifies and decrypts under legacy policy",
        EbmsCode.POLICY_NONCOMPLIANCE,
        at("2018-12-19T08:30"),
        signer="A",
        keys=("B",),
        content_type=AS4NET_CT["keyidentifier"],
        legacy=SHA384 | MGF1P,
        partial="verifies",
        detail="rsa-oaep-mgf1p",
    ),
    "as4net_rssbus-usermessage-mime.as4": Expect(
        "user",
        "refused as captured: start names no part",
        EbmsCode.MIME_INCONSISTENCY,
        at("2018-01-12T10:09"),
        content_type=AS4NET_CT["rssbus"],
        detail="names no MIME part",
    ),
    "as4net_flame-usermessage-signed-encrypted-envelope-only.xml": Expect(
        "user",
        "refused by default (MGF1-SHA1); present parts verify; encrypted for another key",
        EbmsCode.POLICY_NONCOMPLIANCE,
        at("2017-06-02T14:56"),
        legacy=MGF1_SHA1,
        legacy_code=EbmsCode.MIME_INCONSISTENCY,  # the envelope alone: its encrypted payload is not in the file
        partial="verifies",
        detail="mgf1sha1",
    ),
    "as4net_usermessage-signed-soapbody-payload.xml": Expect(
        "user",
        "signature fails as stored (Body digest)",
        EbmsCode.FAILED_AUTHENTICATION,
        at("2017-09-14T15:07"),
        policy=NO_ENC,
        partial="Body",
        detail="does not match",
    ),
    "harmony_usermessage-signed-encrypted-bst-x509v3.xml": Expect(
        "user",
        "signature fails as stored; key unwraps with red_gw; attachment absent",
        EbmsCode.MIME_INCONSISTENCY,
        at("2018-11-19T13:48"),
        keys=("red",),
        partial="Messaging",
        detail="not a MIME part of this message",
    ),
    "harmony_usermessage-signed-encrypted-bst-pkipath.xml": Expect(
        "user",
        "signature fails as stored; key unwraps with red_gw; attachment absent",
        EbmsCode.MIME_INCONSISTENCY,
        at("2018-11-19T11:01"),
        keys=("red",),
        partial="Messaging",
        detail="not a MIME part of this message",
    ),
    "harmony_usermessage-signed-encrypted-request.xml": Expect(
        "user",
        "signature fails as stored; key unwraps with blue_gw; attachment absent",
        EbmsCode.MIME_INCONSISTENCY,
        at("2017-10-24T11:29"),
        signer="blue",
        keys=("blue",),
        partial="Messaging",
        detail="not a MIME part of this message",
    ),
    "phase4_holodeck-usermessage-signed-encrypted-compressed-envelope-only.xml": Expect(
        "user",
        "refused by default (RSA-OAEP-MGF1P); present parts verify",
        EbmsCode.POLICY_NONCOMPLIANCE,
        at("2017-01-10T13:46"),
        legacy=MGF1P,
        legacy_code=EbmsCode.MIME_INCONSISTENCY,  # the envelope alone: its encrypted payloads are not in the file
        partial="verifies",
        detail="rsa-oaep-mgf1p",
    ),
    "phase4_cef-conformance-usermessage-signed-encrypted-mime-reformatted.txt": Expect(
        "user",
        "refused as stored: re-indented MIME headers",
        EbmsCode.MIME_INCONSISTENCY,
        at("2015-11-11T10:05"),
        detail="not a header field",
    ),
    # --- pull requests ----------------------------------------------------------------------------------
    "as4net_pullrequest-signed-mpc.xml": Expect("pull", "accepted", None, at("2017-06-12T11:50"), signer="A"),
    "harmony_pullrequest-signed.xml": Expect(
        "pull",
        "signature fails as stored (Messaging digest)",
        EbmsCode.FAILED_AUTHENTICATION,
        at("2023-10-06T14:11"),
        signer="red",
        partial="Messaging",
        detail="does not verify",
    ),
    # --- receipts ------------------------------------------------------------------------------------------
    "phase4_peppol-receipt-signed-http-response-phase4.as4in": Expect(
        "receipt", "accepted", None, at("2022-03-07T17:36"), partial="verifies"
    ),
    "phase4_peppol-receipt-signed-http-response-governikus.as4in": Expect(
        "receipt", "accepted", None, at("2022-03-07T17:41"), partial="verifies"
    ),
    "phase4_peppol-receipt-signed-http-response-dataport-mustunderstand.as4in": Expect(
        "receipt", "accepted", None, at("2022-03-07T16:36"), partial="verifies"
    ),
    "phase4_receipt-soap12-signed-nri.xml": Expect(
        "receipt", "accepted", None, at("2025-12-05T14:03"), partial="verifies"
    ),
    "harmony_receipt-signed-nri-response.xml": Expect(
        "receipt",
        "signature fails as stored (Messaging digest)",
        EbmsCode.INVALID_RECEIPT,
        at("2017-10-24T11:29"),
        signer="blue",
        partial="Messaging",
        detail="EBMS:0101",
    ),
    "jentrata_receipt-signed-nri.xml": Expect(
        "receipt",
        "refused by default (RSA-SHA1); signature fails under legacy policy",
        EbmsCode.INVALID_RECEIPT,
        at("2013-06-28T01:57"),
        legacy=SHA1,
        legacy_code=EbmsCode.INVALID_RECEIPT,
        partial="Messaging",
        detail="rsa-sha1",
    ),
    "as4net_receipt-nri-attachments-unsigned.xml": Expect(
        "receipt",
        "refused: unsigned receipt",
        EbmsCode.INVALID_RECEIPT,
        at("2016-11-17T15:19"),
        signer="A",
        detail="not signed",
    ),
    # --- error signals -----------------------------------------------------------------------------------
    "as4net_error-ebms0004-multihop-mime.as4": Expect(
        "error",
        "accepted (signed EBMS:0004)",
        None,
        at("2016-11-18T09:56"),
        content_type=AS4NET_CT["multihop"],
        partial="verifies",
    ),
    "as4net_error-ebms0006-empty-mpc-signed.xml": Expect(
        "error",
        "refused: MessageId '...@UK:APUK01' is no RFC 2822 msg-id; signature fails as stored",
        EbmsCode.INVALID_RECEIPT,
        at("2017-05-22T11:31"),
        partial="Messaging",
        detail="RFC 2822 msg-id",
    ),
    "harmony_error-signal.xml": Expect(
        "error", "accepted (unsigned EBMS:0001)", None, at("2023-08-09T13:07"), signer="A"
    ),
    "phase4_error-signal-soap11.xml": Expect(
        "error",
        "accepted (unsigned SOAP 1.1, two errors)",
        None,
        at("2006-07-25T12:19"),
        signer="A",
        policy={"accept_soap11": True} | NO_ENC,
    ),
}


def _keys(names: tuple[str, ...]) -> list[KeyPair]:
    table = {
        "A": lambda: pfx("as4net_AccessPointA.pfx"),
        "B": lambda: pfx("as4net_AccessPointB.pfx"),
        "blue": lambda: pem_pair("harmony_blue_gw"),
        "red": lambda: pem_pair("harmony_red_gw"),
    }
    return [table[n]() for n in names]


def _signer_certificates(expect: Expect, envelope: bytes) -> tuple[x509.Certificate, ...]:
    if expect.signer == "bst":
        return embedded_certificates(envelope)
    return (_keys((expect.signer,))[0].certificate,)


def _envelope(name: str, content_type: str, body: bytes) -> tuple[bytes, dict[str, mime.MimePart]]:
    package = mime.parse(content_type, body)
    return package.envelope, package.attachments


def _body(name: str, expect: Expect) -> tuple[str, bytes]:
    content_type, body = load(name, expect.content_type)
    return content_type, without_prepended_comment(body) if name.endswith(".xml") else body


def _policy(expect: Expect, signers: tuple[x509.Certificate, ...], legacy: bool) -> SecurityPolicy:
    policy = SecurityPolicy(signing_certificates=signers, **expect.policy)  # type: ignore[arg-type]
    if legacy:
        policy = dataclasses.replace(
            policy,
            signature_methods=policy.signature_methods
            | {SignatureMethod(a) for a in expect.legacy if a in set(SignatureMethod)},
            key_transport=policy.key_transport
            | {KeyTransport(a) for a in expect.legacy if a in set(KeyTransport)},
            mask_generation=policy.mask_generation
            | {MaskGeneration(a) for a in expect.legacy if a in set(MaskGeneration)},
            oaep_digests=policy.oaep_digests | {DigestMethod(a) for a in expect.legacy if a in set(DigestMethod)},
        )
    return policy


def _sent_for(envelope: bytes) -> Outgoing:
    """What we would have sent for a receipt/error sample: its RefToMessageId, and the NRI's digests."""
    root, _ = read_envelope(envelope)
    unit = root.find(".//{http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/}SignalMessage")
    assert unit is not None
    in_error = unit.find(".//{http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/}Error")
    ref_to = (
        unit.findtext(".//{http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/}RefToMessageId")
        or (in_error.get("refToMessageInError") if in_error is not None else None)
        or ""
    ).strip()
    nri = unit.iterfind(
        ".//{http://docs.oasis-open.org/ebxml-bp/ebbp-signals-2.0}MessagePartNRInformation/"
        "{http://www.w3.org/2000/09/xmldsig#}Reference"
    )
    refs = tuple(
        SignedReference(
            uri=r.get("URI") or "",
            digest_method="",
            digest_value=(r.findtext("{http://www.w3.org/2000/09/xmldsig#}DigestValue") or "").strip(),
            xml=b"",
        )
        for r in nri
    )
    return Outgoing(message_id=ref_to, content_type="", body=b"", references=refs)


def run(name: str, expect: Expect, *, legacy: bool = False) -> object:
    """Feed the sample to the API its kind calls for; return the event or raise the EbmsError."""
    content_type, body = _body(name, expect)
    try:
        envelope, _ = _envelope(name, content_type, body)
        signers = _signer_certificates(expect, envelope)
    except EbmsError:
        envelope, signers = b"", ()
    policy = _policy(expect, signers or (_keys(("A",))[0].certificate,), legacy)
    keys = _keys(expect.keys) or _keys(("B",))
    if expect.kind in ("user", "pull"):
        return parse_request(
            content_type,
            body,
            policy_for=lambda um: policy,
            pull_policy_for=lambda pr: policy,
            keys=keys,
            now=expect.now,
        )
    return parse_response(content_type, body, sent=_sent_for(envelope), policy=policy, now=expect.now)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_outcome_under_default_policy(name: str) -> None:
    expect = EXPECTED[name]
    if expect.code is None:
        event = run(name, expect)
        expected_type = {
            "user": UserMessageReceived,
            "pull": PullRequestReceived,
            "receipt": ReceiptReceived,
            "error": ErrorReceived,
        }[expect.kind]
        assert isinstance(event, expected_type)
        return
    with pytest.raises(EbmsError) as caught:
        run(name, expect)
    assert caught.value.code is expect.code, caught.value
    assert expect.detail.lower() in caught.value.detail.lower(), caught.value.detail


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e.legacy))
def test_legacy_algorithm_accepted_only_when_the_policy_allows_it(name: str) -> None:
    expect = EXPECTED[name]
    if expect.legacy_code is None:
        event = run(name, expect, legacy=True)
        assert isinstance(event, UserMessageReceived)
        assert len(event.payloads) == 2
        assert event.payloads[0].mime_type == "image/jpeg"
        assert event.payloads[0].data.startswith(b"\xff\xd8\xff\xe0")  # a JPEG, decrypted and gunzipped
        assert event.payloads[1].data.startswith(b'<?xml version="1.0"')
        return
    with pytest.raises(EbmsError) as caught:
        run(name, expect, legacy=True)
    assert caught.value.code is expect.legacy_code


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e.partial))
def test_partial_verification_of_what_the_file_holds(name: str) -> None:
    expect = EXPECTED[name]
    content_type, body = _body(name, expect)
    if "rssbus" in name:
        content_type = content_type.split(";start=")[0]
    envelope, attachments = _envelope(name, content_type, body)
    signers = _signer_certificates(expect, envelope)
    check = partial_verify(envelope, attachments, signers, tuple(_keys(expect.keys)))
    absent = [u for u, v in check.references.items() if v == "absent"]
    if expect.partial == "verifies":
        assert check.present_parts_verify, check
        assert all(v in ("ok", "absent") for v in check.references.values())
        if name.endswith((".as4", ".as4in", ".mime")):
            assert not absent  # a whole MIME message: every part was checked
        return
    assert not check.present_parts_verify
    assert [element_of(envelope, uri) for uri in check.failing if uri.startswith("#")][-1] == expect.partial


def test_rssbus_capture_verifies_what_can_be_checked_without_the_recipient_key() -> None:
    """The captured start id names no part (SOURCES.md); with the first part as root, the signature value and
    the XML references verify, and the attachment stays ciphertext for a recipient whose key we lack."""
    content_type, body = load("as4net_rssbus-usermessage-mime.as4", AS4NET_CT["rssbus"].split(";start=")[0])
    envelope, attachments = _envelope("rssbus", content_type, body)
    check = partial_verify(envelope, attachments, embedded_certificates(envelope))
    assert check.signature_value
    assert sorted(check.references.values()) == ["encrypted", "ok", "ok"]


def test_harmony_encrypted_keys_unwrap_with_the_published_keys() -> None:
    """The Harmony envelopes' signatures fail as stored, but their EncryptedKeys are genuine."""
    for name, key in (
        ("harmony_usermessage-signed-encrypted-bst-x509v3.xml", "red"),
        ("harmony_usermessage-signed-encrypted-bst-pkipath.xml", "red"),
        ("harmony_usermessage-signed-encrypted-request.xml", "blue"),
    ):
        root, version = read_envelope((FIXTURES / name).read_bytes())
        security = wss.find_security(root.find(f"{{{version.value}}}Header"), version)
        keys = wss.content_keys(
            security,
            _keys((key,)),
            SecurityPolicy(signing_certificates=(der_cert("as4net_AccessPointA.cer"),)),
            wss.index_ids(root),
        )
        assert {len(k) for k in keys.values()} == {16}, name  # AES-128 content keys


def test_template_receipt_with_the_placeholder_replaced_still_fails_its_signature() -> None:
    """AS4.NET fills in {{RefToMessageId}} before use; the receipt is refused for its signature then."""
    _, body = load("BAD_as4net_receipt-invalid-signature-template.as4")
    body = body.replace(b"{{RefToMessageId}}", b"sent-1@example.test")
    sent = Outgoing(message_id="sent-1@example.test", content_type="", body=b"")
    policy = SecurityPolicy(signing_certificates=(der_cert("as4net_AccessPointA.cer"),))
    with pytest.raises(EbmsError) as caught:
        parse_response("application/soap+xml", body, sent=sent, policy=policy, now=at("2017-03-01T16:18"))
    assert caught.value.code is EbmsCode.INVALID_RECEIPT
    assert "EBMS:0101" in caught.value.detail


@pytest.mark.parametrize(
    "name",
    [
        "BAD_phase4_pullrequest-soap12-signed-space-in-ns-uri.xml",
        "BAD_phase4_usermessage-soap12-compressed-malformed-xml.xml",
    ],
)
def test_unreadable_envelopes_are_answered_with_a_soap_fault_carrying_the_code(name: str) -> None:
    with pytest.raises(EbmsError) as caught:
        run(name, EXPECTED[name])
    assert caught.value.envelope_unreadable
    answer = build_error_signal(caught.value, key=None, message_id="e-1@gw.test", now=EXPECTED[name].now)
    assert b"<env:Fault>" in answer.body and b"EBMS:0009" in answer.body
    assert b"eb:Messaging" not in answer.body
    assert answer.http_status == 400


def test_wrong_compression_sample_is_refused_for_lacking_a_signature_by_default() -> None:
    expect = dataclasses.replace(EXPECTED["BAD_phase4_wrong-compression-mime.mime"], policy={})
    with pytest.raises(EbmsError) as caught:
        run("BAD_phase4_wrong-compression-mime.mime", expect)
    assert caught.value.code is EbmsCode.POLICY_NONCOMPLIANCE
    assert "not signed" in caught.value.detail


def test_accepted_samples_yield_what_they_carry() -> None:
    pull = run("as4net_pullrequest-signed-mpc.xml", EXPECTED["as4net_pullrequest-signed-mpc.xml"])
    assert isinstance(pull, PullRequestReceived)
    assert pull.mpc == "http://example.holodeckb2b.org/mpc/2"
    assert pull.signer_certificate_sha256 == wss.fingerprint(der_cert("as4net_AccessPointA.cer"))
    error = run("phase4_error-signal-soap11.xml", EXPECTED["phase4_error-signal-soap11.xml"])
    assert isinstance(error, ErrorReceived) and not error.signed
    assert [e.code for e in error.errors] == ["EBMS:0001", "0101"]
    multihop = run("as4net_error-ebms0004-multihop-mime.as4", EXPECTED["as4net_error-ebms0004-multihop-mime.as4"])
    assert isinstance(multihop, ErrorReceived) and multihop.signed
    assert multihop.errors[0].code == "EBMS:0004"
    receipt = run("phase4_receipt-soap12-signed-nri.xml", EXPECTED["phase4_receipt-soap12-signed-nri.xml"])
    assert isinstance(receipt, ReceiptReceived)


def test_every_fixture_has_an_expectation_and_eleven_are_known_bad() -> None:
    files = sorted(p.name for p in FIXTURES.iterdir() if p.is_file() and p.name != "PROVENANCE.md")
    assert files == sorted(EXPECTED)
    assert len([f for f in files if f.startswith("BAD_")]) == 11


def test_fixtures_are_byte_identical_to_their_provenance_record() -> None:
    """PROVENANCE.md lists the first 16 hex digits of each file's SHA-256: nothing was edited after copying."""
    record = dict(
        re.findall(
            r"\| `([^`]+)` \|[^|]*\|[^|]*\|[^|]*\| `([0-9a-f]{16})`", (FIXTURES / "PROVENANCE.md").read_text()
        )
    )
    files = [p for p in FIXTURES.rglob("*") if p.is_file() and p.name != "PROVENANCE.md"]
    assert len(record) == len(files)
    for path in files:
        relative = str(path.relative_to(FIXTURES))
        assert hashlib.sha256(path.read_bytes()).hexdigest()[:16] == record[relative], relative
