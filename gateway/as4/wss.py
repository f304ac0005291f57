"""WS-Security 1.1.1 for AS4: detached XML-DSig over eb:Messaging, the Body and every attachment, and
attachment encryption (SwA Attachment-Content-Only) with an RSA-OAEP EncryptedKey.

Canonicalization is lxml's (libxml2) exclusive C14N; digests are hashlib; signatures, key transport and
AES-GCM are ``cryptography``. libxmlsec has no Attachment-Content-Signature-Transform, so the reference
digests are ours to compute and to check, and we check every one of them on receipt.

Attachments are processed in chunks (``PartBody.chunks()``): digests are fed piece by piece and AES-GCM
decryption uses ``Cipher(AES, GCM(iv, tag))`` with the tag read from the end of the part, so a spooled
part is never loaded whole. Decrypted bytes are released to the caller only after the tag verified.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import hmac
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree

from gateway.as4 import _ns as ns
from gateway.as4 import agreement
from gateway.as4._ns import SoapVersion, q
from gateway.as4.algorithms import (
    DataEncryption,
    DigestMethod,
    KeyAgreement,
    KeyTransport,
    KeyWrap,
    MaskGeneration,
    SignatureMethod,
    Suite,
    Transform,
)
from gateway.as4.envelope import targets_us
from gateway.as4.errors import EbmsCode, EbmsError
from gateway.as4.mime import MimePart, PartBody, Spool, cid_of_url, cid_url
from gateway.as4.model import SignedReference
from gateway.as4.policy import SUITES, KeyPair, SecurityPolicy
from gateway.xmlsafe import XmlInputError, parse_xml

MIN_RSA_KEY_BITS = 2048
MAX_XML_ATTACHMENT_BYTES = 16 * 1024 * 1024
"""An uncompressed XML attachment is parsed to canonicalize it for its digest; larger ones must be compressed."""

_HASHLIB: dict[str, Callable[[], hashlib._Hash]] = {  # the constructors themselves: hashlib.new is slower
    DigestMethod.SHA256: hashlib.sha256,
    DigestMethod.SHA384: hashlib.sha384,
    DigestMethod.SHA512: hashlib.sha512,
    DigestMethod.SHA1: hashlib.sha1,
}
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
_RSA_METHODS = frozenset(
    {SignatureMethod.RSA_SHA256, SignatureMethod.RSA_SHA384, SignatureMethod.RSA_SHA512, SignatureMethod.RSA_SHA1}
)
_P256_SCALAR_BYTES = 32
_AES_KEY_BYTES = {DataEncryption.AES128_GCM: 16, DataEncryption.AES256_GCM: 32}
_ID_VALUES = etree.XPath("//@wsu:Id | //@Id | //@ID | //@id", namespaces={"wsu": ns.WSU}, smart_strings=True)
_NS = {"wsse": ns.WSSE, "wsu": ns.WSU, "ds": ns.DS, "xenc": ns.XENC, "xenc11": ns.XENC11, "ec": ns.EC}
_GCM_IV_BYTES = 12
_CACHED_DER_BYTES = 8 * 1024
_GCM_TAG_BYTES = 16
# Which attachments are XML, and which text, for the Attachment-Content-Signature-Transform: decided on the whole
# Content-Type as Apache WSS4J (phase4, Domibus) decides, so that both sides digest the same octets
_XML_CONTENT = re.compile(r"text/xml|application/xml|(?:application|image)/.*\+xml")
_LINE_END = re.compile(rb"\r\n|\r|\n")
_KEY_WRAPS = frozenset(KeyWrap)
_DS_TRANSFORMS, _DS_TRANSFORM = q(ns.DS, "Transforms"), q(ns.DS, "Transform")
_DS_DIGEST_METHOD, _DS_DIGEST_VALUE = q(ns.DS, "DigestMethod"), q(ns.DS, "DigestValue")


@functools.cache
def _steps(path: str) -> tuple[bool, tuple[str, ...]]:
    """A prefixed path ("ds:A/ds:B", ".//ds:C") as Clark tags; parsed once per path."""
    descendant = path.startswith(".//")
    names = path.removeprefix(".//").split("/")
    return descendant, tuple(q(_NS[name.split(":")[0]], name.split(":")[1]) for name in names)


def _findall(element: etree._Element, path: str) -> list[etree._Element]:
    """``element.findall(path, _NS)`` by C-level child iteration (lxml's ElementPath is pure Python)."""
    descendant, tags = _steps(path)
    current = list(element.iter(tags[0])) if descendant else list(element.iterchildren(tags[0]))
    for tag in tags[1:]:
        current = [child for parent in current for child in parent.iterchildren(tag)]
    return current


def _find(element: etree._Element, path: str) -> etree._Element | None:
    descendant, tags = _steps(path)
    if len(tags) == 1 and not descendant:
        return next(element.iterchildren(tags[0]), None)
    found = _findall(element, path)
    return found[0] if found else None


def _findtext(element: etree._Element, path: str, default: str | None = None) -> str | None:
    found = _find(element, path)
    return default if found is None else (found.text or "")


def new_ids(*prefixes: str) -> list[str]:
    """Fresh XML ids, one per prefix: 128 random bits each (as a UUID would carry), all from one os.urandom call."""
    hexes = os.urandom(16 * len(prefixes)).hex()
    return [f"{prefix}-{hexes[32 * i : 32 * i + 32]}" for i, prefix in enumerate(prefixes)]


def exc_c14n(element: etree._Element, prefixes: Sequence[str] = ()) -> bytes:
    try:
        return etree.tostring(
            element,
            method="c14n",
            exclusive=True,
            with_comments=False,
            inclusive_ns_prefixes=list(prefixes) or None,
        )
    except etree.C14NError as exc:
        raise _not_canonicalizable(f"<{etree.QName(element).localname}> {_id_of(element)}".strip(), exc) from None


def _id_of(element: etree._Element) -> str:
    value = element.get(q(ns.WSU, "Id")) or element.get("Id")
    return f"(id {value!r})" if value else ""


def _not_canonicalizable(what: str, exc: etree.C14NError) -> EbmsError:
    """libxml2's canonicalizer refuses some well-formed XML, above all a relative namespace URI (which C14N
    cannot order): the signature over such a part cannot be checked, so it fails as authentication."""
    reasons = "; ".join(entry.message for entry in exc.error_log) or str(exc)
    return EbmsError(
        EbmsCode.FAILED_AUTHENTICATION,
        f"{what} cannot be put in exclusive canonical XML ({reasons}), so its signature digest cannot be "
        'computed; the usual cause is a relative namespace URI such as xmlns="rel/x": use absolute URIs',
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str | None, what: str, code: EbmsCode) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except ValueError:
        raise EbmsError(code, f"{what} is not valid base64") from None


def digest_chunks(method: str, chunks: Iterable[bytes | memoryview]) -> str:
    """Base64 digest of the concatenated chunks (hashlib, fed piece by piece)."""
    digest = _HASHLIB[method]()
    for chunk in chunks:
        digest.update(chunk)
    return _b64(digest.digest())


def _is_xml(content_type: str) -> bool:
    return _XML_CONTENT.match(content_type.lower()) is not None


def digest_form(content_type: str) -> str:
    """How the Attachment-Content-Signature-Transform reads a part of ``content_type``: "xml" (exclusive
    C14N), "text" (CRLF line ends) or "octets" (as is); see ``attachment_octets``."""
    if _is_xml(content_type):
        return "xml"
    return "text" if content_type.split(";")[0].strip().lower().startswith("text/") else "octets"


def attachment_octets(part: MimePart) -> Iterator[bytes | memoryview]:
    """What the Attachment-Content-Signature-Transform yields (SwA profile 1.1 section 5.4.2), in chunks.

    XML content is canonicalized with exclusive C14N (no comments), other text gets CRLF line ends, and
    anything else (``application/gzip`` in eDelivery) is the content as is.
    """
    media = part.media_type
    form = digest_form(part.content_type)
    if form == "xml":
        if part.size > MAX_XML_ATTACHMENT_BYTES:
            raise EbmsError(
                EbmsCode.FEATURE_NOT_SUPPORTED_UNPACKAGING,
                f"uncompressed XML attachment <{part.content_id}> is {part.size} bytes; XML attachments over "
                f"{MAX_XML_ATTACHMENT_BYTES} bytes must be sent compressed",
            )
        try:
            root = parse_xml(part.data, max_bytes=MAX_XML_ATTACHMENT_BYTES, what=f"attachment <{part.content_id}>")
        except XmlInputError as exc:
            raise EbmsError(
                EbmsCode.FAILED_AUTHENTICATION,
                f"{exc}; its Content-Type {media} requires XML canonicalization for the signature digest",
            ) from None
        try:
            yield etree.tostring(root.getroottree(), method="c14n", exclusive=True, with_comments=False)
        except etree.C14NError as exc:
            raise _not_canonicalizable(f"attachment <{part.content_id}>", exc) from None
    elif form == "text":
        yield from _crlf(part.body.chunks())
    else:
        yield from part.body.chunks()


def _crlf(chunks: Iterable[bytes | memoryview]) -> Iterator[bytes]:
    """Every line end (CRLF, a lone LF or a lone CR) as CRLF, the SwA text canonicalization as WSS4J applies it;
    a trailing CR waits for the next chunk, which may begin with its LF."""
    carry = b""
    for chunk in chunks:
        data = carry + bytes(chunk)
        carry = b""
        if data.endswith(b"\r"):
            data, carry = data[:-1], b"\r"
        yield _LINE_END.sub(b"\r\n", data)
    if carry:
        yield b"\r\n"


def _el(
    parent: etree._Element, tag: str, attrs: dict[str, str] | None = None, text: str | None = None
) -> etree._Element:
    el = etree.SubElement(parent, tag, attrs or {})
    if text is not None:
        el.text = text
    return el


def security_header(header: etree._Element, soap_version: SoapVersion = SoapVersion.SOAP12) -> etree._Element:
    security = copy.copy(_security_template(soap_version))
    header.append(security)  # lxml drops the copy's declarations of namespaces the header already has
    return security


@functools.cache
def _security_template(soap_version: SoapVersion) -> etree._Element:
    soap_ns = soap_version.value
    return etree.Element(
        q(ns.WSSE, "Security"),
        {q(soap_ns, "mustUnderstand"): "true" if soap_version is SoapVersion.SOAP12 else "1"},
        nsmap={"env": soap_ns, "wsse": ns.WSSE, "wsu": ns.WSU, "ds": ns.DS, "xenc": ns.XENC},
    )


def _binary_security_token(cert: x509.Certificate, token_id: str) -> etree._Element:
    bst = copy.copy(_token_template(cert))
    bst.set(q(ns.WSU, "Id"), token_id)
    return bst


@functools.lru_cache(maxsize=64)
def _token_template(cert: x509.Certificate) -> etree._Element:
    """wsse:BinarySecurityToken carrying ``cert`` (X509v3, base64 DER), built once per certificate since it goes
    into every message we sign; its wsu:Id is left to fill in."""
    bst = etree.Element(
        q(ns.WSSE, "BinarySecurityToken"),
        {"EncodingType": ns.BASE64_ENCODING, "ValueType": ns.X509V3, q(ns.WSU, "Id"): ""},
        nsmap={"wsse": ns.WSSE, "wsu": ns.WSU},
    )
    bst.text = _b64(cert.public_bytes(serialization.Encoding.DER))
    return bst


def _token_reference(parent: etree._Element, token_id: str) -> None:
    str_el = _el(parent, q(ns.WSSE, "SecurityTokenReference"))
    _el(str_el, q(ns.WSSE, "Reference"), {"URI": f"#{token_id}", "ValueType": ns.X509V3})


# --- signing -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SignTarget:
    """A part to sign: an element carrying a wsu:Id (canonical bytes), or an attachment."""

    uri: str
    transform: Transform
    octets: bytes = field(default=b"", repr=False)
    part: MimePart | None = field(default=None, repr=False)

    def digest(self, method: str) -> str:
        if self.part is None:
            return digest_chunks(method, (self.octets,))
        try:
            return digest_chunks(method, attachment_octets(self.part))
        except EbmsError as exc:  # our own payload: the caller's mistake, not a partner's
            raise ValueError(f"payload <{self.part.content_id}> cannot be signed: {exc.detail}") from None


def element_target(element: etree._Element) -> SignTarget:
    element_id = element.get(q(ns.WSU, "Id"))
    if element_id is None:
        raise ValueError("an element to sign needs a wsu:Id")
    return SignTarget(uri=f"#{element_id}", octets=exc_c14n(element), transform=Transform.EXC_C14N)


def attachment_target(part: MimePart) -> SignTarget:
    return SignTarget(uri=cid_url(part.content_id), part=part, transform=Transform.ATTACHMENT_CONTENT_SIGNATURE)


def sign(
    security: etree._Element,
    targets: Sequence[SignTarget],
    key: KeyPair,
    *,
    method: SignatureMethod = SignatureMethod.RSA_SHA256,
    digest: DigestMethod = DigestMethod.SHA256,
) -> tuple[SignedReference, ...]:
    """Append a BinarySecurityToken and a detached ds:Signature over ``targets`` to the Security header."""
    token_id, signature_id, key_info_id = new_ids("X509", "SIG", "KI")
    security.append(_binary_security_token(key.certificate, token_id))
    transforms = tuple(target.transform for target in targets)
    signature = copy.copy(_signature_template(method, digest, transforms))  # lxml copies the whole subtree
    signature.set("Id", signature_id)
    signed_info, signature_value, key_info = signature
    references = []
    for target, ref in zip(targets, signed_info[2:], strict=True):
        ref.set("URI", target.uri)
        value = target.digest(digest)
        ref[2].text = value
        references.append(
            SignedReference(uri=target.uri, digest_method=digest, digest_value=value, xml=etree.tostring(ref))
        )
    security.append(signature)
    signature_value.text = _b64(_signature_value(key, method, exc_c14n(signed_info)))
    key_info.set("Id", key_info_id)
    key_info[0][0].set("URI", f"#{token_id}")
    return tuple(references)


# Shapes that every message repeats are built once and copied: one C call instead of a dozen SubElement
# calls. Their values are set on the copy; ``_token_reference`` and ``_el`` build the same shapes.


@functools.lru_cache(maxsize=64)
def _signature_template(
    method: SignatureMethod, digest: DigestMethod, transforms: tuple[Transform, ...]
) -> etree._Element:
    """ds:Signature: SignedInfo (CanonicalizationMethod, SignatureMethod, a Reference per transform),
    SignatureValue, KeyInfo with a SecurityTokenReference to an X509v3 token; Id, the reference URIs and
    the values are left to fill in."""
    signature = etree.Element(q(ns.DS, "Signature"), {"Id": ""}, nsmap={"ds": ns.DS, "wsse": ns.WSSE})
    signed_info = _el(signature, q(ns.DS, "SignedInfo"))
    _el(signed_info, q(ns.DS, "CanonicalizationMethod"), {"Algorithm": Transform.EXC_C14N})
    _el(signed_info, q(ns.DS, "SignatureMethod"), {"Algorithm": method})
    for transform in transforms:
        signed_info.append(_reference_template(transform, digest))
    _el(signature, q(ns.DS, "SignatureValue"))
    _token_reference(_el(signature, q(ns.DS, "KeyInfo"), {"Id": ""}), "")
    return signature


def _reference_template(transform: str, digest: str) -> etree._Element:
    """ds:Reference (Transforms, DigestMethod, DigestValue); URI and DigestValue are left to fill in."""
    ref = etree.Element(q(ns.DS, "Reference"), {"URI": ""}, nsmap={"ds": ns.DS})
    _el(_el(ref, q(ns.DS, "Transforms")), q(ns.DS, "Transform"), {"Algorithm": transform})
    _el(ref, q(ns.DS, "DigestMethod"), {"Algorithm": digest})
    _el(ref, q(ns.DS, "DigestValue"))
    return ref


def _signature_value(key: KeyPair, method: SignatureMethod, octets: bytes) -> bytes:
    """RSA PKCS#1 v1.5, Ed25519, or ECDSA P-256 as XML-DSig wants it: raw r || s, not DER."""
    private_key = key.private_key
    if method in _RSA_METHODS and isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(octets, padding.PKCS1v15(), _SIGNATURE_HASHES[method]())
    if method is SignatureMethod.ED25519 and isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign(octets)
    if (
        method is SignatureMethod.ECDSA_SHA256
        and isinstance(private_key, ec.EllipticCurvePrivateKey)
        and isinstance(private_key.curve, ec.SECP256R1)
    ):
        r, s = decode_dss_signature(private_key.sign(octets, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(_P256_SCALAR_BYTES, "big") + s.to_bytes(_P256_SCALAR_BYTES, "big")
    raise ValueError(f"our signing key ({type(private_key).__name__}) cannot sign with {method.value}")


# --- encryption ----------------------------------------------------------------------------------------


def encrypt_attachments(
    security: etree._Element,
    parts: Sequence[MimePart],
    recipient: x509.Certificate,
    *,
    suite: Suite = Suite.EDELIVERY_1_15,
    spool: Spool | None = None,
) -> list[MimePart]:
    """Encrypt each attachment (AES-128-GCM, one content key) and wrap the key for ``recipient``: RSA-OAEP
    (1.15), or kw-aes128 under a key agreed by X25519 or ECDH-ES with HKDF (2.0, see ``gateway.as4.agreement``).

    The recipient's BinarySecurityToken, the EncryptedKey and one EncryptedData per part go first into the
    Security header. Each encrypted part is IV, ciphertext and tag, kept as separate chunks; with ``spool``,
    a spooled part is encrypted chunk by chunk into a ``spool()`` file instead.
    """
    public_key = recipient.public_key()
    agreement_algorithm = next(iter(SUITES[suite].key_agreement), None)
    if agreement_algorithm is not None:
        agreed_with = agreement.check_recipient_key(public_key, agreement_algorithm)
    elif not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("eDelivery AS4 1.15 encryption needs an RSA certificate")
    content_key = AESGCM.generate_key(bit_length=128)
    token_id, key_id, *data_ids = new_ids("X509", "EK", *["ED"] * len(parts))
    security.insert(0, _binary_security_token(recipient, token_id))
    if agreement_algorithm is not None:
        encrypted_key = etree.Element(q(ns.XENC, "EncryptedKey"), {"Id": key_id}, nsmap={"xenc": ns.XENC})
        security.insert(1, encrypted_key)
        _el(encrypted_key, q(ns.XENC, "EncryptionMethod"), {"Algorithm": KeyWrap.KW_AES128})
        key_info = _el(encrypted_key, q(ns.DS, "KeyInfo"))
        recipient_info, kek = agreement.originate(key_info, agreement_algorithm, agreed_with)
        _token_reference(recipient_info, token_id)
        wrapped = agreement.wrap(kek, content_key)
        _el(_el(encrypted_key, q(ns.XENC, "CipherData")), q(ns.XENC, "CipherValue"))
        _el(encrypted_key, q(ns.XENC, "ReferenceList"))
    else:
        assert isinstance(public_key, rsa.RSAPublicKey)
        encrypted_key = copy.copy(_rsa_oaep_encrypted_key())
        encrypted_key.set("Id", key_id)
        encrypted_key[1][0][0].set("URI", f"#{token_id}")
        security.insert(1, encrypted_key)
        wrapped = public_key.encrypt(content_key, _oaep(MaskGeneration.MGF1_SHA256, DigestMethod.SHA256))
    cipher_data, reference_list = encrypted_key[-2:]
    cipher_data[0].text = _b64(wrapped)
    aes = AESGCM(content_key)
    encrypted_parts = []
    for index, (part, data_id) in enumerate(zip(parts, data_ids, strict=True)):
        _el(reference_list, q(ns.XENC, "DataReference"), {"URI": f"#{data_id}"})
        security.insert(2 + index, _encrypted_data(data_id, key_id, part))
        iv = os.urandom(_GCM_IV_BYTES)
        if part.body.spooled and spool is not None:
            body = encrypt_gcm_spooled(content_key, iv, part.body, spool)
        else:
            body = PartBody((iv, aes.encrypt(iv, part.body.read(), None)))
        encrypted_parts.append(
            MimePart(content_id=part.content_id, content_type="application/octet-stream", body=body)
        )
    return encrypted_parts


@functools.cache
def _rsa_oaep_encrypted_key() -> etree._Element:
    """xenc:EncryptedKey by RSA-OAEP (SHA-256, MGF1-SHA256): EncryptionMethod, KeyInfo, CipherData and an
    empty ReferenceList; the Id, the token reference's URI and the CipherValue are left to fill in."""
    encrypted_key = etree.Element(
        q(ns.XENC, "EncryptedKey"), {"Id": ""}, nsmap={"xenc": ns.XENC, "ds": ns.DS, "wsse": ns.WSSE}
    )
    method = _el(encrypted_key, q(ns.XENC, "EncryptionMethod"), {"Algorithm": KeyTransport.RSA_OAEP})
    _el(method, q(ns.DS, "DigestMethod"), {"Algorithm": DigestMethod.SHA256})
    etree.SubElement(
        method, q(ns.XENC11, "MGF"), {"Algorithm": MaskGeneration.MGF1_SHA256.value}, nsmap={"xenc11": ns.XENC11}
    )
    _token_reference(_el(encrypted_key, q(ns.DS, "KeyInfo")), "")
    _el(_el(encrypted_key, q(ns.XENC, "CipherData")), q(ns.XENC, "CipherValue"))
    _el(encrypted_key, q(ns.XENC, "ReferenceList"))
    return encrypted_key


def encrypt_gcm_spooled(key: bytes, iv: bytes, body: PartBody, spool: Spool) -> PartBody:
    """IV || AES-GCM ciphertext || tag written chunk by chunk to a ``spool()`` file (what ``decrypt_gcm`` reads)."""
    encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    out = spool()
    out.write(iv)
    for chunk in body.chunks():
        out.write(encryptor.update(chunk))
    out.write(encryptor.finalize())
    out.write(encryptor.tag)
    out.flush()
    return PartBody(file=out, size=out.tell())


def _encrypted_data(data_id: str, key_id: str, part: MimePart) -> etree._Element:
    data = copy.copy(_encrypted_data_template())
    data.set("Id", data_id)
    data.set("MimeType", part.content_type)
    data[1][0][0].set("URI", f"#{key_id}")
    data[2][0].set("URI", cid_url(part.content_id))
    return data


@functools.cache
def _encrypted_data_template() -> etree._Element:
    """xenc:EncryptedData of an attachment (AES-128-GCM, Attachment-Content-Only, its key named by an
    EncryptedKey reference, its cipher text in a MIME part); Id, MimeType and both URIs are left to fill in."""
    data = etree.Element(
        q(ns.XENC, "EncryptedData"),
        {"Id": "", "MimeType": "", "Type": ns.SWA_CONTENT_ONLY},
        nsmap={"xenc": ns.XENC, "ds": ns.DS, "wsse": ns.WSSE},
    )
    _el(data, q(ns.XENC, "EncryptionMethod"), {"Algorithm": DataEncryption.AES128_GCM})
    str_el = etree.SubElement(
        _el(data, q(ns.DS, "KeyInfo")),
        q(ns.WSSE, "SecurityTokenReference"),
        {q(ns.WSSE11, "TokenType"): ns.TOKEN_TYPE_ENCRYPTED_KEY},
        nsmap={"wsse11": ns.WSSE11},
    )
    _el(str_el, q(ns.WSSE, "Reference"), {"URI": ""})
    cipher_ref = _el(_el(data, q(ns.XENC, "CipherData")), q(ns.XENC, "CipherReference"), {"URI": ""})
    _el(
        _el(cipher_ref, q(ns.XENC, "Transforms")),
        q(ns.DS, "Transform"),
        {"Algorithm": ns.SWA_CIPHERTEXT_TRANSFORM},
    )
    return data


@functools.cache
def _oaep(mgf: str, digest: str) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(_MGF_HASHES[mgf]()), algorithm=_HASHES[digest](), label=None)


# --- receiving: security header, tokens, ids ------------------------------------------------------------


def find_security(
    header: etree._Element | None, soap_version: SoapVersion = SoapVersion.SOAP12
) -> etree._Element | None:
    """The one wsse:Security header addressed to us; two of them is an attack or an error (EBMS:0103)."""
    if header is None:
        return None
    ours = [el for el in _findall(header, "wsse:Security") if targets_us(el, soap_version)]
    if len(ours) > 1:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE, f"{len(ours)} wsse:Security headers are addressed to us; one is allowed"
        )
    return ours[0] if ours else None


def index_ids(root: etree._Element) -> dict[str, etree._Element]:
    """Every element id in the envelope; a repeated id is refused because it enables signature wrapping."""
    found: dict[str, etree._Element] = {}
    for attribute in _ID_VALUES(root):
        el, value = attribute.getparent(), str(attribute)
        if value in found and found[value] is not el:
            raise EbmsError(
                EbmsCode.POLICY_NONCOMPLIANCE,
                f"id {value!r} occurs on more than one element ({etree.QName(found[value]).localname} and "
                f"{etree.QName(el).localname}); duplicate ids are refused as signature wrapping",
            )
        found[value] = el
    return found


def _certificate_from_token(token: etree._Element) -> x509.Certificate:
    value_type = token.get("ValueType")
    text = token.text
    if value_type == ns.X509V3 and text is not None and len(text) <= _CACHED_DER_BYTES * 4 // 3 + 64:
        return _x509v3_token(text)
    return _token_certificate(value_type, text)


@functools.lru_cache(maxsize=128)
def _x509v3_token(text: str) -> x509.Certificate:
    """An ordinary-sized X509v3 token, decoded and parsed once: partners send the same few in every message.

    Only the parsed certificate is kept; whether it is trusted is decided for each message. A token that
    is not a certificate raises, and lru_cache keeps no exceptions.
    """
    return _token_certificate(ns.X509V3, text)


def _token_certificate(value_type: str | None, text: str | None) -> x509.Certificate:
    der = _unb64(text, "wsse:BinarySecurityToken", EbmsCode.FAILED_AUTHENTICATION)
    try:
        if value_type == ns.X509V3:
            return _load_der(der)
        if value_type == ns.X509_PKIPATH:
            return _pkipath_leaf(der)
    except ValueError as exc:
        raise EbmsError(
            EbmsCode.FAILED_AUTHENTICATION, f"wsse:BinarySecurityToken is not a certificate: {exc}"
        ) from None
    raise EbmsError(
        EbmsCode.POLICY_NONCOMPLIANCE, f"wsse:BinarySecurityToken ValueType {value_type!r} is not supported"
    )


def _load_der(der: bytes) -> x509.Certificate:
    """A certificate from DER; ordinary-sized ones are parsed once, since partners send the same few tokens
    in every message (the size bound keeps hostile giant tokens from being kept in the cache)."""
    if len(der) > _CACHED_DER_BYTES:
        return _readable(der)
    return _load_small_der(der)


@functools.lru_cache(maxsize=128)
def _load_small_der(der: bytes) -> x509.Certificate:
    return _readable(der)


_CERTIFICATE_FIELDS: tuple[tuple[str, Callable[[x509.Certificate], object]], ...] = (
    ("subject", lambda c: c.subject.rfc4514_string()),
    ("issuer", lambda c: c.issuer.rfc4514_string()),
    ("extensions", lambda c: c.extensions),
    ("validity", lambda c: (c.not_valid_before_utc, c.not_valid_after_utc)),
    ("public key", lambda c: c.public_key()),
)


def _readable(der: bytes) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(der)
    except x509.InvalidVersion as exc:
        raise ValueError(str(exc)) from None
    return readable_certificate(cert)


def readable_certificate(cert: x509.Certificate) -> x509.Certificate:
    """``cert``, once every field the trust checks and error details read has been parsed: cryptography
    parses names, extensions and the key lazily, so a malformed one would otherwise raise in the middle of a
    check instead of being refused where it is loaded. ValueError naming the field that cannot be read."""
    for name, read in _CERTIFICATE_FIELDS:
        try:
            read(cert)
        except (
            ValueError,
            TypeError,
            UnsupportedAlgorithm,
            x509.DuplicateExtension,
            x509.UnsupportedGeneralNameType,
        ) as exc:
            raise ValueError(f"its {name} cannot be read ({exc})") from None
    return cert


def _pkipath_leaf(der: bytes) -> x509.Certificate:
    """A PKIPath is a DER SEQUENCE OF Certificate, issuer first; the signer is the last one."""
    content_start, end = _der_header(der, 0)
    certs = []
    offset = content_start
    while offset < end:
        _, element_end = _der_header(der, offset)
        certs.append(_load_der(der[offset:element_end]))
        offset = element_end
    if not certs:
        raise ValueError("empty PKIPath")
    return certs[-1]


def _der_header(der: bytes, offset: int, tag: int = 0x30) -> tuple[int, int]:
    """(start of content, end of element) of the DER element at ``offset`` (a SEQUENCE unless ``tag`` says
    otherwise): just enough to split a PKIPath and to read a string value."""
    if offset + 2 > len(der) or der[offset] != tag:
        raise ValueError("expected a DER SEQUENCE" if tag == 0x30 else f"expected DER tag {tag:#04x}")
    length, header = der[offset + 1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise ValueError("unsupported DER length")
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


PINNED = "the certificates pinned in the partner profile"
_HELD = "the partner profile's certificates (pinned signing certificates and encryption certificate)"
_HELD_ANCHORED = (
    f"{_HELD}: a certificate trusted through the trust anchor alone is known only when the message carries it "
    "in a BinarySecurityToken, or when it is the profile's encryption_certificate"
)


def resolve_certificate(
    key_info: etree._Element | None,
    ids: dict[str, etree._Element],
    candidates: Iterable[x509.Certificate],
    among: str = PINNED,
) -> x509.Certificate:
    """The certificate a KeyInfo points at: a BinarySecurityToken, a SubjectKeyIdentifier or an IssuerSerial.

    For the last two the certificate must be one of ``candidates`` (described as ``among`` in the error):
    the reference only names it. The first of them it names.
    """
    return resolve_certificates(key_info, ids, candidates, among)[0]


def resolve_certificates(
    key_info: etree._Element | None,
    ids: dict[str, etree._Element],
    candidates: Iterable[x509.Certificate],
    among: str = PINNED,
) -> list[x509.Certificate]:
    """Every certificate a KeyInfo may mean, at least one: the one it carries or points at, or each of
    ``candidates`` a SubjectKeyIdentifier or IssuerSerial names (a renewed certificate may keep its key, and
    with it its SubjectKeyIdentifier)."""
    if key_info is None:
        raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, "ds:KeyInfo is missing")
    ref = _find(key_info, "wsse:SecurityTokenReference/wsse:Reference")
    if ref is not None:
        token = ids.get((ref.get("URI") or "").removeprefix("#"))
        if token is None or token.tag != q(ns.WSSE, "BinarySecurityToken"):
            raise EbmsError(
                EbmsCode.FAILED_AUTHENTICATION,
                f"token reference {ref.get('URI')!r} resolves to no BinarySecurityToken",
            )
        return [_certificate_from_token(token)]
    ski = _find(key_info, "wsse:SecurityTokenReference/wsse:KeyIdentifier")
    if ski is not None and ski.get("ValueType") == ns.X509_SKI:
        wanted = _unb64(ski.text, "wsse:KeyIdentifier", EbmsCode.FAILED_AUTHENTICATION)
        found = [c for c in candidates if hmac.compare_digest(_ski(c), wanted)]
        return _named(found, f"the SubjectKeyIdentifier {_b64(wanted)!r}", among)
    serial = _find(key_info, ".//ds:X509IssuerSerial")
    if serial is not None:
        text = (_findtext(serial, "ds:X509SerialNumber", "") or "").strip()
        if not text.isdigit():
            raise EbmsError(EbmsCode.FAILED_AUTHENTICATION, f"ds:X509SerialNumber {text[:60]!r} is not a number")
        number = int(text)
        issuer = (_findtext(serial, "ds:X509IssuerName", "") or "").strip()
        written = _issuer_name(issuer)
        found = [c for c in candidates if c.serial_number == number and same_name(c.issuer, written)]
        return _named(found, f"the IssuerSerial (serial {number}, issuer {issuer[:300]!r})", among)
    certificate = _find(key_info, ".//ds:X509Certificate")
    if certificate is not None:
        der = _unb64(certificate.text, "ds:X509Certificate", EbmsCode.FAILED_AUTHENTICATION)
        try:
            return [_load_der(der)]
        except ValueError as exc:
            raise EbmsError(
                EbmsCode.FAILED_AUTHENTICATION, f"ds:X509Certificate is not a certificate: {exc}"
            ) from None
    raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, "ds:KeyInfo uses no supported token reference")


