"""Namespaces and fixed URIs of ebMS 3.0, AS4, SOAP, WS-Security, XML-DSig and XML-Enc."""

from __future__ import annotations

from enum import StrEnum

EB = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/"
EBBP = "http://docs.oasis-open.org/ebxml-bp/ebbp-signals-2.0"
S12 = "http://www.w3.org/2003/05/soap-envelope"
S11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSSE11 = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
XENC = "http://www.w3.org/2001/04/xmlenc#"
XENC11 = "http://www.w3.org/2009/xmlenc11#"
EC = "http://www.w3.org/2001/10/xml-exc-c14n#"
DSIG11 = "http://www.w3.org/2009/xmldsig11#"
DSIG_MORE = "http://www.w3.org/2021/04/xmldsig-more#"
XML = "http://www.w3.org/XML/1998/namespace"

NSMAP = {"eb": EB, "ebbp": EBBP, "env": S12, "wsse": WSSE, "wsu": WSU, "ds": DS, "xenc": XENC}

DEFAULT_MPC = EB + "defaultMPC"
ROLE_INITIATOR = EB + "initiator"
ROLE_RESPONDER = EB + "responder"
TEST_SERVICE = EB + "service"
TEST_ACTION = EB + "test"

BASE64_ENCODING = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
X509_PKIPATH = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509PKIPathv1"
X509_SKI = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509SubjectKeyIdentifier"
)
TOKEN_TYPE_ENCRYPTED_KEY = "http://docs.oasis-open.org/wss/oasis-wss-soap-message-security-1.1#EncryptedKey"  # noqa: S105
SWA_CONTENT_ONLY = "http://docs.oasis-open.org/wss/oasis-wss-SwAProfile-1.1#Attachment-Content-Only"
SWA_CIPHERTEXT_TRANSFORM = (
    "http://docs.oasis-open.org/wss/oasis-wss-SwAProfile-1.1#Attachment-Ciphertext-Transform"
)

COMPRESSION_GZIP = "application/gzip"

SOAP12_CONTENT_TYPE = "application/soap+xml"
SOAP11_CONTENT_TYPE = "text/xml"
SOAP12_ROLE_NEXT = "http://www.w3.org/2003/05/soap-envelope/role/next"
SOAP12_ROLE_ULTIMATE_RECEIVER = "http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver"
SOAP11_ACTOR_NEXT = "http://schemas.xmlsoap.org/soap/actor/next"


class SoapVersion(StrEnum):
    """A SOAP version, valued by its envelope namespace."""

    SOAP12 = S12
    SOAP11 = S11

    @property
    def content_type(self) -> str:
        return SOAP12_CONTENT_TYPE if self is SoapVersion.SOAP12 else SOAP11_CONTENT_TYPE

    @property
    def label(self) -> str:
        return "SOAP 1.2" if self is SoapVersion.SOAP12 else "SOAP 1.1"


def q(ns: str, name: str) -> str:
    """Clark notation ``{ns}name`` for lxml."""
    return f"{{{ns}}}{name}"
