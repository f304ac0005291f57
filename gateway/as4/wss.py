"""WS-Security 1.1.1 for AS4: detached XML-DSig over eb:Messaging, the Body and every attachment, and
attachment encryption (SwA Attachment-Content-Only) with an RSA-OAEP EncryptedKey.

Canonicalization is lxml's (libxml2) exclusive C14N; digests are hashlib; signatures, key transport and
AES-GCM are ``cryptography``. libxmlsec has no Attachment-Content-Signature-Transform, so the reference
digests are ours to compute and to check, and we check every one of them on receipt.
"""

from __future__ import annotations

import base64
import hmac
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree

from gateway.as4 import _ns as ns
from gateway.as4._ns import q
from gateway.as4.algorithms import (
    DataEncryption,
    DigestMethod,
    KeyTransport,
    MaskGeneration,
    SignatureMethod,
    Transform,
)
from gateway.as4.errors import EbmsCode, EbmsError
from gateway.as4.mime import MimePart
from gateway.as4.model import SignedReference
from gateway.as4.policy import KeyPair, SecurityPolicy

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    DigestMethod.SHA256: hashes.SHA256,
    DigestMethod.SHA384: hashes.SHA384,
    DigestMethod.SHA512: hashes.SHA512,
    DigestMethod.SHA1: hashes.SHA1,
}
_SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    SignatureMethod.RSA_SHA256: hashes.SHA256,
    SignatureMethod.RSA_SHA384: hashes.SHA384,
    SignatureMethod.RSA_SHA512: hashes.SHA512,
    SignatureMethod.RSA_SHA1: hashes.SHA1,
}
_MGF_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    MaskGeneration.MGF1_SHA1: hashes.SHA1,
    MaskGeneration.MGF1_SHA256: hashes.SHA256,
}
_ID_ATTRIBUTES = (q(ns.WSU, "Id"), "Id", "ID", "id")
_NS = {"wsse": ns.WSSE, "wsu": ns.WSU, "ds": ns.DS, "xenc": ns.XENC, "xenc11": ns.XENC11, "ec": ns.EC}
_GCM_IV_BYTES = 12


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


def exc_c14n(element: etree._Element, prefixes: Sequence[str] = ()) -> bytes:
    return etree.tostring(
        element, method="c14n", exclusive=True, with_comments=False, inclusive_ns_prefixes=list(prefixes) or None
    )


def attachment_octets(part: MimePart) -> bytes:
    """What the Attachment-Content-Signature-Transform yields: XML content canonicalized, the rest as is."""
    media = part.content_type.split(";")[0].strip().lower()
    if media in ("text/xml", "application/xml") or media.endswith("+xml"):
        from gateway.xmlsafe import parse_xml

        root = parse_xml(part.data, what=f"attachment <{part.content_id}>")
        return etree.tostring(root.getroottree(), method="c14n", with_comments=False)
    if media.startswith("text/"):
        return part.data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return part.data


def _digest(method: str, data: bytes) -> str:
    digest = hashes.Hash(_HASHES[method]())
    digest.update(data)
    return base64.b64encode(digest.finalize()).decode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str | None, what: str, code: EbmsCode) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except ValueError:
        raise EbmsError(code, f"{what} is not valid base64") from None


def _el(
    parent: etree._Element, tag: str, attrs: dict[str, str] | None = None, text: str | None = None
) -> etree._Element:
    el = etree.SubElement(parent, tag, attrs or {})
    if text is not None:
        el.text = text
    return el


def security_header(header: etree._Element, soap_ns: str = ns.S12) -> etree._Element:
    return etree.SubElement(
        header,
        q(ns.WSSE, "Security"),
        {q(soap_ns, "mustUnderstand"): "true"},
        nsmap={"wsse": ns.WSSE, "wsu": ns.WSU, "ds": ns.DS, "xenc": ns.XENC},
    )