def _named(found: list[x509.Certificate], reference: str, among: str) -> list[x509.Certificate]:
    if not found:
        raise EbmsError(EbmsCode.FAILED_AUTHENTICATION, f"{reference} in ds:KeyInfo matches none of {among}")
    return found


def trusted_signer(
    key_info: etree._Element | None, ids: dict[str, etree._Element], policy: SecurityPolicy, now: datetime
) -> x509.Certificate:
    """The certificate ``key_info`` names, trusted to sign for the partner (``trust_certificate``).

    A SubjectKeyIdentifier or IssuerSerial may name a pinned certificate or one of the policy's
    ``known_certificates``; either is then checked exactly as one sent in a BinarySecurityToken. When it
    names several, the first trusted one; when none is, the first one's refusal.
    """
    found = resolve_certificates(key_info, ids, policy.key_reference_candidates, _candidates_described(policy))
    refusals: list[EbmsError] = []
    for cert in found:
        try:
            trust_certificate(cert, policy, now)
        except EbmsError as exc:
            refusals.append(exc)
            continue
        return cert
    raise refusals[0]


def _candidates_described(policy: SecurityPolicy) -> str:
    if not policy.known_certificates:
        return PINNED
    return _HELD_ANCHORED if policy.trust_anchors else _HELD


