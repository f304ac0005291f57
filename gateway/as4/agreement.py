"""eDelivery AS4 2.0 key agreement for the EncryptedKey: X25519 or ECDH-ES (P-256), HKDF, AES-128 key wrap.

EXPERIMENTAL: written from RFC 9231, XML Encryption 1.1 and the eDelivery AS4 2.0 algorithm table, and so far
exchanged only with ourselves. Where the specifications leave a choice we follow what phase4 does, i.e.
Apache WSS4J 3 / Santuario 3 (read: ``ws-security-dom .../WSSecEncryptedKey.java``,
``santuario .../encryption/keys/content/AgreementMethodImpl.java`` and ``.../derivedKey/HKDFParamsImpl.java``,
``phase4-lib .../crypto/ECryptoKeyDerivationMethod.java``). Until an exchange with phase4 or Domibus has
confirmed them, treat the choices marked (*) as unverified.

Layout of ``xenc:EncryptedKey`` (its EncryptionMethod is kw-aes128, its CipherValue the wrapped content key)::

    <ds:KeyInfo>
      <xenc:AgreementMethod Algorithm="...xmldsig-more#x25519 | ...xmlenc11#ECDH-ES">
        <xenc11:KeyDerivationMethod Algorithm="http://www.w3.org/2021/04/xmldsig-more#hkdf">
          <dsig-more:HKDFParams>
            <dsig-more:PRF Algorithm="http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"/>
            <dsig-more:Salt>base64, 16 random bytes</dsig-more:Salt>
            <dsig-more:KeyLength>16</dsig-more:KeyLength>
          </dsig-more:HKDFParams>
        </xenc11:KeyDerivationMethod>
        <xenc:OriginatorKeyInfo>  the sender's ephemeral public key  </xenc:OriginatorKeyInfo>
        <xenc:RecipientKeyInfo>
          <wsse:SecurityTokenReference><wsse:Reference URI="#X509-..."/></wsse:SecurityTokenReference>
        </xenc:RecipientKeyInfo>
      </xenc:AgreementMethod>
    </ds:KeyInfo>

Choices:

* Element order KeyDerivationMethod, OriginatorKeyInfo, RecipientKeyInfo, as Santuario writes them; the
  recipient is named by a reference to a BinarySecurityToken holding its X25519/EC certificate (WSS4J with
  phase4's default key identifier, BST direct reference).
* HKDF salt: fresh random bytes as long as the derived key (WSS4J's default), base64 in ``Salt``. No
  ``Info`` is sent (WSS4J default); a received ``Info`` is read as base64, as Santuario reads it (*: RFC 9231
  types it hexBinary). ``KeyLength`` is written in bytes (16) as Santuario does; 16 or 128 (bits) is accepted
  on receipt (*), anything else is refused. A ``PRF`` left out is HMAC-SHA256, Santuario's default; we always
  write it.
* The ephemeral key (*): P-256 as ``ds:KeyValue/dsig11:ECKeyValue`` (NamedCurve ``urn:oid:1.2.840.10045.3.1.7``,
  uncompressed point); X25519 as ``dsig11:DEREncodedKeyValue`` (SubjectPublicKeyInfo DER). On receipt either
  form is accepted for either key type, directly in OriginatorKeyInfo or inside ``ds:KeyValue``.
"""

from __future__ import annotations

import base64
import os
import re

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from lxml import etree

from gateway.as4 import _ns as ns
from gateway.as4._ns import q
from gateway.as4.algorithms import KeyAgreement, KeyDerivation, Prf
from gateway.as4.errors import EbmsCode, EbmsError

KEK_BYTES = 16
"""kw-aes128: the derived key-encryption key is 128 bits."""
SALT_BYTES = KEK_BYTES
P256_URN = "urn:oid:1.2.840.10045.3.1.7"
_NS = {"xenc": ns.XENC, "xenc11": ns.XENC11, "ds": ns.DS, "dsig11": ns.DSIG11, "dm": ns.DSIG_MORE}

RecipientKey = x25519.X25519PublicKey | ec.EllipticCurvePublicKey
OurKey = x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey


def check_recipient_key(public_key: object, algorithm: KeyAgreement) -> RecipientKey:
    """The recipient's public key if ``algorithm`` can agree a key with it; ``ValueError`` (our mistake) if not."""
    if algorithm is KeyAgreement.X25519 and isinstance(public_key, x25519.X25519PublicKey):
        return public_key
    if (
        algorithm is KeyAgreement.ECDH_ES
        and isinstance(public_key, ec.EllipticCurvePublicKey)
        and isinstance(public_key.curve, ec.SECP256R1)
    ):
        return public_key
    needs = "an X25519 key" if algorithm is KeyAgreement.X25519 else "an EC P-256 key"
    raise ValueError(f"key agreement {algorithm.value} needs a recipient certificate with {needs}")


