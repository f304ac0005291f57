"""Algorithm identifiers as enums of their URIs: an unknown or misspelt URI fails where it enters."""

from __future__ import annotations

from enum import StrEnum


class SignatureMethod(StrEnum):
    RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    RSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
    RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
    RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"


class DigestMethod(StrEnum):
    SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
    SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
    SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"
    SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"


class Transform(StrEnum):
    EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
    ATTACHMENT_CONTENT_SIGNATURE = (
        "http://docs.oasis-open.org/wss/oasis-wss-SwAProfile-1.1#Attachment-Content-Signature-Transform"
    )


class DataEncryption(StrEnum):
    AES128_GCM = "http://www.w3.org/2009/xmlenc11#aes128-gcm"
    AES256_GCM = "http://www.w3.org/2009/xmlenc11#aes256-gcm"


class KeyTransport(StrEnum):
    RSA_OAEP = "http://www.w3.org/2009/xmlenc11#rsa-oaep"
    RSA_OAEP_MGF1P = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"


class MaskGeneration(StrEnum):
    MGF1_SHA1 = "http://www.w3.org/2009/xmlenc11#mgf1sha1"
    MGF1_SHA256 = "http://www.w3.org/2009/xmlenc11#mgf1sha256"
