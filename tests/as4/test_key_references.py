"""A KeyInfo that names its certificate instead of carrying it, as WSS4J peers (Domibus, Holodeck B2B, phase4)
send it: an IssuerSerial whose X509IssuerName Java's X500Principal wrote, and Domibus's default
SubjectKeyIdentifier with no BinarySecurityToken, which a profile with only a trust anchor must resolve too.

The certificates' issuer is a CA named like an eIDAS CA (organizationIdentifier, emailAddress), whose
attributes Java writes as ``OID=#<hex DER>``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier
from lxml import etree

from gateway.as4 import (
    EbmsCode,
    EbmsError,
    KeyPair,
    Outgoing,
    PullRequest,
    ReceiptReceived,
    SecurityPolicy,
    build_pull_request,
    build_receipt,
    mime,
    parse_incoming,
    parse_pull,
    parse_response,
    wss,
)
from gateway.as4._ns import BASE64_ENCODING, DS, WSSE, WSU, X509_SKI, XENC, q
from gateway.profiles.certificates import PartnerCertificates
from gateway.profiles.trust import security_policy
from gateway.xmlsafe import parse_xml
from tests.as4.helpers import PERMIT, build, policy_of
from tests.conftest import NOW

A = x509.NameAttribute
_NS = {"ds": DS, "wsse": WSSE, "xenc": XENC}

# The issuer names below and the strings Java writes for them: the certificates were made by
# /tmp/review-interop/issuer/mk.py (and variants of it with these names), and each string is what
# /tmp/review-interop/issuer/Dn.java printed for them (OpenJDK 17): new X500Principal(issuer.getName()).getName(),
# as WSS4J writes ds:X509IssuerName, and X500Principal.toString() / getName("RFC1779") for older peers.
EIDAS_CA = x509.Name(
    [
        A(NameOID.COUNTRY_NAME, "NL"),
        A(NameOID.ORGANIZATION_IDENTIFIER, "NTRNL-30237459"),
        A(NameOID.ORGANIZATION_NAME, "Example Trust B.V."),
        A(NameOID.COMMON_NAME, "Example Qualified Seal CA G1"),
        A(NameOID.EMAIL_ADDRESS, "pki@example.org"),
    ]
)
EIDAS_CA_JAVA = (
    "1.2.840.113549.1.9.1=#160f706b69406578616d706c652e6f7267,CN=Example Qualified Seal CA G1,"
    "O=Example Trust B.V.,2.5.4.97=#0c0e4e54524e4c2d3330323337343539,C=NL"
)
MULTI_VALUED = x509.Name(
    [
        x509.RelativeDistinguishedName([A(NameOID.COUNTRY_NAME, "DE")]),
        x509.RelativeDistinguishedName(
            [A(NameOID.ORGANIZATION_NAME, "Bundesinstitut für Arzneimittel und Medizinprodukte")]
        ),
        x509.RelativeDistinguishedName(
            [A(NameOID.ORGANIZATIONAL_UNIT_NAME, 'PKI, Team "A"'), A(NameOID.SERIAL_NUMBER, "DE-0042")]
        ),
        x509.RelativeDistinguishedName([A(NameOID.COMMON_NAME, " #1 Root+CA\\x ")]),
    ]
)
STRING_TYPES = x509.Name(
    [
        A(NameOID.DOMAIN_COMPONENT, "org"),
        A(NameOID.DOMAIN_COMPONENT, "example"),
        A(NameOID.COMMON_NAME, "Ünïcode  CA"),
        A(NameOID.ORGANIZATION_NAME, "Teletex Org", _type=_ASN1Type.T61String),
        A(NameOID.ORGANIZATION_IDENTIFIER, "VATCH-CHE-123.456.789", _type=_ASN1Type.PrintableString),
        A(NameOID.USER_ID, "uid-7"),
        A(NameOID.SERIAL_NUMBER, "S/N  42"),
        A(ObjectIdentifier("2.5.4.12"), "Ünïcode Title"),
        A(ObjectIdentifier("2.5.4.4"), "Bmp Surname", _type=_ASN1Type.BMPString),
        A(NameOID.X500_UNIQUE_IDENTIFIER, b"\x01\x02\xff", _type=_ASN1Type.BitString),
    ]
)
JAVA_NAMES = [
    pytest.param(EIDAS_CA, EIDAS_CA_JAVA, id="eidas-rfc2253"),
    pytest.param(
        EIDAS_CA,
        "EMAILADDRESS=pki@example.org, CN=Example Qualified Seal CA G1, O=Example Trust B.V., "
        "OID.2.5.4.97=NTRNL-30237459, C=NL",
        id="eidas-tostring",
    ),
    pytest.param(
        EIDAS_CA,
        "OID.1.2.840.113549.1.9.1=pki@example.org, CN=Example Qualified Seal CA G1, O=Example Trust B.V., "
        "OID.2.5.4.97=NTRNL-30237459, C=NL",
        id="eidas-rfc1779",
    ),
    pytest.param(
        MULTI_VALUED,
        'CN=\\ \\#1 Root\\+CA\\\\x\\ ,2.5.4.5=#130744452d30303432+OU=PKI\\, Team \\"A\\",'
        "O=Bundesinstitut für Arzneimittel und Medizinprodukte,C=DE",
        id="multi-valued-rfc2253",
    ),
    pytest.param(
        MULTI_VALUED,
        'CN=" #1 Root+CA\\\\x ", SERIALNUMBER=DE-0042 + OU="PKI, Team \\"A\\"", '
        "O=Bundesinstitut für Arzneimittel und Medizinprodukte, C=DE",
        id="multi-valued-tostring",
    ),
    pytest.param(
        STRING_TYPES,
        "2.5.4.45=#03030102ff,2.5.4.4=#1e160042006d00700020005300750072006e0061006d0065,"
        "2.5.4.12=#0c0fc39c6ec3af636f6465205469746c65,2.5.4.5=#1307532f4e20203432,UID=uid-7,"
        "2.5.4.97=#131556415443482d4348452d3132332e3435362e373839,O=Teletex Org,CN=Ünïcode  CA,DC=example,DC=org",
        id="string-types-rfc2253",
    ),
    pytest.param(
        STRING_TYPES,
        'OID.2.5.4.45=#03030102ff, SURNAME=Bmp Surname, T=Ünïcode Title, SERIALNUMBER="S/N  42", UID=uid-7, '
        'OID.2.5.4.97=VATCH-CHE-123.456.789, O=Teletex Org, CN="Ünïcode  CA", DC=example, DC=org',
        id="string-types-tostring",
    ),
]
SERIAL = 0x1234567890ABCDEF
SERIAL_JAVA = "1311768467294899695"  # Dn.java's second line for mk.py's leaf
PATTERN = r"CN=BE-FAMHP AS4,C=BE"

_KEYS: dict[str, rsa.RSAPrivateKey] = {}


def _key(name: str) -> rsa.RSAPrivateKey:
    if name not in _KEYS:
        _KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEYS[name]


def _issue(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    *,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    serial: int,
    ca: bool = False,
    start: timedelta = timedelta(days=-1),
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW + start)
        .not_valid_after(NOW + start + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def _subject(cn: str) -> x509.Name:
    return x509.Name([A(NameOID.COUNTRY_NAME, "BE"), A(NameOID.COMMON_NAME, cn)])


CA = KeyPair(
    private_key=_key("ca"),
    certificate=_issue(EIDAS_CA, _key("ca"), issuer=EIDAS_CA, issuer_key=_key("ca"), serial=1, ca=True),
)


def _leaf(cn: str, serial: int, *, key: str | None = None, start: timedelta = timedelta(days=-1)) -> KeyPair:
    private_key = _key(key or cn)
    cert = _issue(_subject(cn), private_key, issuer=EIDAS_CA, issuer_key=_key("ca"), serial=serial, start=start)
    return KeyPair(private_key=private_key, certificate=cert)


PARTNER = _leaf("BE-FAMHP AS4", SERIAL)  # signs with the key it decrypts with (eDelivery AS4 1.15)
US = _leaf("CH-SWISSMEDIC AS4", SERIAL + 1)
STRANGER = _leaf("BE-FAMHP AS4", SERIAL + 2, key="stranger")  # the anchor issued it the partner's subject


def anchored(encryption: x509.Certificate = PARTNER.certificate) -> SecurityPolicy:
    """The policy of a profile with trust_anchor, subject and encryption_certificate, as the gateway builds it."""
    certificates = PartnerCertificates(
        profile_id="be-famhp", signing=(), encryption=encryption, trust_anchor=CA.certificate, subject=PATTERN
    )
    return security_policy(certificates, now=NOW)


# --- KeyInfo rewriting: a partner naming its certificate instead of sending it ----------------------------------

Mutation = Callable[[etree._Element], None]


def rewrap(out: Outgoing, mutate: Mutation) -> tuple[str, bytes]:
    """``out`` with its envelope changed by ``mutate``, not signed again (as ``test_hostile.rewrap``)."""
    package = mime.parse(out.content_type, out.body)
    root = parse_xml(package.envelope)
    mutate(root)
    envelope = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return mime.build(envelope, list(package.attachments.values()))


def _ski(cert: x509.Certificate) -> str:
    digest = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    return base64.b64encode(digest).decode()


def by_ski(cert: x509.Certificate) -> Mutation:
    def reference(str_el: etree._Element) -> None:
        key_id = etree.SubElement(
            str_el, q(WSSE, "KeyIdentifier"), {"EncodingType": BASE64_ENCODING, "ValueType": X509_SKI}
        )
        key_id.text = _ski(cert)

    return reference


def by_issuer_serial(issuer: str, serial: str) -> Mutation:
    def reference(str_el: etree._Element) -> None:
        pair = etree.SubElement(etree.SubElement(str_el, q(DS, "X509Data")), q(DS, "X509IssuerSerial"))
        etree.SubElement(pair, q(DS, "X509IssuerName")).text = issuer
        etree.SubElement(pair, q(DS, "X509SerialNumber")).text = serial

    return reference


def named(key_info_path: str, reference: Mutation) -> Mutation:
    """Point the KeyInfo at ``key_info_path`` at its certificate by ``reference`` and drop the token it named.
    The KeyInfo is outside SignedInfo (and an EncryptedKey's is not signed), so nothing else changes."""

    def mutate(root: etree._Element) -> None:
        str_el = root.find(f"{key_info_path}/wsse:SecurityTokenReference", _NS)
        assert str_el is not None, key_info_path
        (token_reference,) = list(str_el)
        token_id = (token_reference.get("URI") or "").removeprefix("#")
        str_el.remove(token_reference)
        reference(str_el)
        (token,) = [t for t in root.iter(q(WSSE, "BinarySecurityToken")) if t.get(q(WSU, "Id")) == token_id]
        security = token.getparent()
        assert security is not None
        security.remove(token)

    return mutate


SIGNER = ".//ds:Signature/ds:KeyInfo"
RECIPIENT = ".//xenc:EncryptedKey/ds:KeyInfo"


def _receive(content_type: str, body: bytes, policy: SecurityPolicy, key: KeyPair = US) -> bytes:
    event = parse_incoming(content_type, body, policy_for=lambda um: policy, keys=[key], now=NOW)
    return event.payloads[0].data


def _refused(content_type: str, body: bytes, policy: SecurityPolicy, key: KeyPair = US) -> EbmsError:
    with pytest.raises(EbmsError) as caught:
        _receive(content_type, body, policy, key)
    return caught.value


def _key_info(reference: Mutation) -> etree._Element:
    key_info = etree.Element(q(DS, "KeyInfo"), nsmap={"ds": DS, "wsse": WSSE})
    reference(etree.SubElement(key_info, q(WSSE, "SecurityTokenReference")))
    return key_info


# --- IssuerSerial: the issuer's name as Java writes it -------------------------------------------------------------


@pytest.mark.parametrize(("issuer", "java"), JAVA_NAMES)
def test_an_issuer_name_written_by_java_names_the_certificate(issuer: x509.Name, java: str) -> None:
    key = _key("names")
    other = _issue(_subject("other"), key, issuer=_subject("Another CA"), issuer_key=key, serial=SERIAL)
    cert = _issue(_subject("named"), key, issuer=issuer, issuer_key=key, serial=SERIAL)
    found = wss.resolve_certificate(_key_info(by_issuer_serial(java, SERIAL_JAVA)), {}, [other, cert])
    assert found is cert


@pytest.mark.parametrize(
    ("java", "serial"),
    [
        pytest.param(EIDAS_CA_JAVA, str(SERIAL + 1), id="another-serial"),
        pytest.param(EIDAS_CA_JAVA.replace("Trust B.V.", "Trust B.W."), SERIAL_JAVA, id="another-organization"),
        pytest.param(  # organizationIdentifier NTRNL-30237458, the #hex of another value
            EIDAS_CA_JAVA.replace("#0c0e4e54524e4c2d3330323337343539", "#0c0e4e54524e4c2d3330323337343538"),
            SERIAL_JAVA,
            id="another-hex-value",
        ),
        pytest.param(EIDAS_CA_JAVA.split(",", 1)[1], SERIAL_JAVA, id="an-attribute-left-out"),
        pytest.param(EIDAS_CA_JAVA.replace("CN=", "OU="), SERIAL_JAVA, id="another-attribute-type"),
    ],
)
def test_another_serial_or_attribute_value_names_no_certificate(java: str, serial: str) -> None:
    with pytest.raises(EbmsError) as caught:
        wss.resolve_certificate(_key_info(by_issuer_serial(java, serial)), {}, [PARTNER.certificate])
    assert caught.value.code is EbmsCode.FAILED_AUTHENTICATION
    assert "matches none of the certificates pinned in the partner profile" in caught.value.detail
    assert "IssuerSerial" in caught.value.detail


def test_an_issuer_name_that_is_no_distinguished_name_is_refused_saying_where() -> None:
    for text, where in (("CN=Example,O", "at character 12"), ("CN=a,FOO=b", "unknown attribute type 'FOO'")):
        with pytest.raises(EbmsError) as caught:
            wss.resolve_certificate(_key_info(by_issuer_serial(text, SERIAL_JAVA)), {}, [PARTNER.certificate])
        assert caught.value.code is EbmsCode.FAILED_AUTHENTICATION
        assert "is not a distinguished name as RFC 4514 (RFC 2253) writes it" in caught.value.detail
        assert where in caught.value.detail, caught.value.detail


def test_a_payload_encrypted_for_our_key_named_by_issuer_serial_the_java_way_is_decrypted() -> None:
    out = build(PARTNER, US, NOW)
    reference = by_issuer_serial(EIDAS_CA_JAVA, str(US.certificate.serial_number))
    content_type, body = rewrap(out, named(RECIPIENT, reference))
    assert _receive(content_type, body, policy_of(PARTNER)) == PERMIT


def test_an_encrypted_key_naming_another_serial_of_our_issuer_is_ebms_0102() -> None:
    out = build(PARTNER, US, NOW)
    content_type, body = rewrap(out, named(RECIPIENT, by_issuer_serial(EIDAS_CA_JAVA, SERIAL_JAVA)))
    error = _refused(content_type, body, policy_of(PARTNER))
    assert error.code is EbmsCode.FAILED_DECRYPTION
    assert (
        "the EncryptedKey names no key of ours" in error.detail
        and "matches none of our certificates" in error.detail
    )


def test_a_signature_naming_the_pinned_certificate_by_issuer_serial_the_java_way_is_accepted() -> None:
    content_type, body = rewrap(
        build(PARTNER, US, NOW), named(SIGNER, by_issuer_serial(EIDAS_CA_JAVA, SERIAL_JAVA))
    )
    assert _receive(content_type, body, policy_of(PARTNER)) == PERMIT


# --- trust anchor: references resolve to the profile's encryption certificate ----------------------------------


def test_the_anchor_policy_knows_the_encryption_certificate_and_pins_nothing() -> None:
    policy = anchored()
    assert policy.signing_certificates == ()
    assert policy.key_reference_candidates == (PARTNER.certificate,)


@pytest.mark.parametrize(
    "reference",
    [
        pytest.param(by_ski(PARTNER.certificate), id="subject-key-identifier"),
        pytest.param(by_issuer_serial(EIDAS_CA_JAVA, SERIAL_JAVA), id="issuer-serial"),
    ],
)
def test_under_a_trust_anchor_a_signature_naming_the_partner_without_a_token_is_accepted(
    reference: Mutation,
) -> None:
    content_type, body = rewrap(build(PARTNER, US, NOW), named(SIGNER, reference))
    assert b"BinarySecurityToken" in body  # ours, for the EncryptedKey: the signer's is gone
    event = parse_incoming(content_type, body, policy_for=lambda um: anchored(), keys=[US], now=NOW)
    assert event.payloads[0].data == PERMIT
    assert event.signer_certificate_sha256 == PARTNER.certificate.fingerprint(hashes.SHA256()).hex()


def test_under_a_trust_anchor_a_subject_key_identifier_of_another_certificate_is_ebms_0101() -> None:
    # the anchor issued STRANGER the partner's subject: sent in a token it would be trusted, but a bare
    # reference can only name a certificate the profile holds
    content_type, body = rewrap(build(STRANGER, US, NOW), named(SIGNER, by_ski(STRANGER.certificate)))
    error = _refused(content_type, body, anchored())
    assert error.code is EbmsCode.FAILED_AUTHENTICATION
    assert f"the SubjectKeyIdentifier {_ski(STRANGER.certificate)!r} in ds:KeyInfo matches none of" in error.detail
    assert "the partner profile's certificates (pinned signing certificates and encryption certificate)" in (
        error.detail
    )
    assert "BinarySecurityToken" in error.detail and "encryption_certificate" in error.detail


def test_a_known_certificate_is_trusted_only_as_one_sent_in_a_token() -> None:
    """The encryption certificate found by reference still needs the anchor's subject and validity."""
    elsewhere = _leaf("NL-CIBG AS4", SERIAL + 3)
    content_type, body = rewrap(build(elsewhere, US, NOW), named(SIGNER, by_ski(elsewhere.certificate)))
    error = _refused(content_type, body, anchored(encryption=elsewhere.certificate))
    assert error.code is EbmsCode.FAILED_AUTHENTICATION
    assert "does not match the partner profile's subject pattern" in error.detail

    expired = _leaf("BE-FAMHP AS4", SERIAL + 4, start=timedelta(days=-400))
    content_type, body = rewrap(build(expired, US, NOW), named(SIGNER, by_ski(expired.certificate)))
    error = _refused(content_type, body, anchored(encryption=expired.certificate))
    assert error.code is EbmsCode.FAILED_AUTHENTICATION and "is valid from" in error.detail


def test_under_a_trust_anchor_a_receipt_naming_its_signer_by_subject_key_identifier_is_accepted() -> None:
    sent = build(US, PARTNER, NOW)
    event = parse_incoming(
        sent.content_type, sent.body, policy_for=lambda um: policy_of(US), keys=[PARTNER], now=NOW
    )
    receipt = build_receipt(
        event.user_message.message_id, event.references, key=PARTNER, message_id="r-1@be-famhp.test", now=NOW
    )
    content_type, body = rewrap(receipt, named(SIGNER, by_ski(PARTNER.certificate)))
    assert b"BinarySecurityToken" not in body
    answer = parse_response(content_type, body, sent=sent, policy=anchored(), now=NOW)
    assert isinstance(answer, ReceiptReceived) and answer.ref_to_message_id == sent.message_id


def test_under_a_trust_anchor_a_pull_naming_its_signer_by_subject_key_identifier_is_the_partners() -> None:
    out = build_pull_request(
        PullRequest(message_id="pull-1@be.test", timestamp=NOW, mpc="urn:mpc:be"), key=PARTNER
    )
    content_type, body = rewrap(out, named(SIGNER, by_ski(PARTNER.certificate)))
    candidates = {"be-famhp": anchored(), "nl-cibg": policy_of(STRANGER)}
    partner, pull = parse_pull(content_type, body, candidates=candidates, now=NOW)
    assert partner == "be-famhp" and pull.message_id == "pull-1@be.test"


def test_a_renewed_certificate_keeping_its_key_is_found_by_subject_key_identifier() -> None:
    """Both certificates of a rollover that kept the key carry one SubjectKeyIdentifier: the valid one signs."""
    old = _leaf("BE-FAMHP AS4", SERIAL + 5, key="renewed", start=timedelta(days=-400))
    new = _leaf("BE-FAMHP AS4", SERIAL + 6, key="renewed")
    content_type, body = rewrap(build(new, US, NOW), named(SIGNER, by_ski(new.certificate)))
    assert _receive(
        content_type, body, SecurityPolicy(signing_certificates=(old.certificate, new.certificate))
    ) == (PERMIT)
