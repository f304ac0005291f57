"""Partner profiles (PModes): one YAML file per partner authority, its certificates, and a development PKI;
hot reload, safe edits with history and audit, our own keystore, and certificate expiry."""

from gateway.profiles.certificates import (
    PartnerCertificates,
    check_certificate,
    check_suite_key,
    days_to_expiry,
    load_certificate,
    load_private_key,
    resolve_certificates,
)
from gateway.profiles.check import FolderCheck, check_folder
from gateway.profiles.devpki import DevAuthority, DevPartyFiles, DevPki, generate_dev_pki
from gateway.profiles.editor import EditConflict, EditResult, InvalidProfile, Precondition, ProfileEditor
from gateway.profiles.expiry import CertificateStatus, check_expiry
from gateway.profiles.keystore import KeyStatus, Keystore, KeystoreWatcher, OwnKeys, load_own_keys
from gateway.profiles.loader import load_profile, load_profile_folder, load_profiles
from gateway.profiles.model import (
    EBMS_DEFAULT_INITIATOR_ROLE,
    EBMS_DEFAULT_RESPONDER_ROLE,
    Contact,
    Delivery,
    DeliveryMethod,
    Documents,
    PartnerProfile,
    ReceptionAwareness,
    Roles,
    Security,
    SecuritySuite,
    Tls,
    Transport,
    profile_json_schema,
)
from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.trust import Partner, Partners
from gateway.profiles.watcher import ActiveProfiles, ProfileWatcher

__all__ = [
    "EBMS_DEFAULT_INITIATOR_ROLE",
    "EBMS_DEFAULT_RESPONDER_ROLE",
    "ActiveProfiles",
    "CertificateStatus",
    "Contact",
    "Delivery",
    "DeliveryMethod",
    "DevAuthority",
    "DevPartyFiles",
    "DevPki",
    "Documents",
    "EditConflict",
    "EditResult",
    "FolderCheck",
    "InvalidProfile",
    "KeyStatus",
    "Keystore",
    "KeystoreWatcher",
    "OwnKeys",
    "Partner",
    "PartnerCertificates",
    "PartnerProfile",
    "Partners",
    "Precondition",
    "ProfileEditor",
    "ProfileRegistry",
    "ProfileWatcher",
    "ReceptionAwareness",
    "Roles",
    "Security",
    "SecuritySuite",
    "Tls",
    "Transport",
    "check_certificate",
    "check_expiry",
    "check_folder",
    "check_suite_key",
    "days_to_expiry",
    "generate_dev_pki",
    "load_certificate",
    "load_own_keys",
    "load_private_key",
    "load_profile",
    "load_profile_folder",
    "load_profiles",
    "profile_json_schema",
    "resolve_certificates",
]