# --- receiving: the issuer's name in an IssuerSerial --------------------------------------------------------

# Attribute type keywords, upper case, as RFC 4514 / RFC 4519 and Java's X500Principal (RFC 1779 and
# toString: EMAILADDRESS, SERIALNUMBER, T, S ...) write them. SN is the surname in RFC 4519 but
# serialNumber in BouncyCastle, so it may mean either.
_DN_KEYWORDS: dict[str, frozenset[str]] = {
    keyword: frozenset(oids.split())
    for keywords, oids in (
        ("CN", "2.5.4.3"),
        ("SURNAME", "2.5.4.4"),
        ("SN", "2.5.4.4 2.5.4.5"),
        ("SERIALNUMBER", "2.5.4.5"),
        ("C", "2.5.4.6"),
        ("L", "2.5.4.7"),
        ("ST S", "2.5.4.8"),
        ("STREET", "2.5.4.9"),
        ("O", "2.5.4.10"),
        ("OU", "2.5.4.11"),
        ("T TITLE", "2.5.4.12"),
        ("BUSINESSCATEGORY", "2.5.4.15"),
        ("POSTALCODE", "2.5.4.17"),
        ("NAME", "2.5.4.41"),
        ("GIVENNAME GN", "2.5.4.42"),
        ("INITIALS", "2.5.4.43"),
        ("GENERATION GENERATIONQUALIFIER", "2.5.4.44"),
        ("DNQUALIFIER DNQ", "2.5.4.46"),
        ("PSEUDONYM", "2.5.4.65"),
        ("ORGANIZATIONIDENTIFIER", "2.5.4.97"),
        ("DC", "0.9.2342.19200300.100.1.25"),
        ("UID", "0.9.2342.19200300.100.1.1"),
        ("EMAILADDRESS EMAIL E", "1.2.840.113549.1.9.1"),
    )
    for keyword in keywords.split()
}
_DN_TYPE = re.compile(r"\s*(?:(?:oid\.)?([0-9]+(?:\.[0-9]+)+)|([a-z][a-z0-9-]*))\s*=\s*", re.IGNORECASE)
_DN_HEX = re.compile(r"#((?:[0-9A-Fa-f]{2})+)")
_DN_HEX_PAIR = re.compile(r"[0-9A-Fa-f]{2}")
# DER string types by tag: UTF8String, NumericString, PrintableString, TeletexString (as Latin-1, as
# cryptography reads it), IA5String, VisibleString, UniversalString, BMPString
_DER_STRINGS = {
    0x0C: "utf-8",
    0x12: "ascii",
    0x13: "ascii",
    0x14: "latin-1",
    0x16: "ascii",
    0x1A: "ascii",
    0x1C: "utf-32-be",
    0x1E: "utf-16-be",
}
_DER_BIT_STRING = 0x03
MAX_ISSUER_NAME_CHARS = 8192