def _binary_security_token(parent: etree._Element, cert: x509.Certificate, index: int | None = None) -> str:
    token_id = new_id("X509")
    bst = etree.Element(
        q(ns.WSSE, "BinarySecurityToken"),
        {"EncodingType": ns.BASE64_ENCODING, "ValueType": ns.X509V3, q(ns.WSU, "Id"): token_id},
    )
    bst.text = _b64(cert.public_bytes(serialization.Encoding.DER))
    if index is None:
        parent.append(bst)
    else:
        parent.insert(index, bst)
    return token_id


def _token_reference(parent: etree._Element, token_id: str) -> None:
    str_el = _el(parent, q(ns.WSSE, "SecurityTokenReference"))
    _el(str_el, q(ns.WSSE, "Reference"), {"URI": f"#{token_id}", "ValueType": ns.X509V3})


# --- signing -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SignTarget:
    """A part to sign: an element carrying a wsu:Id, or an attachment by Content-ID."""

    uri: str
    octets: bytes = field(repr=False)
    transform: Transform


def element_target(element: etree._Element) -> SignTarget:
    element_id = element.get(q(ns.WSU, "Id"))
    if element_id is None:
        raise ValueError("an element to sign needs a wsu:Id")
    return SignTarget(uri=f"#{element_id}", octets=exc_c14n(element), transform=Transform.EXC_C14N)


def attachment_target(part: MimePart) -> SignTarget:
    return SignTarget(
        uri=f"cid:{part.content_id}",
        octets=attachment_octets(part),
        transform=Transform.ATTACHMENT_CONTENT_SIGNATURE,
    )


def sign(
    security: etree._Element,
    targets: Sequence[SignTarget],
    key: KeyPair,
    *,
    method: SignatureMethod = SignatureMethod.RSA_SHA256,
    digest: DigestMethod = DigestMethod.SHA256,
) -> tuple[SignedReference, ...]:
    """Append a BinarySecurityToken and a detached ds:Signature over ``targets`` to the Security header."""
    token_id = _binary_security_token(security, key.certificate)
    signature = _el(security, q(ns.DS, "Signature"), {"Id": new_id("SIG")})
    signed_info = _el(signature, q(ns.DS, "SignedInfo"))
    _el(signed_info, q(ns.DS, "CanonicalizationMethod"), {"Algorithm": Transform.EXC_C14N})
    _el(signed_info, q(ns.DS, "SignatureMethod"), {"Algorithm": method})
    references = []
    for target in targets:
        ref = _el(signed_info, q(ns.DS, "Reference"), {"URI": target.uri})
        transforms = _el(ref, q(ns.DS, "Transforms"))
        _el(transforms, q(ns.DS, "Transform"), {"Algorithm": target.transform})
        _el(ref, q(ns.DS, "DigestMethod"), {"Algorithm": digest})
        value = _digest(digest, target.octets)
        _el(ref, q(ns.DS, "DigestValue"), text=value)
        references.append(
            SignedReference(uri=target.uri, digest_method=digest, digest_value=value, xml=etree.tostring(ref))
        )
    signed_octets = exc_c14n(signed_info)
    signature_value = key.private_key.sign(signed_octets, padding.PKCS1v15(), _SIGNATURE_HASHES[method]())
    _el(signature, q(ns.DS, "SignatureValue"), text=_b64(signature_value))
    key_info = _el(signature, q(ns.DS, "KeyInfo"), {"Id": new_id("KI")})
    _token_reference(key_info, token_id)
    return tuple(references)


# --- encryption ----------------------------------------------------------------------------------------


