"""Partner profiles (PModes): one YAML file per partner authority, its certificates, and a development PKI."""

from gateway.profiles.certificates import (
    PartnerCertificates,
    check_certificate,
    check_suite_key,
    days_to_expiry,
    load_certificate,
    load_private_key,
    resolve_certificates,
)
from gateway.profiles.devpki import DevAuthority, DevPartyFiles, DevPki, generate_dev_pki
from gateway.profiles.loader import load_profile, load_profiles
from gateway.profiles.model import (
    EBMS_DEFAULT_INITIATOR_ROLE,
    EBMS_DEFAULT_RESPONDER_ROLE,
    Contact,
    Documents,
    PartnerProfile,
    ReceptionAwareness,
    Roles,
    Security,
    SecuritySuite,
)
from gateway.profiles.registry import ProfileRegistry

__all__ = [
    "EBMS_DEFAULT_INITIATOR_ROLE",
    "EBMS_DEFAULT_RESPONDER_ROLE",
    "Contact",
    "DevAuthority",
    "DevPartyFiles",
    "DevPki",
    "Documents",
    "PartnerCertificates",
    "PartnerProfile",
    "ProfileRegistry",
    "ReceptionAwareness",
    "Roles",
    "Security",
    "SecuritySuite",
    "check_certificate",
    "check_suite_key",
    "days_to_expiry",
    "generate_dev_pki",
    "load_certificate",
    "load_private_key",
    "load_profile",
    "load_profiles",
    "resolve_certificates",
]
