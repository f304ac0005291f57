"""Review fixes: a trust anchor must not widen trust to another partner's certificates, KeyUsage is checked when
a profile loads, the TLS certificates are warned of before they expire, and every error names its line."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa, x25519
from cryptography.x509.oid import NameOID

from gateway.as4 import EbmsError, wss
from gateway.clock import FixedClock
from gateway.errors import ProfileError
from gateway.profiles import DevPki, load_profile
from gateway.profiles.certificates import PartnerCertificates
from gateway.profiles.check import check_folder
from gateway.profiles.editor import InvalidProfile, Precondition, ProfileEditor
from gateway.profiles.expiry import Validity, certificate_statuses
from gateway.profiles.loader import load_profile_folder
from gateway.profiles.trust import Partners, security_policy

from .conftest import MINIMAL, NOW
from .helpers import profile_text

WriteProfile = Callable[..., Path]
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey | x25519.X25519PublicKey


@pytest.fixture
def certs(pki: DevPki, tmp_path: Path) -> Path:
    """A copy of the development PKI (CA key included), for certificates made to measure."""
    folder = tmp_path / "certs"
    folder.mkdir()
    for source in pki.folder.glob("*.pem"):
        (folder / source.name).write_bytes(source.read_bytes())
    return folder


def issue(
    certs: Path,
    name: str,
    common_name: str,
    *,
    usage: dict[str, bool] | None,
    key: PublicKey | None = None,
    days: float = 365,
) -> Path:
    """A certificate the development CA issues to ``common_name``, with the KeyUsage bits in ``usage`` (no
    KeyUsage extension when None)."""
    ca_key = serialization.load_pem_private_key((certs / "ca.key.pem").read_bytes(), password=None)
    ca = x509.load_pem_x509_certificate((certs / "ca.crt.pem").read_bytes())
    public_key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if usage is not None:
        bits = dict.fromkeys(
            (
                "digital_signature",
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "key_cert_sign",
                "crl_sign",
                "encipher_only",
                "decipher_only",
            ),
            False,
        )
        builder = builder.add_extension(x509.KeyUsage(**(bits | usage)), critical=True)
    certificate = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    (certs / name).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return certs / name


def problems(path: Path, certs: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ProfileError) as caught:
        load_profile(path, certificates_dir=certs, **kwargs)  # type: ignore[arg-type]
    return str(caught.value).splitlines()


def anchored(profile_id: str, subject: str, encryption: str, *, country: str = "DE") -> str:
    return (
        f"id: {profile_id}\nauthority_name: A\ncountry: {country}\nparty_id: {profile_id.upper()}\n"
        f"endpoint: https://as4.{profile_id}.example/as4\n"
        f"security:\n  trust_anchor: ca.crt.pem\n  subject: '{subject}'\n  encryption_certificate: {encryption}\n"
    )


# 4. a trust anchor widening trust across partners


@pytest.mark.parametrize(
    ("subject", "matched"),
    [
        (".*", "the empty subject"),
        ("", "the empty subject"),
        ("CN=.*", "'CN=permit-gateway-probe', a subject no partner holds"),
        ("C=..,O=.*,CN=.*", "'C=ZZ,O=No Such Authority,CN=permit-gateway-probe', a subject no partner holds"),
        ("(CN=[^,]+,?)*(O=.*)?", "the empty subject"),
    ],
)
def test_a_subject_that_admits_anyone_is_refused(
    subject: str, matched: str, certs: Path, write_profile: WriteProfile
) -> None:
    path = write_profile(anchored("de-bfarm", subject, "de-bfarm.crt.pem"))

    [line] = problems(path, certs)

    assert line.startswith(f"{path}:8:3 security.subject: got {subject!r}, expected the partner's own subject")
    assert f"this pattern matches {matched}, so the trust anchor would vouch for any certificate it issues" in line
    assert "write the partner's subject" in line


def test_a_subject_naming_the_partner_is_accepted(certs: Path, write_profile: WriteProfile) -> None:
    for subject in (".*CN=DE-BFARM", "C=DE,O=Bundesinstitut .*,CN=DE-BFARM"):
        profile = load_profile(
            write_profile(anchored("de-bfarm", subject, "de-bfarm.crt.pem")), certificates_dir=certs
        )
        assert profile.security.subject == subject


def test_an_anchor_that_admits_another_partners_pinned_certificate_is_refused(certs: Path, tmp_path: Path) -> None:
    """One certificate pinned by two partners is refused; so is an anchor and subject that admit another
    partner's pinned certificate, or the partner could sign as this one."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "be-famhp.yaml").write_text(profile_text("be-famhp", "be-famhp.crt.pem", country="BE"))
    wide = folder / "de-bfarm.yaml"
    wide.write_text(anchored("de-bfarm", "C=(BE|DE),.*", "de-bfarm.crt.pem"))

    with pytest.raises(ProfileError) as caught:
        load_profile_folder(folder, certificates_dir=certs)

    [line] = str(caught.value).splitlines()
    assert line == (
        f"{wide}:8:3 security.subject: 'C=(BE|DE),.*' with trust_anchor ca.crt.pem admits the signing certificate "
        "be-famhp.crt.pem (C=BE,O=Federal Agency for Medicines and Health Products,CN=BE-FAMHP) of profile "
        f"'be-famhp' in {folder / 'be-famhp.yaml'}, so that partner could sign as 'de-bfarm'; narrow the subject "
        "to 'de-bfarm''s own certificates (its encryption certificate de-bfarm.crt.pem has "
        "'C=DE,O=Bundesinstitut für Arzneimittel und Medizinprodukte,CN=DE-BFARM')"
    )
    checked = check_folder(folder, certificates_dir=certs, now=NOW, warning_days=60)
    assert checked.errors == [line]

    wide.write_text(anchored("de-bfarm", ".*CN=DE-BFARM", "de-bfarm.crt.pem"))
    partners = Partners(load_profile_folder(folder, certificates_dir=certs).registry, now=NOW)
    be_famhp = x509.load_pem_x509_certificate((certs / "be-famhp.crt.pem").read_bytes())
    with pytest.raises(EbmsError, match="does not match the partner profile's subject pattern"):
        wss.trust_certificate(be_famhp, partners.get("de-bfarm").policy, NOW)