def encrypt_attachments(
    security: etree._Element, parts: Sequence[MimePart], recipient: x509.Certificate
) -> list[MimePart]:
    """Encrypt each attachment (AES-128-GCM, one content key) and wrap the key for ``recipient`` (RSA-OAEP)."""
    public_key = recipient.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("eDelivery AS4 1.15 encryption needs an RSA certificate")
    content_key = AESGCM.generate_key(bit_length=128)
    token_id = _binary_security_token(security, recipient, index=0)
    key_id = new_id("EK")
    encrypted_key = etree.Element(q(ns.XENC, "EncryptedKey"), {"Id": key_id}, nsmap={"xenc": ns.XENC})
    security.insert(1, encrypted_key)
    method = _el(encrypted_key, q(ns.XENC, "EncryptionMethod"), {"Algorithm": KeyTransport.RSA_OAEP})
    _el(method, q(ns.DS, "DigestMethod"), {"Algorithm": DigestMethod.SHA256})
    etree.SubElement(
        method, q(ns.XENC11, "MGF"), {"Algorithm": MaskGeneration.MGF1_SHA256.value}, nsmap={"xenc11": ns.XENC11}
    )
    _token_reference(_el(encrypted_key, q(ns.DS, "KeyInfo")), token_id)
    wrapped = public_key.encrypt(content_key, _oaep(MaskGeneration.MGF1_SHA256, DigestMethod.SHA256))
    cipher_data = _el(encrypted_key, q(ns.XENC, "CipherData"))
    _el(cipher_data, q(ns.XENC, "CipherValue"), text=_b64(wrapped))
    reference_list = _el(encrypted_key, q(ns.XENC, "ReferenceList"))
    aes = AESGCM(content_key)
    encrypted_parts = []
    for index, part in enumerate(parts):
        data_id = new_id("ED")
        _el(reference_list, q(ns.XENC, "DataReference"), {"URI": f"#{data_id}"})
        security.insert(2 + index, _encrypted_data(data_id, key_id, part))
        iv = os.urandom(_GCM_IV_BYTES)
        encrypted_parts.append(
            MimePart(
                content_id=part.content_id,
                content_type="application/octet-stream",
                data=iv + aes.encrypt(iv, part.data, None),
            )
        )
    return encrypted_parts


def _encrypted_data(data_id: str, key_id: str, part: MimePart) -> etree._Element:
    data = etree.Element(
        q(ns.XENC, "EncryptedData"),
        {"Id": data_id, "MimeType": part.content_type, "Type": ns.SWA_CONTENT_ONLY},
        nsmap={"xenc": ns.XENC},
    )
    _el(data, q(ns.XENC, "EncryptionMethod"), {"Algorithm": DataEncryption.AES128_GCM})
    key_info = _el(data, q(ns.DS, "KeyInfo"))
    str_el = etree.SubElement(
        key_info,
        q(ns.WSSE, "SecurityTokenReference"),
        {q(ns.WSSE11, "TokenType"): ns.TOKEN_TYPE_ENCRYPTED_KEY},
        nsmap={"wsse11": ns.WSSE11},
    )
    _el(str_el, q(ns.WSSE, "Reference"), {"URI": f"#{key_id}"})
    cipher_ref = _el(
        _el(data, q(ns.XENC, "CipherData")), q(ns.XENC, "CipherReference"), {"URI": f"cid:{part.content_id}"}
    )
    transforms = _el(cipher_ref, q(ns.XENC, "Transforms"))
    _el(transforms, q(ns.DS, "Transform"), {"Algorithm": ns.SWA_CIPHERTEXT_TRANSFORM})
    return data


def _oaep(mgf: str, digest: str) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(_MGF_HASHES[mgf]()), algorithm=_HASHES[digest](), label=None)


# --- receiving: security header, tokens, ids ------------------------------------------------------------


def find_security(header: etree._Element | None) -> etree._Element | None:
    """The one wsse:Security header addressed to us (no actor/role); two of them is an attack or an error."""
    if header is None:
        return None
    ours = [
        el
        for el in header.findall("wsse:Security", _NS)
        if el.get(q(ns.S12, "role")) is None and el.get(q(ns.S11, "actor")) is None
    ]
    if len(ours) > 1:
        raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, "more than one wsse:Security header without a role")
    return ours[0] if ours else None