DnValue = str | bytes
"""A value as compared: a string after ``_dn_normal``, or the DER of a value that is not a string we read."""
WrittenName = tuple[tuple[tuple[frozenset[str], DnValue], ...], ...]
"""A name as written: its RDNs in the written order (most specific first), each a tuple of (OIDs, value)."""


class _DnSyntax(ValueError):
    def __init__(self, reason: str, position: int) -> None:
        super().__init__(f"{reason} at character {position + 1}")


def _issuer_name(text: str) -> WrittenName:
    if len(text) > MAX_ISSUER_NAME_CHARS:
        raise EbmsError(
            EbmsCode.FAILED_AUTHENTICATION,
            f"ds:X509IssuerName is {len(text)} characters long; a distinguished name has at most "
            f"{MAX_ISSUER_NAME_CHARS}",
        )
    try:
        return parse_name(text)
    except ValueError as exc:
        raise EbmsError(
            EbmsCode.FAILED_AUTHENTICATION,
            f"ds:X509IssuerName {text[:300]!r} is not a distinguished name as RFC 4514 (RFC 2253) writes it: {exc}",
        ) from None


@functools.lru_cache(maxsize=64)
def parse_name(text: str) -> WrittenName:
    """A distinguished name written as RFC 4514 / RFC 2253 (and RFC 1779) do, as Java's X500Principal writes
    it for WSS4J: ``,`` or ``;`` between RDNs, ``+`` within one, spaces around either, keywords in any case
    or ``OID.``-prefixed dotted OIDs, values escaped (``\\,`` ``\\2C``), quoted, or ``#`` and the hex of
    their DER. ValueError naming the character where it goes wrong."""
    rdns: list[tuple[tuple[frozenset[str], DnValue], ...]] = []
    attributes: list[tuple[frozenset[str], DnValue]] = []
    position = 0
    if not text.strip():
        return ()
    while True:
        oids, position = _dn_type(text, position)
        value, position = _dn_value(text, position)
        attributes.append((oids, value))
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text) or text[position] in ",;":
            rdns.append(tuple(attributes))
            attributes = []
        elif text[position] != "+":
            raise _DnSyntax(f"expected ',' or '+' after a value, found {text[position]!r}", position)
        if position == len(text):
            return tuple(rdns)
        position += 1