def test_an_anchor_admitting_another_partners_encryption_certificate_is_refused_by_the_editor(
    certs: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "be-famhp.yaml").write_text(anchored("be-famhp", ".*CN=BE-FAMHP", "be-famhp.crt.pem", country="BE"))
    editor = ProfileEditor(folder, certificates_dir=certs, data_dir=tmp_path / "data", clock=FixedClock(NOW))

    with pytest.raises(InvalidProfile) as caught:
        editor.put(
            "de-bfarm",
            anchored("de-bfarm", ".*CN=(DE-BFARM|BE-FAMHP)", "de-bfarm.crt.pem"),
            condition=Precondition(if_absent=True),
            actor="alice",
        )

    [line] = caught.value.errors
    assert line.startswith("in the edited de-bfarm.yaml (not saved), line 8 column 3 security.subject: '.*CN=(DE-BFARM|BE-FAMHP)'")
    assert "admits the encryption certificate be-famhp.crt.pem" in line and "of profile 'be-famhp'" in line
    assert not (folder / "de-bfarm.yaml").exists()


# 5. KeyUsage


def test_a_signing_certificate_without_digital_signature_is_refused(
    certs: Path, write_profile: WriteProfile
) -> None:
    """nonRepudiation alone does not do: the receiver requires digitalSignature (EBMS:0101), and so does the load."""
    signing = issue(certs, "sig.pem", "DE-SIGN", usage={"content_commitment": True, "key_encipherment": True})
    fit = issue(certs, "enc.pem", "DE-ENC", usage={"key_encipherment": True})
    text = MINIMAL.replace("ch-swissmedic.crt.pem", "sig.pem") + "  encryption_certificate: enc.pem\n"
    path = write_profile(text)

    assert problems(path, certs) == [
        f"{path}:9:3 security.signing_certificate: certificate {signing} (CN=DE-SIGN) has a KeyUsage extension "
        "without digitalSignature, so signatures made with it are refused (EBMS:0101); name the partner's signing "
        "certificate, one whose KeyUsage includes digitalSignature"
    ]
    assert fit.is_file()
    certificate = x509.load_pem_x509_certificate(signing.read_bytes())
    pinned = PartnerCertificates(profile_id="de", signing=(certificate,), encryption=certificate)
    runtime = security_policy(pinned, now=NOW)
    with pytest.raises(EbmsError, match="KeyUsage extension without digitalSignature"):  # the receiver agrees
        wss.trust_certificate(certificate, runtime, NOW)