def index_ids(root: etree._Element) -> dict[str, etree._Element]:
    """Every element id in the envelope; a repeated id is refused because it enables signature wrapping."""
    found: dict[str, etree._Element] = {}
    for el in root.iter(etree.Element):
        for attr in _ID_ATTRIBUTES:
            value = el.get(attr)
            if value is None:
                continue
            if value in found and found[value] is not el:
                raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, f"id {value!r} occurs on more than one element")
            found[value] = el
    return found


def _certificate_from_token(token: etree._Element) -> x509.Certificate:
    value_type = token.get("ValueType")
    der = _unb64(token.text, "wsse:BinarySecurityToken", EbmsCode.FAILED_AUTHENTICATION)
    try:
        if value_type == ns.X509V3:
            return x509.load_der_x509_certificate(der)
        if value_type == ns.X509_PKIPATH:
            return _pkipath_leaf(der)
    except ValueError as exc:
        raise EbmsError(
            EbmsCode.FAILED_AUTHENTICATION, f"BinarySecurityToken is not a certificate: {exc}"
        ) from None
    raise EbmsError(
        EbmsCode.POLICY_NONCOMPLIANCE, f"BinarySecurityToken ValueType {value_type!r} is not supported"
    )


def _pkipath_leaf(der: bytes) -> x509.Certificate:
    """A PKIPath is a DER SEQUENCE OF Certificate, issuer first; the signer is the last one."""
    content_start, end = _der_header(der, 0)
    certs = []
    offset = content_start
    while offset < end:
        _, element_end = _der_header(der, offset)
        certs.append(x509.load_der_x509_certificate(der[offset:element_end]))
        offset = element_end
    if not certs:
        raise ValueError("empty PKIPath")
    return certs[-1]


def _der_header(der: bytes, offset: int) -> tuple[int, int]:
    """(start of content, end of element) of the DER SEQUENCE at ``offset``: just enough to split a PKIPath."""
    if offset + 2 > len(der) or der[offset] != 0x30:
        raise ValueError("expected a DER SEQUENCE")
    length, header = der[offset + 1], 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[offset + 2 : offset + 2 + count], "big")
        header += count
    if offset + header + length > len(der):
        raise ValueError("truncated DER")
    return offset + header, offset + header + length


def _ski(cert: x509.Certificate) -> bytes:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def resolve_certificate(
    key_info: etree._Element | None, ids: dict[str, etree._Element], candidates: Iterable[x509.Certificate]
) -> x509.Certificate:
    """The certificate a KeyInfo points at: a BinarySecurityToken, a SubjectKeyIdentifier or an IssuerSerial.

    For the last two the certificate must be one of ``candidates`` (pinned ones): the reference only names it.
    """
    if key_info is None:
        raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, "ds:KeyInfo is missing")
    candidates = list(candidates)
    ref = key_info.find("wsse:SecurityTokenReference/wsse:Reference", _NS)
    if ref is not None:
        token = ids.get((ref.get("URI") or "").removeprefix("#"))
        if token is None or token.tag != q(ns.WSSE, "BinarySecurityToken"):
            raise EbmsError(
                EbmsCode.FAILED_AUTHENTICATION,
                f"token reference {ref.get('URI')!r} resolves to no BinarySecurityToken",
            )
        return _certificate_from_token(token)
    ski = key_info.find("wsse:SecurityTokenReference/wsse:KeyIdentifier", _NS)
    if ski is not None and ski.get("ValueType") == ns.X509_SKI:
        wanted = _unb64(ski.text, "wsse:KeyIdentifier", EbmsCode.FAILED_AUTHENTICATION)
        return _pick(candidates, lambda c: hmac.compare_digest(_ski(c), wanted), "SubjectKeyIdentifier")
    serial = key_info.find(".//ds:X509IssuerSerial", _NS)
    if serial is not None:
        number = int((serial.findtext("ds:X509SerialNumber", "", _NS) or "0").strip())
        issuer = (serial.findtext("ds:X509IssuerName", "", _NS) or "").strip()
        return _pick(
            candidates, lambda c: c.serial_number == number and _same_name(c.issuer, issuer), "IssuerSerial"
        )
    certificate = key_info.find(".//ds:X509Certificate", _NS)
    if certificate is not None:
        der = _unb64(certificate.text, "ds:X509Certificate", EbmsCode.FAILED_AUTHENTICATION)
        return x509.load_der_x509_certificate(der)
    raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, "ds:KeyInfo uses no supported token reference")