def _dn_type(text: str, position: int) -> tuple[frozenset[str], int]:
    match = _DN_TYPE.match(text, position)
    if match is None:
        raise _DnSyntax("expected an attribute type and '='", position)
    oid, keyword = match.groups()
    if oid is not None:
        return frozenset((oid,)), match.end()
    oids = _DN_KEYWORDS.get(keyword.upper())
    if oids is None:
        raise _DnSyntax(f"unknown attribute type {keyword!r} (write it as its OID)", position)
    return oids, match.end()


def _dn_value(text: str, position: int) -> tuple[DnValue, int]:
    if text.startswith("#", position):
        match = _DN_HEX.match(text, position)
        if match is None:
            raise _DnSyntax("'#' must be followed by the hex digits of a DER value", position)
        return _der_value(bytes.fromhex(match.group(1))), match.end()
    quoted = text.startswith('"', position)
    stops = '"' if quoted else ",;+"
    position += 1 if quoted else 0
    octets = bytearray()
    while position < len(text) and text[position] not in stops:
        char = text[position]
        if char == "\\":
            pair = _DN_HEX_PAIR.match(text, position + 1)
            if pair is not None:
                octets.append(int(pair.group(0), 16))
                position += 3
                continue
            if position + 1 == len(text):
                raise _DnSyntax("a '\\' ends the name", position)
            char = text[position + 1]
            position += 1
        octets += char.encode()
        position += 1
    if quoted:
        if position == len(text):
            raise _DnSyntax("a quoted value is not closed", position)
        position += 1
    try:
        return _dn_normal(octets.decode()), position
    except UnicodeDecodeError:
        raise _DnSyntax("its escaped octets are not UTF-8", position) from None


def _der_value(der: bytes) -> DnValue:
    """A ``#hex`` value: the string it encodes when it is one of ``_DER_STRINGS``, else its DER as it is."""
    codec = _DER_STRINGS.get(der[0])
    if codec is None:
        return der
    try:
        start, end = _der_header(der, 0, der[0])
        if end != len(der):
            return der
        return _dn_normal(der[start:end].decode(codec))
    except (ValueError, UnicodeDecodeError):
        return der


def _dn_normal(value: str) -> str:
    """Compared as RFC 4518 prepares strings, roughly: NFKC, case folded, inner whitespace as one space."""
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def same_name(name: x509.Name, written: WrittenName) -> bool:
    """Does ``written`` (``parse_name``) name ``name``? RDN by RDN (written in reverse order), each attribute
    by OID and value, the attributes of a multi-valued RDN in any order."""
    rdns = name.rdns
    if len(rdns) != len(written):
        return False
    return all(_same_rdn(rdn, attributes) for rdn, attributes in zip(rdns, reversed(written), strict=True))


def _same_rdn(rdn: x509.RelativeDistinguishedName, written: tuple[tuple[frozenset[str], DnValue], ...]) -> bool:
    left = list(rdn)
    if len(left) != len(written):
        return False
    for oids, value in written:
        match = next((a for a in left if a.oid.dotted_string in oids and _same_value(a, value)), None)
        if match is None:
            return False
        left.remove(match)
    return True


def _same_value(attribute: x509.NameAttribute[str | bytes], value: DnValue) -> bool:
    if isinstance(value, str):
        return isinstance(attribute.value, str) and _dn_normal(attribute.value) == value
    return value == _attribute_der(attribute)


def _attribute_der(attribute: x509.NameAttribute[str | bytes]) -> bytes | None:
    """The DER of a value that is no string (x500UniqueIdentifier, a BIT STRING), to compare with a ``#hex``
    value octet for octet; None for a string, which a ``#hex`` value is compared with once decoded."""
    if not isinstance(attribute.value, bytes):
        return None
    content = attribute.value  # the BIT STRING's content octets: the count of unused bits, then the bits
    size = len(content)
    count = (size.bit_length() + 7) // 8
    length = bytes([size]) if size < 0x80 else bytes([0x80 | count]) + size.to_bytes(count, "big")
    return bytes([_DER_BIT_STRING]) + length + content


@functools.lru_cache(maxsize=64)
def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, hex (cached: called for trusted signers, the same few every time)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def _describe(cert: x509.Certificate) -> str:
    """For error details: an untrusted certificate, so its fingerprint is not cached."""
    return f"{cert.subject.rfc4514_string()!r} (SHA-256 {cert.fingerprint(hashes.SHA256()).hex()[:16]}...)"