def test_an_encryption_certificate_that_forbids_encryption_is_refused(
    certs: Path, write_profile: WriteProfile
) -> None:
    encryption = issue(certs, "enc.pem", "DE-ENC", usage={"digital_signature": True})
    path = write_profile(MINIMAL + "  encryption_certificate: enc.pem\n")

    assert problems(path, certs) == [
        f"{path}:10:3 security.encryption_certificate: certificate {encryption} (CN=DE-ENC) has a KeyUsage "
        "extension without keyEncipherment, so we must not encrypt for it; name the partner's encryption "
        "certificate, one whose KeyUsage includes keyEncipherment"
    ]


def test_a_signing_certificate_we_would_encrypt_for_needs_key_encipherment(
    certs: Path, write_profile: WriteProfile
) -> None:
    """Without encryption_certificate we encrypt for the pinned signing certificate: it needs both usages."""
    signing = issue(certs, "sig.pem", "DE-SIGN", usage={"digital_signature": True})
    issue(certs, "enc.pem", "DE-ENC", usage={"key_encipherment": True})
    issue(certs, "plain.pem", "DE-PLAIN", usage=None)
    path = write_profile(MINIMAL.replace("ch-swissmedic.crt.pem", "sig.pem"))

    [line] = problems(path, certs)

    assert line == (
        f"{path}:9:3 security.signing_certificate: certificate {signing} (CN=DE-SIGN) has a KeyUsage extension "
        "without keyEncipherment, so we must not encrypt for it, and without encryption_certificate we encrypt "
        "for the signing certificates; add security.encryption_certificate naming the partner's encryption "
        "certificate (KeyUsage keyEncipherment)"
    )
    named = write_profile(
        MINIMAL.replace("ch-swissmedic.crt.pem", "sig.pem") + "  encryption_certificate: enc.pem\n"
    )
    assert (
        load_profile(named, certificates_dir=certs, now=NOW).security.encryption_certificate == certs / "enc.pem"
    )
    unrestricted = write_profile(MINIMAL.replace("ch-swissmedic.crt.pem", "plain.pem"))  # no KeyUsage: any use
    assert load_profile(unrestricted, certificates_dir=certs, now=NOW).security.signing_certificate is not None


def test_an_agreement_certificate_needs_key_agreement(certs: Path, write_profile: WriteProfile) -> None:
    signing = ed25519.Ed25519PrivateKey.generate().public_key()
    agreement = x25519.X25519PrivateKey.generate().public_key()
    issue(certs, "ed.pem", "DE-SIGN", usage={"digital_signature": True}, key=signing)
    wrong = issue(certs, "x.pem", "DE-AGREE", usage={"key_encipherment": True}, key=agreement)
    issue(certs, "x-ok.pem", "DE-AGREE", usage={"key_agreement": True}, key=agreement)
    text = MINIMAL.replace("edelivery-as4-1.15", "edelivery-as4-2.0").replace("ch-swissmedic.crt.pem", "ed.pem")

    path = write_profile(text + "  encryption_certificate: x.pem\n")
    assert problems(path, certs) == [
        f"{path}:10:3 security.encryption_certificate: certificate {wrong} (CN=DE-AGREE) has a KeyUsage extension "
        "without keyAgreement, so we must not encrypt for it; name the partner's encryption certificate, one "
        "whose KeyUsage includes keyAgreement"
    ]
    fixed = write_profile(text + "  encryption_certificate: x-ok.pem\n")
    assert (
        load_profile(fixed, certificates_dir=certs, now=NOW).security.encryption_certificate == certs / "x-ok.pem"
    )


# 6. the TLS client certificate and the CA bundle expire too