def _same_name(name: x509.Name, text: str) -> bool:
    def norm(value: str) -> set[str]:
        return {part.strip().replace(" ", "").lower() for part in value.split(",") if part.strip()}

    return norm(name.rfc4514_string()) == norm(text)


def _pick(candidates: list[x509.Certificate], match: object, how: str) -> x509.Certificate:
    assert callable(match)
    for cert in candidates:
        if match(cert):
            return cert
    raise EbmsError(
        EbmsCode.FAILED_AUTHENTICATION, f"the {how} in ds:KeyInfo matches none of the expected certificates"
    )


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def check_certificate(
    cert: x509.Certificate, pinned: Sequence[x509.Certificate], now: datetime, role: str
) -> None:
    if fingerprint(cert) not in {fingerprint(c) for c in pinned}:
        raise EbmsError(
            EbmsCode.FAILED_AUTHENTICATION,
            f"{role} certificate {cert.subject.rfc4514_string()!r} (SHA-256 {fingerprint(cert)[:16]}...) "
            "is not among the certificates pinned in the partner profile",
        )
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise EbmsError(
            EbmsCode.FAILED_AUTHENTICATION,
            f"{role} certificate {cert.subject.rfc4514_string()!r} is valid from {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d}, not at {now:%Y-%m-%dT%H:%M:%SZ}",
        )


# --- receiving: decryption -----------------------------------------------------------------------------


def decrypt_attachments(
    security: etree._Element | None,
    attachments: dict[str, MimePart],
    keys: Sequence[KeyPair],
    policy: SecurityPolicy,
    ids: dict[str, etree._Element],
) -> dict[str, MimePart]:
    """Decrypt every encrypted attachment; with ``require_encryption`` an unencrypted one is EBMS:0103."""
    encrypted = security.findall("xenc:EncryptedData", _NS) if security is not None else []
    result = dict(attachments)
    covered = set()
    content_keys = _content_keys(security, keys, policy, ids) if encrypted else {}
    for data in encrypted:
        cid, part = _decrypt_one(data, attachments, content_keys, policy, ids)
        covered.add(cid)
        result[cid] = part
    missing = sorted(set(attachments) - covered)
    if policy.require_encryption and missing:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"attachment <{missing[0]}> is not encrypted; the partner profile requires encryption of every payload",
        )
    return result


def _content_keys(
    security: etree._Element | None,
    keys: Sequence[KeyPair],
    policy: SecurityPolicy,
    ids: dict[str, etree._Element],
) -> dict[str, bytes]:
    """Unwrap every EncryptedKey meant for one of our keys; map its Id and its DataReferences to the key."""
    found: dict[str, bytes] = {}
    assert security is not None
    for encrypted_key in security.findall("xenc:EncryptedKey", _NS):
        content_key = _unwrap(encrypted_key, keys, policy, ids)
        if encrypted_key.get("Id"):
            found[str(encrypted_key.get("Id"))] = content_key
        for data_ref in encrypted_key.findall("xenc:ReferenceList/xenc:DataReference", _NS):
            found[(data_ref.get("URI") or "").removeprefix("#")] = content_key
    return found


