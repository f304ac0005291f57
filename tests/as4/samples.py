"""Third-party AS4 samples (tests/fixtures/as4, see PROVENANCE.md): loading, keys, and partial verification.

The files are used exactly as stored. Where a file is not a bare HTTP body, ``load`` takes it apart the way
its provenance note says (HTTP dump headers, MIME headers inside the file, a license comment phase4
prepended to an XML file); nothing else is changed.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, pkcs12
from lxml import etree

from gateway.as4 import KeyPair, SecurityPolicy, wss
from gateway.as4.algorithms import DigestMethod, KeyTransport, MaskGeneration, SignatureMethod
from gateway.as4.envelope import read_envelope
from gateway.as4.errors import EbmsError
from gateway.as4.mime import MimePart

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "as4"
KEYS = FIXTURES / "keys"
_NS = {"ds": "http://www.w3.org/2000/09/xmldsig#", "wsse": wss._NS["wsse"]}

# Passwords as published with the keys (SOURCES.md of the standards folder; PROVENANCE.md here).
_PFX_PASSWORDS = {"as4net_AccessPointA.pfx": b"Pz4cZK4SULUwmraZa", "as4net_AccessPointB.pfx": b"Pz4cZK4SULUwmraZb"}


def pfx(name: str) -> KeyPair:
    key, cert, _ = pkcs12.load_key_and_certificates((KEYS / name).read_bytes(), _PFX_PASSWORDS[name])
    assert isinstance(key, rsa.RSAPrivateKey) and cert is not None
    return KeyPair(private_key=key, certificate=cert)


def pem_pair(stem: str) -> KeyPair:
    key = load_pem_private_key((KEYS / f"{stem}.key.pem").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return KeyPair(
        private_key=key, certificate=x509.load_pem_x509_certificate((KEYS / f"{stem}.crt.pem").read_bytes())
    )


def der_cert(name: str) -> x509.Certificate:
    return x509.load_der_x509_certificate((KEYS / name).read_bytes())


def load(name: str, content_type: str | None = None) -> tuple[str, bytes]:
    """(HTTP Content-Type, HTTP body) of a sample file.

    ``.as4in`` and ``.mime`` files carry their own headers; ``.as4``/``.txt`` MIME bodies take the
    Content-Type given (from the source project's test code) or one built from the first boundary line;
    ``.xml`` files are SOAP 1.2 or 1.1 envelopes, sent as ``application/soap+xml`` or ``text/xml``.
    """
    data = (FIXTURES / name).read_bytes()
    if name.endswith((".as4in", ".mime")):
        blank = re.search(rb"\r?\n\r?\n", data)
        assert blank is not None
        headers = email.message_from_bytes(data[: blank.start()] + b"\r\n\r\n")
        return str(headers["Content-Type"]), data[blank.end() :]
    if content_type is not None:
        return content_type, data
    if name.endswith((".as4", ".txt")):
        first = data.removeprefix(b"\xef\xbb\xbf").lstrip().split(b"\n", 1)[0].strip()
        boundary = first.removeprefix(b"--").decode()
        return f'multipart/related; boundary="{boundary}"; type="application/soap+xml"', data
    soap11 = b"http://schemas.xmlsoap.org/soap/envelope/" in data[:2000]
    return ("text/xml" if soap11 else "application/soap+xml"), data


def without_prepended_comment(data: bytes) -> bytes:
    """phase4 prepended an Apache license comment before the XML declaration of some files; drop it."""
    stripped = data.lstrip()
    if stripped.startswith(b"<!--") and b"<?xml" in stripped[: stripped.index(b"-->") + 20]:
        return stripped[stripped.index(b"-->") + 3 :].lstrip()
    return data


def embedded_certificates(envelope: bytes) -> tuple[x509.Certificate, ...]:
    """The X509v3 BinarySecurityTokens of an envelope (how most samples carry the signer's certificate)."""
    root, _ = read_envelope(envelope)
    found = []
    for token in root.iter(f"{{{_NS['wsse']}}}BinarySecurityToken"):
        try:
            found.append(wss._certificate_from_token(token))
        except EbmsError:
            continue
    return tuple(found)


def all_algorithms(*pinned: x509.Certificate, require_encryption: bool = False) -> SecurityPolicy:
    """A policy accepting every algorithm we implement: to look at a sample's crypto, never for traffic."""
    return SecurityPolicy(
        signing_certificates=pinned,
        signature_methods=frozenset(SignatureMethod),
        digest_methods=frozenset(DigestMethod),
        key_transport=frozenset(KeyTransport),
        mask_generation=frozenset(MaskGeneration),
        require_encryption=require_encryption,
    )


@dataclass(frozen=True, slots=True)
class PartialCheck:
    """What can be checked of a signature when some signed parts are missing (envelope-only samples).

    ``signature_value``: the RSA signature over the canonical SignedInfo verified with the signer's key.
    ``references``: for each ds:Reference URI, "ok", "mismatch", or "absent" (a cid: part not in the file).
    """

    signature_method: str
    signature_value: bool
    references: dict[str, str] = field(default_factory=dict)
    signer: x509.Certificate | None = None

    @property
    def present_parts_verify(self) -> bool:
        return self.signature_value and all(v != "mismatch" for v in self.references.values())

    @property
    def failing(self) -> list[str]:
        return [uri for uri, v in self.references.items() if v == "mismatch"]


def partial_verify(
    envelope: bytes,
    attachments: dict[str, MimePart],
    candidates: tuple[x509.Certificate, ...] = (),
    keys: tuple[KeyPair, ...] = (),
) -> PartialCheck:
    """Check the signature value and every reference whose part is present, with the core's own functions.

    Attachments absent from the file are reported ("absent"), and encrypted ones we hold no key for
    ("encrypted"), not skipped silently: the caller asserts on them. With ``keys`` the attachments are
    decrypted first (sign-then-encrypt: the digests cover the plaintext).
    """
    root, version = read_envelope(envelope)
    header = root.find(f"{{{version.value}}}Header")
    ids = wss.index_ids(root)
    security = wss.find_security(header, version)
    signature, signed_info = wss.the_signature(security)
    encrypted = set()
    for data in (
        security.iterfind("xenc:EncryptedData/xenc:CipherData/xenc:CipherReference", wss._NS)
        if security is not None
        else ()
    ):
        encrypted.add((data.get("URI") or "").removeprefix("cid:"))
    if keys and encrypted & set(attachments):
        attachments = wss.decrypt_attachments(security, attachments, keys, all_algorithms(*candidates), ids)
        encrypted = set()
    method_el = signed_info.find("ds:SignatureMethod", _NS)
    method = method_el.get("Algorithm", "") if method_el is not None else ""
    cert = wss.resolve_certificate(signature.find("ds:KeyInfo", _NS), ids, candidates)
    try:
        wss.check_signature_value(signature, signed_info, SignatureMethod(method), cert)
        value_ok = True
    except (EbmsError, ValueError):  # ValueError: a SignatureMethod URI we do not implement
        value_ok = False
    policy = all_algorithms(cert)
    references: dict[str, str] = {}
    for ref in signed_info.findall("ds:Reference", _NS):
        uri = ref.get("URI") or ""
        try:
            wss.check_reference(ref, ids, attachments, policy)
            references[uri] = "ok"
        except EbmsError as exc:
            if "names no MIME part" in exc.detail:
                references[uri] = "absent"
            elif uri.removeprefix("cid:") in encrypted:
                references[uri] = "encrypted"
            else:
                references[uri] = "mismatch"
    return PartialCheck(signature_method=method, signature_value=value_ok, references=references, signer=cert)


def element_of(envelope: bytes, uri: str) -> str:
    """The local name of the element a same-document reference points at (for readable assertions)."""
    root, _ = read_envelope(envelope)
    return etree.QName(wss.index_ids(root)[uri.removeprefix("#")]).localname