def _valid_at(cert: x509.Certificate, now: datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise EbmsError(
            EbmsCode.FAILED_AUTHENTICATION,
            f"{what} {cert.subject.rfc4514_string()!r} is valid from {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} "
            f"to {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}, not at {now:%Y-%m-%dT%H:%M:%SZ}",
        )


def check_not_revoked(
    cert: x509.Certificate, crls: Sequence[x509.CertificateRevocationList], now: datetime, what: str
) -> None:
    """EBMS:0101 when a revocation list of ``cert``'s issuer lists it, or is past its nextUpdate: a stale list
    cannot tell, so it fails closed."""
    for crl in crls:
        if crl.issuer != cert.issuer:
            continue
        next_update = crl.next_update_utc
        if next_update is not None and now > next_update:
            raise EbmsError(
                EbmsCode.FAILED_AUTHENTICATION,
                f"the revocation list of {crl.issuer.rfc4514_string()!r} was due for renewal at "
                f"{next_update:%Y-%m-%dT%H:%M:%SZ}, so it cannot tell whether {what} {_describe(cert)} is revoked; "
                "the administrator replaces it with the CA's current list (security.revocation_list)",
            )
        revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if revoked is not None:
            raise EbmsError(
                EbmsCode.FAILED_AUTHENTICATION,
                f"{what} {_describe(cert)} (serial {cert.serial_number:x}) was revoked by its CA at "
                f"{revoked.revocation_date_utc:%Y-%m-%dT%H:%M:%SZ}",
            )


def _issued_by_anchor(cert: x509.Certificate, policy: SecurityPolicy, now: datetime) -> x509.Certificate | None:
    for anchor in policy.trust_anchors:
        if cert.issuer != anchor.subject:
            continue
        try:
            cert.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            continue
        _valid_at(anchor, now, "trust anchor")
        return anchor
    return None


@functools.lru_cache(maxsize=128)
def _may_sign(cert: x509.Certificate) -> bool:
    """No KeyUsage extension, or one with digitalSignature: a fixed property of the certificate, read once."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature)
    except x509.ExtensionNotFound:
        return True


@functools.lru_cache(maxsize=128)
def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def trust_certificate(
    cert: x509.Certificate, policy: SecurityPolicy, now: datetime, role: str = "signing"
) -> None:
    """Is ``cert`` trusted to sign for this partner at ``now``? EBMS:0101 (or 0103 for a weak key) if not.

    Pinned certificates are trusted as they are. Any other certificate needs a trust anchor that issued it
    directly, must not be a CA itself (nor the anchor), and its subject must match the policy's pattern. Both
    need validity at ``now`` and, when the certificate has a KeyUsage extension, the digitalSignature bit.
    """
    if cert not in policy.signing_certificates:
        if not policy.trust_anchors:
            raise EbmsError(
                EbmsCode.FAILED_AUTHENTICATION,
                f"{role} certificate {_describe(cert)} is not among the certificates pinned in the partner profile",
            )
        if _issued_by_anchor(cert, policy, now) is None:
            raise EbmsError(
                EbmsCode.FAILED_AUTHENTICATION,
                f"{role} certificate {_describe(cert)} is neither pinned nor issued directly by one of the partner "
                f"profile's {len(policy.trust_anchors)} trust anchors (issuer {cert.issuer.rfc4514_string()!r})",
            )
        if _is_ca(cert) or cert in policy.trust_anchors:
            raise EbmsError(
                EbmsCode.FAILED_AUTHENTICATION,
                f"{role} certificate {_describe(cert)} is a CA certificate (basicConstraints CA:TRUE); under a trust "
                "anchor only end-entity certificates sign messages (pin it in the profile if it really does)",
            )
        subject = cert.subject.rfc4514_string()
        if not policy.subject_matches(subject):
            raise EbmsError(
                EbmsCode.FAILED_AUTHENTICATION,
                f"{role} certificate subject {subject!r} does not match the partner profile's subject pattern "
                f"{policy.subject_pattern!r}",
            )
    _valid_at(cert, now, f"{role} certificate")
    check_not_revoked(cert, policy.revocation_lists, now, f"{role} certificate")
    if not _may_sign(cert):
        raise EbmsError(
            EbmsCode.FAILED_AUTHENTICATION,
            f"{role} certificate {_describe(cert)} has a KeyUsage extension without digitalSignature",
        )
    public_key = cert.public_key()
    methods = policy.signature_methods
    if isinstance(public_key, ed25519.Ed25519PublicKey) and SignatureMethod.ED25519 in methods:
        return
    if (
        isinstance(public_key, ec.EllipticCurvePublicKey)
        and isinstance(public_key.curve, ec.SECP256R1)
        and SignatureMethod.ECDSA_SHA256 in methods
    ):
        return
    if not isinstance(public_key, rsa.RSAPublicKey) or not methods & _RSA_METHODS:
        wanted = [
            label
            for label, allowed in (
                ("RSA", methods & _RSA_METHODS),
                ("Ed25519", SignatureMethod.ED25519 in methods),
                ("EC P-256", SignatureMethod.ECDSA_SHA256 in methods),
            )
            if allowed
        ]
        suffix = (
            " (eDelivery AS4 1.15)" if wanted == ["RSA"] else f" (the partner profile allows {', '.join(wanted)})"
        )
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"{role} certificate {_describe(cert)} has no {' or '.join(wanted)} key{suffix}",
        )
    if public_key.key_size < MIN_RSA_KEY_BITS:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"{role} certificate {_describe(cert)} has an RSA-{public_key.key_size} key; at least "
            f"{MIN_RSA_KEY_BITS} bits are required",
        )


# --- receiving: decryption -----------------------------------------------------------------------------


def check_encryption(
    security: etree._Element | None, attachments: dict[str, MimePart], policy: SecurityPolicy
) -> None:
    """What can be refused about the encryption without a key, so before the sender is authenticated: its
    algorithms, the MIME parts it names, and no more EncryptedKeys than EncryptedData (each key costs a
    private-key operation)."""
    if security is None:
        return
    encrypted, keys = _findall(security, "xenc:EncryptedData"), _findall(security, "xenc:EncryptedKey")
    if len(keys) > max(len(encrypted), 1):
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"the Security header carries {len(keys)} xenc:EncryptedKey elements for {len(encrypted)} "
            "xenc:EncryptedData; send one key for all payloads (or one per payload)",
        )
    for encrypted_key in keys:
        key_method(encrypted_key, policy)
    for data in encrypted:
        data_target(data, attachments, policy)


def decrypt_attachments(
    security: etree._Element | None,
    attachments: dict[str, MimePart],
    keys: Sequence[KeyPair],
    policy: SecurityPolicy,
    ids: dict[str, etree._Element],
    *,
    spool: Spool | None = None,
) -> dict[str, MimePart]:
    """Decrypt every encrypted attachment; with ``require_encryption`` an unencrypted one is EBMS:0103.

    A spooled ciphertext is decrypted into a new ``spool()`` file; anything else stays in memory.
    """
    encrypted = _findall(security, "xenc:EncryptedData") if security is not None else []
    result = dict(attachments)
    covered: set[str] = set()
    content_keys = ContentKeys(security, keys, policy, ids)
    for data in encrypted:
        cid, part = _decrypt_one(data, attachments, content_keys, policy, spool)
        if cid in covered:
            raise EbmsError(
                EbmsCode.POLICY_NONCOMPLIANCE,
                f"attachment <{cid}> is the target of two xenc:EncryptedData elements",
            )
        covered.add(cid)
        result[cid] = part
    missing = sorted(set(attachments) - covered)
    if policy.require_encryption and missing:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"attachment <{missing[0]}> is not encrypted; the partner profile requires encryption of every payload",
        )
    return result


def content_keys(
    security: etree._Element | None,
    keys: Sequence[KeyPair],
    policy: SecurityPolicy,
    ids: dict[str, etree._Element],
) -> dict[str, bytes]:
    """Unwrap every EncryptedKey meant for one of our keys; map its Id and its DataReferences to the key."""
    found = ContentKeys(security, keys, policy, ids)
    return {name: found.get(name) for name in found.names()}


class ContentKeys:
    """The EncryptedKeys of a Security header by their Id and DataReferences, each unwrapped when an
    EncryptedData first needs it: a private-key operation per key actually used, however many are sent."""

    def __init__(
        self,
        security: etree._Element | None,
        keys: Sequence[KeyPair],
        policy: SecurityPolicy,
        ids: dict[str, etree._Element],
    ) -> None:
        self._keys, self._policy, self._ids = keys, policy, ids
        self._elements: dict[str, etree._Element] = {}
        self._unwrapped: dict[int, bytes] = {}
        for encrypted_key in _findall(security, "xenc:EncryptedKey") if security is not None else []:
            names = [str(encrypted_key.get("Id") or "")] + [
                (ref.get("URI") or "").removeprefix("#")
                for ref in _findall(encrypted_key, "xenc:ReferenceList/xenc:DataReference")
            ]
            for name in filter(None, names):
                self._elements.setdefault(name, encrypted_key)

    def names(self) -> list[str]:
        return list(self._elements)

    def get(self, name: str) -> bytes:
        encrypted_key = self._elements[name]
        found = self._unwrapped.get(id(encrypted_key))
        if found is None:
            found = self._unwrapped[id(encrypted_key)] = _unwrap(
                encrypted_key, self._keys, self._policy, self._ids
            )
        return found

    def for_data(self, *names: str) -> bytes | None:
        name = next((n for n in names if n in self._elements), None)
        return None if name is None else self.get(name)


def key_method(encrypted_key: etree._Element, policy: SecurityPolicy) -> tuple[str, str, str]:
    """(algorithm, OAEP digest, OAEP MGF) of an EncryptedKey, each allowed by the policy, or EBMS:0103."""
    key_id = encrypted_key.get("Id") or "(no Id)"
    method = _find(encrypted_key, "xenc:EncryptionMethod")
    algorithm = method.get("Algorithm") if method is not None else None
    if method is None or not (algorithm in policy.key_transport or algorithm in policy.key_wrap):
        allowed = {k.value for k in policy.key_transport} | {k.value for k in policy.key_wrap}
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"xenc:EncryptedKey {key_id} uses key transport {algorithm!r}, which the partner profile "
            f"({policy.suite.value}) does not allow (expected: {', '.join(sorted(allowed))})",
        )
    if algorithm in _KEY_WRAPS:
        _agreement(encrypted_key, f"xenc:EncryptedKey {key_id}", policy)
        return str(algorithm), "", ""
    digest = _find(method, "ds:DigestMethod")
    digest_uri = str(digest.get("Algorithm")) if digest is not None else DigestMethod.SHA1.value
    mgf_el = _find(method, "xenc11:MGF")
    mgf = str(mgf_el.get("Algorithm")) if mgf_el is not None else MaskGeneration.MGF1_SHA1.value
    if algorithm == KeyTransport.RSA_OAEP and mgf not in policy.mask_generation:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"xenc:EncryptedKey {key_id}: RSA-OAEP mask generation {mgf!r} is not allowed by the partner profile",
        )
    if algorithm == KeyTransport.RSA_OAEP_MGF1P and mgf != MaskGeneration.MGF1_SHA1:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"xenc:EncryptedKey {key_id}: rsa-oaep-mgf1p fixes MGF1 with SHA-1; it cannot name {mgf!r}",
        )
    if digest_uri not in policy.oaep_digests:
        digests = ", ".join(sorted(d.value for d in policy.oaep_digests))
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"xenc:EncryptedKey {key_id}: the RSA-OAEP digest {digest_uri!r} "
            f"{'(the default when ds:DigestMethod is left out) ' if digest is None else ''}is not allowed by the "
            f"partner profile (expected: {digests})",
        )
    if digest_uri not in _HASHES or mgf not in _MGF_HASHES:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"xenc:EncryptedKey {key_id}: unsupported OAEP parameters digest {digest_uri!r}, MGF {mgf!r}",
        )
    return str(algorithm), digest_uri, mgf


def _unwrap(
    encrypted_key: etree._Element, keys: Sequence[KeyPair], policy: SecurityPolicy, ids: dict[str, etree._Element]
) -> bytes:
    key_id = encrypted_key.get("Id") or "(no Id)"
    algorithm, digest_uri, mgf = key_method(encrypted_key, policy)
    if algorithm in _KEY_WRAPS:
        return _unwrap_agreed(encrypted_key, key_id, keys, policy, ids)
    private_key = _our_key(_find(encrypted_key, "ds:KeyInfo"), keys, ids)
    wrapped = _unb64(
        _findtext(encrypted_key, "xenc:CipherData/xenc:CipherValue", None),
        f"xenc:EncryptedKey {key_id} CipherValue",
        EbmsCode.FAILED_DECRYPTION,
    )
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise EbmsError(
            EbmsCode.FAILED_DECRYPTION,
            f"xenc:EncryptedKey {key_id} uses RSA key transport to a key of ours that is not RSA",
        )
    try:
        return private_key.decrypt(wrapped, _oaep(mgf, digest_uri))
    except ValueError:
        raise EbmsError(
            EbmsCode.FAILED_DECRYPTION, f"xenc:EncryptedKey {key_id} could not be unwrapped with our private key"
        ) from None


def _agreement(
    encrypted_key: etree._Element, what: str, policy: SecurityPolicy
) -> tuple[etree._Element, KeyAgreement]:
    method = agreement.agreement_method(_find(encrypted_key, "ds:KeyInfo"))
    uri = method.get("Algorithm") if method is not None else None
    if method is None or uri not in policy.key_agreement:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"{what} uses key agreement {uri!r}, which the partner profile ({policy.suite.value}) does not allow "
            f"(expected: {', '.join(sorted(k.value for k in policy.key_agreement))})",
        )
    return method, KeyAgreement(uri)


def _unwrap_agreed(
    encrypted_key: etree._Element,
    key_id: str,
    keys: Sequence[KeyPair],
    policy: SecurityPolicy,
    ids: dict[str, etree._Element],
) -> bytes:
    """kw-aes128 under a key agreed by X25519/ECDH-ES and HKDF (eDelivery AS4 2.0, experimental)."""
    what = f"xenc:EncryptedKey {key_id}"
    method, uri = _agreement(encrypted_key, what, policy)
    ours = _our_key(agreement.recipient_key_info(method, what), keys, ids)
    kek = agreement.derive_kek(method, uri, ours, what)
    wrapped = _unb64(
        _findtext(encrypted_key, "xenc:CipherData/xenc:CipherValue", None),
        f"{what} CipherValue",
        EbmsCode.FAILED_DECRYPTION,
    )
    return agreement.unwrap(kek, wrapped, what)


def _our_key(key_info: etree._Element | None, keys: Sequence[KeyPair], ids: dict[str, etree._Element]) -> object:
    """The private key of ours that ``key_info`` names: a KeyPair's key, or its separate agreement key."""
    candidates = [k.certificate for k in keys] + [k.agreement_certificate for k in keys if k.agreement_certificate]
    try:
        cert = resolve_certificate(key_info, ids, candidates, "our certificates")
    except EbmsError as exc:
        raise EbmsError(
            EbmsCode.FAILED_DECRYPTION, f"the EncryptedKey names no key of ours: {exc.detail}"
        ) from None
    for key in keys:
        if key.certificate == cert:
            return key.private_key
        if key.agreement_certificate is not None and key.agreement_certificate == cert:
            return key.agreement_key
    # An old and a renewed certificate may share the subject: only the fingerprints tell them apart.
    ours = ", ".join(f"{fingerprint(c)[:16]}..." for c in candidates)
    raise EbmsError(
        EbmsCode.FAILED_DECRYPTION,
        f"the payload is encrypted for {_describe(cert)}, which is not one of our current keys (the certificates "
        f"we decrypt with have SHA-256 {ours}); the sender must encrypt for our current certificate, as pinned "
        "in its profile of us",
    )


def data_target(
    data: etree._Element, attachments: dict[str, MimePart], policy: SecurityPolicy
) -> tuple[str, DataEncryption]:
    """(Content-ID, algorithm) of an EncryptedData: an allowed algorithm, Attachment-Content-Only, and a
    CipherReference to a MIME part of this message; EBMS:0103 or 0007 otherwise. No key is needed to tell."""
    data_id = data.get("Id") or ""
    algorithm = _find(data, "xenc:EncryptionMethod")
    uri = algorithm.get("Algorithm") if algorithm is not None else None
    if uri not in policy.data_encryption:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"xenc:EncryptedData {data_id!r} uses {uri!r}, which the partner profile does not allow",
        )
    if data.get("Type") != ns.SWA_CONTENT_ONLY:
        raise EbmsError(
            EbmsCode.FEATURE_NOT_SUPPORTED_UNPACKAGING,
            f"xenc:EncryptedData {data_id!r} Type {data.get('Type')!r} is not supported (expected "
            "Attachment-Content-Only)",
        )
    ref = _find(data, "xenc:CipherData/xenc:CipherReference")
    url = (ref.get("URI") or "") if ref is not None else ""
    cid = cid_of_url(url)
    if cid is None or cid not in attachments:
        raise EbmsError(
            EbmsCode.MIME_INCONSISTENCY,
            f"xenc:EncryptedData {data_id!r} refers to {url!r}, which is not a MIME part of this message",
        )
    transforms = (
        [t.get("Algorithm") for t in _findall(ref, "xenc:Transforms/ds:Transform")] if ref is not None else []
    )
    if transforms != [ns.SWA_CIPHERTEXT_TRANSFORM]:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"xenc:CipherReference {url!r} must use exactly the Attachment-Ciphertext-Transform, not {transforms}",
        )
    return cid, DataEncryption(uri)