def _unwrap(
    encrypted_key: etree._Element, keys: Sequence[KeyPair], policy: SecurityPolicy, ids: dict[str, etree._Element]
) -> bytes:
    method = encrypted_key.find("xenc:EncryptionMethod", _NS)
    algorithm = method.get("Algorithm") if method is not None else None
    if algorithm not in {k.value for k in policy.key_transport}:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"key transport {algorithm!r} is not allowed by the partner profile (expected one of "
            f"{sorted(k.value for k in policy.key_transport)})",
        )
    assert method is not None
    digest = method.find("ds:DigestMethod", _NS)
    digest_uri = digest.get("Algorithm") if digest is not None else DigestMethod.SHA1
    mgf_el = method.find("xenc11:MGF", _NS)
    mgf = mgf_el.get("Algorithm") if mgf_el is not None else MaskGeneration.MGF1_SHA1
    if algorithm == KeyTransport.RSA_OAEP and mgf not in {m.value for m in policy.mask_generation}:
        raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, f"RSA-OAEP mask generation {mgf!r} is not allowed")
    if digest_uri not in _HASHES or mgf not in _MGF_HASHES:
        raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, f"unsupported OAEP parameters {digest_uri!r}, {mgf!r}")
    key = _our_key(encrypted_key.find("ds:KeyInfo", _NS), keys, ids)
    wrapped = _unb64(
        encrypted_key.findtext("xenc:CipherData/xenc:CipherValue", None, _NS),
        "EncryptedKey CipherValue",
        EbmsCode.FAILED_DECRYPTION,
    )
    try:
        return key.private_key.decrypt(wrapped, _oaep(str(mgf), str(digest_uri)))
    except ValueError:
        raise EbmsError(
            EbmsCode.FAILED_DECRYPTION, "the EncryptedKey could not be unwrapped with our private key"
        ) from None


def _our_key(key_info: etree._Element | None, keys: Sequence[KeyPair], ids: dict[str, etree._Element]) -> KeyPair:
    try:
        cert = resolve_certificate(key_info, ids, [k.certificate for k in keys])
    except EbmsError as exc:
        raise EbmsError(EbmsCode.FAILED_DECRYPTION, f"EncryptedKey names no key of ours: {exc.detail}") from None
    for key in keys:
        if fingerprint(key.certificate) == fingerprint(cert):
            return key
    raise EbmsError(
        EbmsCode.FAILED_DECRYPTION,
        f"payload is encrypted for {cert.subject.rfc4514_string()!r}, which is not one of our current keys",
    )


def _decrypt_one(
    data: etree._Element,
    attachments: dict[str, MimePart],
    content_keys: dict[str, bytes],
    policy: SecurityPolicy,
    ids: dict[str, etree._Element],
) -> tuple[str, MimePart]:
    data_id = data.get("Id") or ""
    algorithm = data.find("xenc:EncryptionMethod", _NS)
    uri = algorithm.get("Algorithm") if algorithm is not None else None
    if uri not in {a.value for a in policy.data_encryption}:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE, f"data encryption {uri!r} of EncryptedData {data_id!r} is not allowed"
        )
    if data.get("Type") != ns.SWA_CONTENT_ONLY:
        raise EbmsError(
            EbmsCode.FEATURE_NOT_SUPPORTED_UNPACKAGING,
            f"EncryptedData Type {data.get('Type')!r} is not supported (expected Attachment-Content-Only)",
        )
    cid = data.findtext("xenc:CipherData/xenc:CipherReference[@URI]", None, _NS) or ""
    ref = data.find("xenc:CipherData/xenc:CipherReference", _NS)
    cid = (ref.get("URI") or "") if ref is not None else cid
    if not cid.startswith("cid:") or cid[4:] not in attachments:
        raise EbmsError(
            EbmsCode.MIME_INCONSISTENCY,
            f"EncryptedData {data_id!r} refers to {cid!r}, which is not a MIME part of this message",
        )
    key = content_keys.get(data_id) or content_keys.get(_key_reference(data))
    if key is None:
        raise EbmsError(EbmsCode.FAILED_DECRYPTION, f"no EncryptedKey covers EncryptedData {data_id!r}")
    ciphertext = attachments[cid[4:]].data
    try:
        plain = AESGCM(key).decrypt(ciphertext[:_GCM_IV_BYTES], ciphertext[_GCM_IV_BYTES:], None)
    except (InvalidTag, ValueError):
        raise EbmsError(
            EbmsCode.FAILED_DECRYPTION, f"attachment <{cid[4:]}> failed AES-GCM authentication"
        ) from None
    mime_type = data.get("MimeType") or "application/octet-stream"
    return cid[4:], MimePart(content_id=cid[4:], content_type=mime_type, data=plain)