def test_tls_client_certificate_and_ca_bundle_are_warned_of(certs: Path, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (certs / "tls.key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    issue(certs, "tls.crt.pem", "OUR-TLS-CLIENT", usage={"digital_signature": True}, key=key.public_key(), days=10)
    issue(certs, "bundle.pem", "PARTNER-TLS-CA", usage=None, days=20)
    folder = tmp_path / "profiles"
    folder.mkdir()
    tls = "tls:\n  ca_bundle: bundle.pem\n  client_certificate: tls.crt.pem\n  client_key: tls.key.pem\n"
    (folder / "ch-swissmedic.yaml").write_text(profile_text("ch-swissmedic", "ch-swissmedic.crt.pem") + tls)

    checked = check_folder(folder, certificates_dir=certs, now=NOW, warning_days=60)

    assert checked.errors == []
    assert checked.partners is not None
    statuses = {
        s.purpose: s for s in certificate_statuses(checked.partners, now=NOW, warning_days=60) if s.owner != "self"
    }
    assert (statuses["tls-client"].subject, statuses["tls-client"].validity) == (
        "CN=OUR-TLS-CLIENT",
        Validity.EXPIRING,
    )
    assert (statuses["tls-ca"].subject, statuses["tls-ca"].validity) == ("CN=PARTNER-TLS-CA", Validity.EXPIRING)
    [client] = [w for w in checked.warnings if "OUR-TLS-CLIENT" in w]
    assert client.startswith("our TLS client certificate for partner 'ch-swissmedic' (tls.client_certificate)")
    assert "expires in 10 days" in client and "renew it now" in client
    [bundle] = [w for w in checked.warnings if "PARTNER-TLS-CA" in w]
    assert bundle.startswith("the TLS CA certificate in partner 'ch-swissmedic''s tls.ca_bundle")
    assert checked.partners.changes_at == statuses["tls-client"].not_after


# 7. every error names its line and field


def test_a_time_to_live_reaching_the_duplicate_window_names_its_line(
    certs: Path, write_profile: WriteProfile, tmp_path: Path
) -> None:
    path = write_profile(MINIMAL + "reception_awareness:\n  time_to_live_hours: 500\n", name="ch-swissmedic.yaml")
    expected = (
        f"{path}:11:3 reception_awareness.time_to_live_hours: time_to_live_hours = 500 is not below "
        "[inbound].duplicate_window_hours = 168 less the clock skew a receiver allows (5 min) and the transit "
        "margin of a last attempt (5 min); a retry late in its time to live could no longer be recognized as a "
        "duplicate. Lower time_to_live_hours below 167.833 or raise duplicate_window_hours above 500.167"
    )
    window = timedelta(hours=168)

    assert problems(path, certs, duplicate_window=window) == [expected]
    with pytest.raises(ProfileError) as caught:
        load_profile_folder(path.parent, certificates_dir=certs, duplicate_window=window)
    assert str(caught.value) == expected
    checked = check_folder(path.parent, certificates_dir=certs, now=NOW, warning_days=60, duplicate_window=window)
    assert checked.errors == [expected]
    assert load_profile(path, certificates_dir=certs, duplicate_window=timedelta(hours=501)).id == "ch-swissmedic"


def test_cross_field_errors_name_the_offending_key(certs: Path, write_profile: WriteProfile) -> None:
    plain = write_profile(MINIMAL.replace("https://", "http://") + "tls:\n  ca_bundle: ca.crt.pem\n")
    assert problems(plain, certs) == [
        f"{plain}:6:1 endpoint: expected an https:// endpoint: tls settings apply to https only, "
        "got 'http://as4.example.org/as4'"
    ]
    no_endpoint = MINIMAL.replace("endpoint: https://as4.example.org/as4\n", "")
    pulling = write_profile(no_endpoint + "transport: pull\npull:\n  receive_by_pulling: true\n")
    assert problems(pulling, certs) == [
        f"{pulling}:11:3 pull.receive_by_pulling: expected endpoint: pull.receive_by_pulling sends our "
        "PullRequests to it"
    ]
    tls_only = write_profile(no_endpoint + "transport: pull\ntls:\n  ca_bundle: ca.crt.pem\n")
    assert problems(tls_only, certs) == [
        f"{tls_only}:10:1 tls: expected an https:// endpoint: tls settings apply to https only, got None"
    ]