def _decrypt_one(
    data: etree._Element,
    attachments: dict[str, MimePart],
    content_keys: ContentKeys,
    policy: SecurityPolicy,
    spool: Spool | None,
) -> tuple[str, MimePart]:
    data_id = data.get("Id") or ""
    cid, uri = data_target(data, attachments, policy)
    key = content_keys.for_data(data_id, _key_reference(data))
    if key is None:
        raise EbmsError(EbmsCode.FAILED_DECRYPTION, f"no xenc:EncryptedKey covers xenc:EncryptedData {data_id!r}")
    expected_length = _AES_KEY_BYTES[DataEncryption(uri)]
    if len(key) != expected_length:
        raise EbmsError(
            EbmsCode.FAILED_DECRYPTION,
            f"the content key for xenc:EncryptedData {data_id!r} is {len(key)} bytes; {uri} needs {expected_length}",
        )
    body = decrypt_gcm(key, attachments[cid].body, f"attachment <{cid}>", spool=spool)
    # no signature covers @MimeType: it only picks the digest's canonicalization (SwA 1.1 section 5.4.2), as
    # the sender's did; the payload's type comes from the signed eb:PartInfo (msh._payload)
    mime_type = data.get("MimeType") or "application/octet-stream"
    return cid, MimePart(content_id=cid, content_type=mime_type, body=body)


def decrypt_gcm(key: bytes, body: PartBody, what: str, *, spool: Spool | None = None) -> PartBody:
    """AES-GCM over IV || ciphertext || tag, chunk by chunk; EBMS:0102 unless the tag verifies."""
    if body.size < _GCM_IV_BYTES + _GCM_TAG_BYTES:
        raise EbmsError(EbmsCode.FAILED_DECRYPTION, f"{what} is {body.size} bytes, too short for AES-GCM")
    if not body.spooled:
        # one chunk in memory: no copy, and the one-shot AEAD is the cheapest call
        whole = memoryview(body.buffer())
        try:
            return PartBody.of(AESGCM(key).decrypt(bytes(whole[:_GCM_IV_BYTES]), whole[_GCM_IV_BYTES:], None))
        except InvalidTag:
            raise EbmsError(EbmsCode.FAILED_DECRYPTION, f"{what} failed AES-GCM authentication") from None
    iv = body.read(0, _GCM_IV_BYTES)
    tag = body.read(body.size - _GCM_TAG_BYTES)
    decryptor = Cipher(algorithms.AES(key), modes.GCM(iv, tag)).decryptor()
    chunks = body.chunks(_GCM_IV_BYTES, body.size - _GCM_TAG_BYTES)
    try:
        if body.spooled and spool is not None:
            out = spool()
            size = 0
            for chunk in chunks:
                plain = decryptor.update(chunk)
                size += len(plain)
                out.write(plain)
            out.write(decryptor.finalize())
            out.flush()
            return PartBody(file=out, size=size)
        pieces = [decryptor.update(chunk) for chunk in chunks]
        pieces.append(decryptor.finalize())
    except InvalidTag:
        raise EbmsError(EbmsCode.FAILED_DECRYPTION, f"{what} failed AES-GCM authentication") from None
    return PartBody(pieces)