def originate(
    key_info: etree._Element, algorithm: KeyAgreement, recipient: RecipientKey
) -> tuple[etree._Element, bytes]:
    """Append an ``xenc:AgreementMethod`` with a fresh ephemeral key to ``key_info``.

    Returns its (empty) ``xenc:RecipientKeyInfo``, for the caller to name the recipient's token, and the
    key-encryption key.
    """
    salt = os.urandom(SALT_BYTES)
    method = etree.SubElement(key_info, q(ns.XENC, "AgreementMethod"), {"Algorithm": algorithm.value})
    derivation = etree.SubElement(
        method,
        q(ns.XENC11, "KeyDerivationMethod"),
        {"Algorithm": KeyDerivation.HKDF.value},
        nsmap={"xenc11": ns.XENC11},
    )
    params = etree.SubElement(derivation, q(ns.DSIG_MORE, "HKDFParams"), nsmap={"dsig-more": ns.DSIG_MORE})
    etree.SubElement(params, q(ns.DSIG_MORE, "PRF"), {"Algorithm": Prf.HMAC_SHA256.value})
    etree.SubElement(params, q(ns.DSIG_MORE, "Salt")).text = base64.b64encode(salt).decode()
    etree.SubElement(params, q(ns.DSIG_MORE, "KeyLength")).text = str(KEK_BYTES)
    originator = etree.SubElement(method, q(ns.XENC, "OriginatorKeyInfo"))
    if isinstance(recipient, x25519.X25519PublicKey):
        ephemeral_x = x25519.X25519PrivateKey.generate()
        shared = ephemeral_x.exchange(recipient)
        der = ephemeral_x.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        etree.SubElement(
            originator, q(ns.DSIG11, "DEREncodedKeyValue"), nsmap={"dsig11": ns.DSIG11}
        ).text = base64.b64encode(der).decode()
    else:
        ephemeral_ec = ec.generate_private_key(ec.SECP256R1())
        shared = ephemeral_ec.exchange(ec.ECDH(), recipient)
        point = ephemeral_ec.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        value = etree.SubElement(originator, q(ns.DS, "KeyValue"))
        ec_value = etree.SubElement(value, q(ns.DSIG11, "ECKeyValue"), nsmap={"dsig11": ns.DSIG11})
        etree.SubElement(ec_value, q(ns.DSIG11, "NamedCurve"), {"URI": P256_URN})
        etree.SubElement(ec_value, q(ns.DSIG11, "PublicKey")).text = base64.b64encode(point).decode()
    recipient_info = etree.SubElement(method, q(ns.XENC, "RecipientKeyInfo"))
    return recipient_info, _hkdf(shared, salt, b"")


def wrap(kek: bytes, content_key: bytes) -> bytes:
    return aes_key_wrap(kek, content_key)


def unwrap(kek: bytes, wrapped: bytes, what: str) -> bytes:
    try:
        return aes_key_unwrap(kek, wrapped)
    except (InvalidUnwrap, ValueError):
        raise EbmsError(
            EbmsCode.FAILED_DECRYPTION,
            f"{what} could not be unwrapped with the key agreed with our key (wrong recipient key, or altered)",
        ) from None


# --- receiving -----------------------------------------------------------------------------------------


def agreement_method(key_info: etree._Element | None) -> etree._Element | None:
    return key_info.find("xenc:AgreementMethod", _NS) if key_info is not None else None


def recipient_key_info(method: etree._Element, what: str) -> etree._Element:
    found = method.find("xenc:RecipientKeyInfo", _NS)
    if found is None:
        raise EbmsError(EbmsCode.FAILED_DECRYPTION, f"{what}: xenc:AgreementMethod has no xenc:RecipientKeyInfo")
    return found