def _key_reference(data: etree._Element) -> str:
    ref = data.find("ds:KeyInfo/wsse:SecurityTokenReference/wsse:Reference", _NS)
    return (ref.get("URI") or "").removeprefix("#") if ref is not None else ""


# --- receiving: signature ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Verified:
    references: tuple[SignedReference, ...]
    certificate: x509.Certificate


def verify(
    security: etree._Element | None,
    ids: dict[str, etree._Element],
    expected_elements: dict[str, etree._Element],
    attachments: dict[str, MimePart],
    policy: SecurityPolicy,
    now: datetime,
) -> Verified:
    """Verify the one ds:Signature and check that it covers exactly ``expected_elements`` and every attachment.

    ``expected_elements`` maps a role (``eb:Messaging``, ``Body``) to the element we will go on to use.
    """
    signatures = security.findall("ds:Signature", _NS) if security is not None else []
    if not signatures:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE, "the message is not signed; the partner profile requires a signature"
        )
    if len(signatures) > 1:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE, f"{len(signatures)} ds:Signature elements; exactly one is allowed"
        )
    signature = signatures[0]
    signed_info = signature.find("ds:SignedInfo", _NS)
    if signed_info is None:
        raise EbmsError(EbmsCode.FAILED_AUTHENTICATION, "ds:Signature has no ds:SignedInfo")
    method = _signature_method(signed_info, policy)
    cert = resolve_certificate(signature.find("ds:KeyInfo", _NS), ids, policy.signing_certificates)
    check_certificate(cert, policy.signing_certificates, now, "signing")
    _check_signature_value(signature, signed_info, method, cert)
    references = tuple(
        _check_reference(ref, ids, attachments, policy) for ref in signed_info.findall("ds:Reference", _NS)
    )
    _check_coverage(references, ids, expected_elements, attachments)
    return Verified(references=references, certificate=cert)


def _signature_method(signed_info: etree._Element, policy: SecurityPolicy) -> SignatureMethod:
    c14n = signed_info.find("ds:CanonicalizationMethod", _NS)
    if c14n is None or c14n.get("Algorithm") != Transform.EXC_C14N:
        raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, "ds:CanonicalizationMethod must be exclusive C14N")
    method_el = signed_info.find("ds:SignatureMethod", _NS)
    uri = method_el.get("Algorithm") if method_el is not None else None
    allowed = {m.value for m in policy.signature_methods}
    if uri not in allowed:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"ds:SignatureMethod {uri!r} is not allowed by the partner profile (expected one of {sorted(allowed)})",
        )
    return SignatureMethod(uri)


def _prefixes(parent: etree._Element | None) -> list[str]:
    if parent is None:
        return []
    inclusive = parent.find("ec:InclusiveNamespaces", _NS)
    return (inclusive.get("PrefixList") or "").split() if inclusive is not None else []