def _key_reference(data: etree._Element) -> str:
    ref = _find(data, "ds:KeyInfo/wsse:SecurityTokenReference/wsse:Reference")
    return (ref.get("URI") or "").removeprefix("#") if ref is not None else ""


# --- receiving: signature ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Verified:
    references: tuple[SignedReference, ...]
    certificate: x509.Certificate


def the_signature(security: etree._Element | None) -> tuple[etree._Element, etree._Element]:
    """(ds:Signature, ds:SignedInfo) of the Security header: exactly one signature, or EBMS:0103."""
    signatures = _findall(security, "ds:Signature") if security is not None else []
    if not signatures:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE, "the message is not signed; the partner profile requires a signature"
        )
    if len(signatures) > 1:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE, f"{len(signatures)} ds:Signature elements; exactly one is allowed"
        )
    signed_info = _find(signatures[0], "ds:SignedInfo")
    if signed_info is None:
        raise EbmsError(EbmsCode.FAILED_AUTHENTICATION, "ds:Signature has no ds:SignedInfo")
    return signatures[0], signed_info


def verify(
    security: etree._Element | None,
    ids: dict[str, etree._Element],
    expected_elements: dict[str, etree._Element],
    attachments: dict[str, MimePart],
    policy: SecurityPolicy,
    now: datetime,
) -> Verified:
    """Verify the one ds:Signature and check that it covers exactly ``expected_elements`` and every attachment.

    ``expected_elements`` maps a role (``eb:Messaging``, ``the SOAP Body``) to the element we will go on to
    use; a reference to anything else, or two references to one thing, is refused.
    """
    return check_references(authenticate(security, ids, policy, now), ids, expected_elements, attachments, policy)


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticated:
    """A SignedInfo whose signature verified with a trusted certificate; its references are not checked yet."""

    signed_info: etree._Element
    certificate: x509.Certificate


def authenticate(
    security: etree._Element | None, ids: dict[str, etree._Element], policy: SecurityPolicy, now: datetime
) -> Authenticated:
    """The first half of ``verify``, cheap and before any decryption: the one ds:Signature, its algorithms,
    its certificate trusted for the partner, its SignatureValue over SignedInfo. Someone who cannot sign as
    the partner is refused here, before one private-key operation is spent on what they sent."""
    signature, signed_info = the_signature(security)
    method = signature_method(signed_info, policy)
    cert = trusted_signer(_find(signature, "ds:KeyInfo"), ids, policy, now)
    check_signature_value(signature, signed_info, method, cert)
    return Authenticated(signed_info=signed_info, certificate=cert)


def check_references(
    signed: Authenticated,
    ids: dict[str, etree._Element],
    expected_elements: dict[str, etree._Element],
    attachments: dict[str, MimePart],
    policy: SecurityPolicy,
) -> Verified:
    """The second half of ``verify``: every ds:Reference's digest, and that they cover exactly
    ``expected_elements`` and every attachment (decrypted by then)."""
    signed_info, cert = signed.signed_info, signed.certificate
    refs = _findall(signed_info, "ds:Reference")
    uris = [r.get("URI") or "" for r in refs]
    repeated = sorted({u for u in uris if uris.count(u) > 1})
    if repeated:
        raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, f"ds:Reference {repeated[0]!r} appears more than once")
    references = tuple(check_reference(ref, ids, attachments, policy) for ref in refs)
    _check_coverage(references, ids, expected_elements, attachments)
    return Verified(references=references, certificate=cert)


def signature_method(signed_info: etree._Element, policy: SecurityPolicy) -> SignatureMethod:
    c14n = _find(signed_info, "ds:CanonicalizationMethod")
    if c14n is None or c14n.get("Algorithm") != Transform.EXC_C14N:
        uri = c14n.get("Algorithm") if c14n is not None else None
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"ds:CanonicalizationMethod {uri!r} is not allowed; it must be exclusive C14N ({Transform.EXC_C14N})",
        )
    method_el = _find(signed_info, "ds:SignatureMethod")
    uri = method_el.get("Algorithm") if method_el is not None else None
    if uri not in policy.signature_methods:
        allowed = {m.value for m in policy.signature_methods}
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"ds:SignatureMethod {uri!r} is not allowed by the partner profile ({policy.suite.value}; expected: "
            f"{', '.join(sorted(allowed))})",
        )
    return SignatureMethod(uri)


def _prefixes(parent: etree._Element | None) -> list[str]:
    if parent is None:
        return []
    inclusive = _find(parent, "ec:InclusiveNamespaces")
    return (inclusive.get("PrefixList") or "").split() if inclusive is not None else []


def check_signature_value(
    signature: etree._Element, signed_info: etree._Element, method: SignatureMethod, cert: x509.Certificate
) -> None:
    value = _unb64(
        _findtext(signature, "ds:SignatureValue", None), "ds:SignatureValue", EbmsCode.FAILED_AUTHENTICATION
    )
    octets = exc_c14n(signed_info, _prefixes(_find(signed_info, "ds:CanonicalizationMethod")))
    public_key = cert.public_key()
    try:
        if method in _RSA_METHODS:
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, "the signing certificate's key is not RSA")
            public_key.verify(value, octets, padding.PKCS1v15(), _SIGNATURE_HASHES[method]())
        elif method is SignatureMethod.ED25519:
            if not isinstance(public_key, ed25519.Ed25519PublicKey):
                raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, "the signing certificate's key is not Ed25519")
            public_key.verify(value, octets)
        else:
            if not (
                isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP256R1)
            ):
                raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, "the signing certificate's key is not EC P-256")
            if len(value) != 2 * _P256_SCALAR_BYTES:
                raise InvalidSignature
            r = int.from_bytes(value[:_P256_SCALAR_BYTES], "big")
            s = int.from_bytes(value[_P256_SCALAR_BYTES:], "big")
            public_key.verify(encode_dss_signature(r, s), octets, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise EbmsError(
            EbmsCode.FAILED_AUTHENTICATION,
            f"ds:SignatureValue does not verify with the key of {cert.subject.rfc4514_string()!r}",
        ) from None


def check_reference(
    ref: etree._Element, ids: dict[str, etree._Element], attachments: dict[str, MimePart], policy: SecurityPolicy
) -> SignedReference:
    """Recompute one ds:Reference's digest; EBMS:0101 naming the reference if it differs."""
    uri = ref.get("URI") or ""
    transform_els: list[etree._Element] = []
    digest_el = value_el = None
    for child in ref.iterchildren(_DS_TRANSFORMS, _DS_DIGEST_METHOD, _DS_DIGEST_VALUE):
        tag = child.tag  # lxml builds the string on every read
        if tag == _DS_TRANSFORMS:
            transform_els += child.iterchildren(_DS_TRANSFORM)
        elif tag == _DS_DIGEST_METHOD:
            digest_el = child if digest_el is None else digest_el
        elif value_el is None:
            value_el = child
    digest_uri = digest_el.get("Algorithm") if digest_el is not None else None
    if digest_uri not in policy.digest_methods:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"ds:DigestMethod {digest_uri!r} of reference {uri!r} is not allowed by the partner profile",
        )
    transforms = [t.get("Algorithm") for t in transform_els]
    first_transform = transform_els[0] if transform_els else None
    actual = digest_chunks(str(digest_uri), _referenced_octets(first_transform, uri, transforms, ids, attachments))
    expected = ((value_el.text or "") if value_el is not None else "").strip()
    if not hmac.compare_digest(actual, expected):
        raise EbmsError(
            EbmsCode.FAILED_AUTHENTICATION,
            f"the digest of signed reference {uri!r} does not match: the part was changed after signing",
        )
    return SignedReference(uri=uri, digest_method=str(digest_uri), digest_value=expected, xml=etree.tostring(ref))


def _referenced_octets(
    first_transform: etree._Element | None,
    uri: str,
    transforms: list[str | None],
    ids: dict[str, etree._Element],
    attachments: dict[str, MimePart],
) -> Iterator[bytes | memoryview]:
    cid = cid_of_url(uri)
    if cid is not None:
        if transforms != [Transform.ATTACHMENT_CONTENT_SIGNATURE]:
            raise EbmsError(
                EbmsCode.POLICY_NONCOMPLIANCE,
                f"reference {uri!r} must use exactly the Attachment-Content-Signature-Transform, not {transforms}",
            )
        part = attachments.get(cid)
        if part is None:
            raise EbmsError(
                EbmsCode.MIME_INCONSISTENCY, f"signed reference {uri!r} names no MIME part of this message"
            )
        return attachment_octets(part)
    if not uri.startswith("#") or transforms != [Transform.EXC_C14N]:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"reference {uri!r} must be a same-document #id with exactly the exclusive C14N transform "
            f"(found transforms {transforms})",
        )
    target = ids.get(uri[1:])
    if target is None:
        raise EbmsError(EbmsCode.FAILED_AUTHENTICATION, f"signed reference {uri!r} resolves to no element")
    return iter((exc_c14n(target, _prefixes(first_transform)),))


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
            f"the signature covers {etree.QName(stray[0]).text}, which is not part of what this message delivers "
            "(signature wrapping?)",
        )
    signed_cids = {cid_of_url(r.uri) for r in references} - {None}
    unsigned = sorted(set(attachments) - signed_cids)
    if unsigned:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE, f"attachment <{unsigned[0]}> is not covered by the signature"
        )