def derive_kek(method: etree._Element, algorithm: KeyAgreement, ours: object, what: str) -> bytes:
    """The key-encryption key: our private key with the originator's public key, then HKDF as declared.

    An unsupported derivation (not HKDF with HMAC-SHA256 and a 128-bit key) is EBMS:0103; a malformed or
    mismatched key is EBMS:0102.
    """
    salt, info = _hkdf_params(method, what)
    originator = _originator_key(method, what)
    try:
        if algorithm is KeyAgreement.X25519:
            if not isinstance(ours, x25519.X25519PrivateKey) or not isinstance(originator, x25519.X25519PublicKey):
                raise TypeError
            shared = ours.exchange(originator)
        else:
            if (
                not isinstance(ours, ec.EllipticCurvePrivateKey)
                or not isinstance(originator, ec.EllipticCurvePublicKey)
                or not isinstance(ours.curve, ec.SECP256R1)
                or not isinstance(originator.curve, ec.SECP256R1)
            ):
                raise TypeError
            shared = ours.exchange(ec.ECDH(), originator)
    except TypeError:
        raise EbmsError(
            EbmsCode.FAILED_DECRYPTION,
            f"{what}: {algorithm.value} needs matching keys; our key or the originator key has another type",
        ) from None
    except ValueError:  # e.g. a low-order X25519 point: an all-zero shared secret
        raise EbmsError(
            EbmsCode.FAILED_DECRYPTION, f"{what}: key agreement with the originator key failed"
        ) from None
    return _hkdf(shared, salt, info)


def _hkdf(shared: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEK_BYTES, salt=salt or None, info=info).derive(shared)


def _b64(text: str | None, what: str, code: EbmsCode = EbmsCode.FAILED_DECRYPTION) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except ValueError:
        raise EbmsError(code, f"{what} is not valid base64") from None


_POSITIVE = re.compile(r"\+?[0-9]{1,9}")


def _hkdf_params(method: etree._Element, what: str) -> tuple[bytes, bytes]:
    derivation = method.find("xenc11:KeyDerivationMethod", _NS)
    uri = derivation.get("Algorithm") if derivation is not None else None
    if derivation is None or uri != KeyDerivation.HKDF:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"{what}: key derivation {uri!r} is not supported; eDelivery AS4 2.0 uses {KeyDerivation.HKDF.value}",
        )
    params = derivation.find("dm:HKDFParams", _NS)
    if params is None:
        raise EbmsError(EbmsCode.POLICY_NONCOMPLIANCE, f"{what}: xenc11:KeyDerivationMethod has no HKDFParams")
    prf = params.find("dm:PRF", _NS)
    # no PRF at all is HMAC-SHA256, as Santuario (HKDFParamsImpl) reads it; a PRF without Algorithm is malformed
    prf_uri = prf.get("Algorithm") if prf is not None else Prf.HMAC_SHA256.value
    if prf_uri != Prf.HMAC_SHA256:
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"{what}: HKDF PRF {prf_uri!r} is not allowed; expected {Prf.HMAC_SHA256.value}",
        )
    length = (params.findtext("dm:KeyLength", None, _NS) or "").strip()
    # an xs:positiveInteger: "016" and "+16" are 16 too; 16 is bytes (as Santuario writes it), 128 bits
    if length and (_POSITIVE.fullmatch(length) is None or int(length) not in (KEK_BYTES, KEK_BYTES * 8)):
        raise EbmsError(
            EbmsCode.POLICY_NONCOMPLIANCE,
            f"{what}: HKDF KeyLength {length[:20]!r} does not fit kw-aes128 (16 bytes)",
        )
    salt = _b64(params.findtext("dm:Salt", "", _NS), f"{what} HKDF Salt")
    info = _b64(params.findtext("dm:Info", "", _NS), f"{what} HKDF Info")
    return salt, info


def _originator_key(method: etree._Element, what: str) -> object:
    originator = method.find("xenc:OriginatorKeyInfo", _NS)
    found = (
        originator.findall(".//dsig11:DEREncodedKeyValue", _NS) + originator.findall(".//dsig11:ECKeyValue", _NS)
        if originator is not None
        else []
    )
    if len(found) != 1:
        raise EbmsError(
            EbmsCode.FAILED_DECRYPTION,
            f"{what}: xenc:OriginatorKeyInfo must hold exactly one DEREncodedKeyValue or ECKeyValue "
            f"(found {len(found)})",
        )
    value = found[0]
    try:
        if etree.QName(value).localname == "DEREncodedKeyValue":
            return serialization.load_der_public_key(_b64(value.text, f"{what} DEREncodedKeyValue"))
        curve = value.find("dsig11:NamedCurve", _NS)
        if curve is None or curve.get("URI") != P256_URN:
            raise EbmsError(
                EbmsCode.POLICY_NONCOMPLIANCE,
                f"{what}: the originator key is not on P-256 ({P256_URN})",
            )
        point = _b64(value.findtext("dsig11:PublicKey", "", _NS), f"{what} ECKeyValue PublicKey")
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except (ValueError, TypeError, NotImplementedError, UnsupportedAlgorithm):
        raise EbmsError(EbmsCode.FAILED_DECRYPTION, f"{what}: the originator public key cannot be read") from None