def _check_signature_value(
    signature: etree._Element, signed_info: etree._Element, method: SignatureMethod, cert: x509.Certificate
) -> None:
    value = _unb64(
        signature.findtext("ds:SignatureValue", None, _NS), "ds:SignatureValue", EbmsCode.FAILED_AUTHENTICATION
    )
    octets = exc_c14n(signed_info, _prefixes(signed_info.find("ds:CanonicalizationMethod", _NS)))
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, "the signing certificate's key is not RSA")
    try:
        public_key.verify(value, octets, padding.PKCS1v15(), _SIGNATURE_HASHES[method]())
    except InvalidSignature:
        raise EbmsError(
            EbmsCode.FAILED_AUTHENTICATION,
            f"ds:SignatureValue does not verify with the key of {cert.subject.rfc4514_string()!r}",
        ) from None


def _check_reference(
    ref: etree._Element, ids: dict[str, etree._Element], attachments: dict[str, MimePart], policy: SecurityPolicy
) -> SignedReference:
    uri = ref.get("URI") or ""
    digest_el = ref.find("ds:DigestMethod", _NS)
    digest_uri = digest_el.get("Algorithm") if digest_el is not None else None
    if digest_uri not in {d.value for d in policy.digest_methods}:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE, f"ds:DigestMethod {digest_uri!r} of reference {uri!r} is not allowed"
        )
    transforms = [t.get("Algorithm") for t in ref.findall("ds:Transforms/ds:Transform", _NS)]
    octets = _referenced_octets(ref, uri, transforms, ids, attachments)
    expected = (ref.findtext("ds:DigestValue", "", _NS) or "").strip()
    actual = _digest(str(digest_uri), octets)
    if not hmac.compare_digest(actual, expected):
        raise EbmsError(
            EbmsCode.FAILED_AUTHENTICATION, f"digest of {uri!r} does not match: the part was changed after signing"
        )
    return SignedReference(uri=uri, digest_method=str(digest_uri), digest_value=expected, xml=etree.tostring(ref))


def _referenced_octets(
    ref: etree._Element,
    uri: str,
    transforms: list[str | None],
    ids: dict[str, etree._Element],
    attachments: dict[str, MimePart],
) -> bytes:
    if uri.startswith("cid:"):
        if transforms != [Transform.ATTACHMENT_CONTENT_SIGNATURE]:
            raise EbmsError(
                EbmsCode.POLICY_NONCOMPLIANCE,
                f"reference {uri!r} must use only the Attachment-Content-Signature-Transform",
            )
        part = attachments.get(uri[4:])
        if part is None:
            raise EbmsError(
                EbmsCode.MIME_INCONSISTENCY, f"signed reference {uri!r} names no MIME part of this message"
            )
        return attachment_octets(part)
    if not uri.startswith("#") or transforms != [Transform.EXC_C14N]:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE, f"reference {uri!r} must be a same-document #id with exclusive C14N"
        )
    target = ids.get(uri[1:])
    if target is None:
        raise EbmsError(EbmsCode.FAILED_AUTHENTICATION, f"signed reference {uri!r} resolves to no element")
    return exc_c14n(target, _prefixes(ref.find("ds:Transforms/ds:Transform", _NS)))


def _check_coverage(
    references: tuple[SignedReference, ...],
    ids: dict[str, etree._Element],
    expected_elements: dict[str, etree._Element],
    attachments: dict[str, MimePart],
) -> None:
    signed_elements = [ids[r.uri[1:]] for r in references if r.uri.startswith("#")]
    for role, element in expected_elements.items():
        if not any(el is element for el in signed_elements):
            raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, f"the signature does not cover {role}")
    stray = [el for el in signed_elements if not any(el is e for e in expected_elements.values())]
    if stray:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"the signature covers an unexpected element {etree.QName(stray[0]).text}",
        )
    signed_cids = {r.uri[4:] for r in references if r.uri.startswith("cid:")}
    unsigned = sorted(set(attachments) - signed_cids)
    if unsigned:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE, f"attachment <{unsigned[0]}> is not covered by the signature"
        )
