"""Every way a profile file can be wrong is reported with file, line, column and field."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.documents.types import DocumentType
from gateway.errors import ProfileError
from gateway.profiles import DevPki, load_profile, load_profiles
from gateway.profiles.check import check_folder

from .conftest import MINIMAL, NOW
from .helpers import write_revocation_list

WriteProfile = Callable[..., Path]
DOCUMENT_TYPES = ", ".join(DocumentType)


def problems(path: Path, pki: DevPki, **kwargs: object) -> list[str]:
    with pytest.raises(ProfileError) as caught:
        load_profile(path, certificates_dir=pki.folder, **kwargs)  # type: ignore[arg-type]
    return str(caught.value).splitlines()


def test_minimal_profile_is_valid(pki: DevPki, write_profile: WriteProfile) -> None:
    assert load_profile(write_profile(MINIMAL), certificates_dir=pki.folder, now=NOW).id == "ch-swissmedic"


def test_missing_required_field(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL.replace("party_id: CH-SWISSMEDIC\n", ""))

    assert problems(path, pki) == [f"{path}:2:1 party_id: required key is missing"]


def test_missing_nested_field_points_at_its_section(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL.replace("  signing_certificate: ch-swissmedic.crt.pem\n", ""))

    assert problems(path, pki) == [
        f"{path}:7:1 security: expected signing_certificate, signing_certificates, or trust_anchor with subject: "
        "without one, no signature of the partner can be verified"
    ]


def test_bad_suite(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL.replace("suite: edelivery-as4-1.15", "suite: edelivery-9"))

    assert problems(path, pki) == [
        f"{path}:8:3 security.suite: got 'edelivery-9', expected one of: edelivery-as4-1.15, edelivery-as4-2.0, edelivery-as4-2.0-ecc"
    ]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://as4.example.org/as4",
        "as4.example.org/as4",
        "https://",
        "http://as4.example.org:99999/as4",
        "https://as4.example .org/as4",
        "mailto:as4@example.org",
    ],
)
def test_bad_endpoint(url: str, pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL.replace("https://as4.example.org/as4", url))

    assert problems(path, pki) == [
        f"{path}:6:1 endpoint: got {url!r}, expected an http:// or https:// URL with a host, "
        "such as https://as4.example.org/as4"
    ]


def test_unknown_document_type_in_flow_list(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL + "documents:\n  send: [ImportAuthorization, PermitRequest]\n")

    assert problems(path, pki) == [
        f"{path}:11:31 documents.send[1]: got 'PermitRequest', expected one of: {DOCUMENT_TYPES}"
    ]


def test_unknown_document_type_in_block_list(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL + "documents:\n  receive:\n    - ExportAuthorisation\n")

    assert problems(path, pki) == [
        f"{path}:12:7 documents.receive[0]: got 'ExportAuthorisation', expected one of: {DOCUMENT_TYPES}"
    ]


def test_misspelt_key_suggests_the_right_one(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL.replace("endpoint:", "endpiont:"))

    found = problems(path, pki)

    # endpoint may be left out (a partner that pulls has none), so the misspelling is the one error
    assert found[0].startswith(f"{path}:6:1 endpiont: unknown key; did you mean 'endpoint'? expected one of: id, ")
    assert len(found) == 1


def test_misspelt_nested_key(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL.replace("  suite:", "  suit:"))

    assert problems(path, pki) == [
        f"{path}:8:3 security.suit: unknown key; did you mean 'suite'? "
        "expected one of: suite, signing_certificate, signing_certificates, trust_anchor, subject, "
        "revocation_list, encryption_certificate"
    ]


def test_unknown_key_without_a_close_match(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL + "frobnicate: 1\n")

    [line] = problems(path, pki)
    assert line.startswith(f"{path}:10:1 frobnicate: unknown key; expected one of: id, authority_name, ")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("id: ch-swissmedic", "id: CH_Swissmedic", "2:1 id: got 'CH_Swissmedic', expected a lowercase slug"),
        ("country: CH", "country: Switzerland", "4:1 country: got 'Switzerland', expected an ISO 3166-1 alpha-2"),
        ("country: CH", "country: ch", "4:1 country: got 'ch', expected an ISO 3166-1 alpha-2 country code"),
        ("security:\n", "compression: maybe\nsecurity:\n", "7:1 compression: got 'maybe', expected true or false"),
        (
            "security:\n",
            "security: pem\nx:\n",
            "7:1 security: got 'pem', expected a mapping with the keys: suite, ",
        ),
    ],
)
def test_bad_values(old: str, new: str, expected: str, pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL.replace(old, new, 1))

    assert any(line.startswith(f"{path}:{expected}") for line in problems(path, pki))


def test_bad_reception_awareness(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(
        MINIMAL + "reception_awareness:\n  retry_delays_seconds: [5, -1]\n  receipt_timeout_seconds: 0\n"
    )

    assert problems(path, pki) == [
        f"{path}:11:29 reception_awareness.retry_delays_seconds[1]: got -1, expected a value greater than 0",
        f"{path}:12:3 reception_awareness.receipt_timeout_seconds: got 0, expected a value greater than 0",
    ]


def test_retries_without_delays(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL + "reception_awareness:\n  retries: 2\n  retry_delays_seconds: []\n")

    assert problems(path, pki) == [
        f"{path}:10:1 reception_awareness: expected at least one retry delay when retries is above 0"
    ]


def test_bad_contact(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL + "contacts:\n  - name: Desk\n    email: desk.example.org\n")

    assert problems(path, pki) == [
        f"{path}:12:5 contacts[0].email: got 'desk.example.org', expected an e-mail address"
    ]


def test_all_problems_of_a_file_are_reported_at_once(pki: DevPki, write_profile: WriteProfile) -> None:
    text = (
        MINIMAL.replace("country: CH", "country: Swiss")
        .replace("suite: edelivery-as4-1.15", "suite: edelivery-2")
        .replace("ch-swissmedic.crt.pem", "nowhere.crt.pem")
    )
    path = write_profile(text + "documents:\n  send: [Permit]\n")

    found = problems(path, pki)

    assert [line.split(" ")[0] for line in found] == [f"{path}:{pos}" for pos in ("4:1", "8:3", "9:3", "11:10")]


def test_duplicate_id_across_files(pki: DevPki, write_profile: WriteProfile) -> None:
    first = write_profile(MINIMAL, "a.yaml")
    second = write_profile(
        MINIMAL.replace("CH-SWISSMEDIC", "CH-SMC").replace("ch-swissmedic.crt.pem", "de-bfarm.crt.pem"), "b.yaml"
    )

    with pytest.raises(ProfileError) as caught:
        load_profiles(first.parent, certificates_dir=pki.folder)

    assert str(caught.value) == (
        f"{second}:2:1 id: 'ch-swissmedic' is already the id of the profile in {first}:2:1; "
        "give each partner its own id"
    )


def test_duplicate_party_id_across_files(pki: DevPki, write_profile: WriteProfile) -> None:
    first = write_profile(MINIMAL, "a.yaml")
    second = write_profile(
        MINIMAL.replace("id: ch-swissmedic", "id: ch-other").replace("ch-swissmedic.crt.pem", "de-bfarm.crt.pem"),
        "b.yml",
    )

    with pytest.raises(ProfileError) as caught:
        load_profiles(first.parent, certificates_dir=pki.folder)

    assert str(caught.value) == (
        f"{second}:5:1 party_id: 'CH-SWISSMEDIC' (type urn:oasis:names:tc:ebcore:partyid-type:unregistered) "
        f"is already the PartyId of profile 'ch-swissmedic' in {first}:5:1; a PartyId must name one partner"
    )


def test_same_party_id_under_another_type_is_a_different_party(pki: DevPki, write_profile: WriteProfile) -> None:
    first = write_profile(MINIMAL, "a.yaml")
    write_profile(
        MINIMAL.replace("id: ch-swissmedic", "id: ch-gln")
        .replace("endpoint:", "party_id_type: urn:x:gln\nendpoint:")
        .replace("ch-swissmedic.crt.pem", "de-bfarm.crt.pem"),
        "b.yaml",
    )

    assert len(load_profiles(first.parent, certificates_dir=pki.folder)) == 2


def test_errors_of_every_file_in_a_folder_are_reported(pki: DevPki, write_profile: WriteProfile) -> None:
    first = write_profile(MINIMAL.replace("country: CH", "country: X"), "a.yaml")
    second = write_profile(MINIMAL.replace("id: ch-swissmedic\n", ""), "b.yaml")

    with pytest.raises(ProfileError) as caught:
        load_profiles(first.parent, certificates_dir=pki.folder)

    lines = str(caught.value).splitlines()
    assert lines[0].startswith(f"{first}:4:1 country:")
    assert lines[1] == f"{second}:2:1 id: required key is missing"


def test_missing_certificate_file(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL.replace("ch-swissmedic.crt.pem", "ch-old.crt.pem"))

    assert problems(path, pki) == [
        f"{path}:9:3 security.signing_certificate: got 'ch-old.crt.pem', but {pki.folder / 'ch-old.crt.pem'} "
        f"is not a file; expected the partner's certificate (PEM or DER) there "
        f"(relative paths resolve against {pki.folder})"
    ]


def test_missing_encryption_certificate_file(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL + "  encryption_certificate: gone.pem\n")

    [line] = problems(path, pki)
    assert line.startswith(f"{path}:10:3 security.encryption_certificate: got 'gone.pem', but ")


def test_expired_certificate(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL)
    certificate = pki.files_for("CH-SWISSMEDIC").certificate

    [line] = problems(path, pki, now=NOW + timedelta(days=731))

    assert line.startswith(
        f"{path}:9:3 security.signing_certificate: certificate {certificate} "
        "(C=CH,O=Swissmedic,CN=CH-SWISSMEDIC) expired on 2028-02-29 09:30 UTC"
    )
    assert line.endswith("obtain the renewed certificate and replace the file")


def test_expired_certificate_is_not_checked_without_now(pki: DevPki, write_profile: WriteProfile) -> None:
    assert load_profile(write_profile(MINIMAL), certificates_dir=pki.folder).id == "ch-swissmedic"


def test_certificate_not_yet_valid(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL)

    [line] = problems(path, pki, now=NOW - timedelta(days=1))

    assert line.startswith(f"{path}:9:3 security.signing_certificate: certificate ")
    assert "is not valid before 2026-03-01 08:30 UTC" in line


def test_file_that_is_no_certificate(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL.replace("ch-swissmedic.crt.pem", "ch-swissmedic.key.pem"))

    [line] = problems(path, pki)
    assert line == (
        f"{path}:9:3 security.signing_certificate: certificate file {pki.folder / 'ch-swissmedic.key.pem'} "
        "holds no X.509 certificate; expected one in PEM or DER form"
    )


def test_certificate_key_unfit_for_suite(pki: DevPki, write_profile: WriteProfile, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CH-SWISSMEDIC")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    ec_path = tmp_path / "ec.crt.pem"
    ec_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    path = write_profile(MINIMAL.replace("ch-swissmedic.crt.pem", str(ec_path)))

    [line] = problems(path, pki)
    assert line == (
        f"{path}:9:3 security.signing_certificate: certificate {ec_path} (CN=CH-SWISSMEDIC) has an "
        "elliptic-curve key (secp256r1); suite edelivery-as4-1.15 needs an RSA key of at least 2048 bits "
        "(rsa-sha256 signatures, RSA-OAEP key transport)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id: [ch\n", ":2:1: not valid YAML: expected ',' or ']', but got '<stream end>'"),
        ("id: a\nid: b\n", ':2:1: not valid YAML: found duplicate key "id" with value "b" (original value: "a")'),
        ("", ":1:1: got an empty file, expected a mapping of profile keys (id, party_id, ...)"),
        (
            "- id: a\n",
            ":1:1: got a list (lines starting with '- '), expected a mapping of profile keys (id, party_id, ...)",
        ),
        ("ch-swissmedic\n", ":1:1: got text alone, expected a mapping of profile keys (id, party_id, ...)"),
        ("5\n", ":1:1: got a number alone, expected a mapping of profile keys (id, party_id, ...)"),
    ],
)
def test_not_a_profile_document(text: str, expected: str, pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(text)

    assert problems(path, pki) == [f"{path}{expected}"]


_LAUGHS = "l0: &a0 [ha, ha, ha, ha, ha, ha, ha, ha, ha]\n" + "".join(
    f"l{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)
)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            _LAUGHS,
            ":11:10: a YAML alias (*a0) repeats the value of an anchor; partner profiles do not use anchors and "
            "aliases: write the value out where it is needed",
        ),
        ("x: " + "[" * 20 + "]" * 20 + "\n", ": nested more than 16 levels deep; a partner profile needs a few"),
        ("x: " + "[" * 5000 + "]" * 5000 + "\n", ": nested more than 16 levels deep; a partner profile needs a few"),
    ],
    ids=["billion-laughs", "deep", "deeper-than-the-parser"],
)
def test_a_profile_that_would_expand_or_nest_without_end_is_refused_at_once(
    extra: str, expected: str, pki: DevPki, write_profile: WriteProfile
) -> None:
    """Found probing the loader with hostile YAML: nine aliases of nine aliases (a "billion laughs") took it
    minutes and all its memory, and deep nesting raised RecursionError instead of a profile error."""
    path = write_profile(MINIMAL + extra)

    found = problems(path, pki)
    assert found[0] == f"{path}{expected}" and len(found) <= 51  # fifty, and how many more


def test_missing_profile_file(pki: DevPki, tmp_path: Path) -> None:
    assert problems(tmp_path / "none.yaml", pki) == [f"{tmp_path / 'none.yaml'}: partner profile file not found"]


def test_empty_and_null_values(pki: DevPki, write_profile: WriteProfile) -> None:
    path = write_profile(
        MINIMAL.replace("authority_name: Swissmedic", "authority_name:").replace(
            "  signing_certificate: ch-swissmedic.crt.pem", "  signing_certificate:\n  encryption_certificate: ''"
        )
        + "reception_awareness:\n  time_to_live_hours: .inf\n"
    )

    assert problems(path, pki) == [
        f"{path}:3:1 authority_name: got None, expected a valid string",
        f"{path}:7:1 security: expected signing_certificate, signing_certificates, or trust_anchor with "
        "subject: without one, no signature of the partner can be verified",
        f"{path}:10:3 security.encryption_certificate: got '', but {pki.folder} is not a file; "
        f"expected the partner's certificate (PEM or DER) there (relative paths resolve against {pki.folder})",
        f"{path}:12:3 reception_awareness.time_to_live_hours: got inf, expected a finite number",
    ]


def test_a_signing_certificate_pinned_for_two_partners_is_refused(
    pki: DevPki, write_profile: WriteProfile
) -> None:
    """The receiver applies the policy of the message's From PartyId: a certificate pinned for two partners
    would let either sign as the other."""
    first = write_profile(MINIMAL, "a.yaml")
    second = write_profile(
        MINIMAL.replace("ch-swissmedic\n", "de-bfarm\n").replace("CH-SWISSMEDIC", "DE-BFARM").replace("CH", "DE"),
        "b.yaml",
    )

    with pytest.raises(ProfileError) as caught:
        load_profiles(first.parent, certificates_dir=pki.folder)

    assert str(caught.value).startswith(f"{second}:7:1 security: the signing certificate ch-swissmedic.crt.pem")
    assert f"is also pinned by profile 'ch-swissmedic' in {first}; a signing certificate must belong" in str(
        caught.value
    )


def test_a_revocation_list_must_be_the_anchors_and_current(
    pki: DevPki, write_profile: WriteProfile, tmp_path: Path
) -> None:
    """Checked when the profile loads (its issuer and signature) and, for an edit, against now: a list past its
    nextUpdate would refuse every certificate of the CA."""
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    ca_name = x509.load_pem_x509_certificate(pki.ca_certificate.read_bytes()).subject
    anchored = MINIMAL.replace(
        "  signing_certificate: ch-swissmedic.crt.pem\n",
        "  trust_anchor: ca.crt.pem\n  subject: 'CN=CH-SWISSMEDIC,.*'\n"
        "  encryption_certificate: ch-swissmedic.crt.pem\n  revocation_list: {crl}\n",
    )
    folder = pki.folder
    names = {name: f"test-{tmp_path.name}-{name}.crl.pem" for name in ("good", "stale", "forged")}
    try:
        write_revocation_list(folder / names["good"], ca_key, ca_name, NOW + timedelta(days=7))
        write_revocation_list(folder / names["stale"], ca_key, ca_name, NOW - timedelta(minutes=1))
        forger = ec.generate_private_key(ec.SECP256R1())
        write_revocation_list(folder / names["forged"], forger, ca_name, NOW + timedelta(days=7))
        good = load_profile(write_profile(anchored.format(crl=names["good"])), certificates_dir=folder, now=NOW)
        assert good.security.revocation_list == folder / names["good"]

        stale = write_profile(anchored.format(crl=names["stale"]))
        assert (
            load_profile(stale, certificates_dir=folder).id == "ch-swissmedic"
        )  # a reload keeps it (fail closed)
        [due] = problems(stale, pki, now=NOW)
        assert due.startswith(f"{stale}:12:3 security.revocation_list: revocation list {folder / names['stale']} ")
        assert "was due for renewal at" in due and "replace it with the CA's current list" in due

        forged = write_profile(anchored.format(crl=names["forged"]))
        [unsigned] = problems(forged, pki)
        assert unsigned.startswith(f"{forged}:12:3 security.revocation_list: revocation list ")
        assert "is not signed by the trust anchor" in unsigned

        soon = tmp_path / "soon"
        soon.mkdir()
        write_revocation_list(folder / names["stale"], ca_key, ca_name, NOW + timedelta(hours=12))
        (soon / "partner.yaml").write_text(anchored.format(crl=names["stale"]))
        checked = check_folder(soon, certificates_dir=folder, now=NOW, warning_days=30)
        assert checked.ok and any("is due for renewal at" in line for line in checked.warnings), checked.warnings
        (soon / "partner.yaml").write_text(anchored.format(crl=names["good"]))
        assert not check_folder(soon, certificates_dir=folder, now=NOW, warning_days=30).warnings

        pinned = write_profile(MINIMAL + f"  revocation_list: {names['good']}\n")
        assert problems(pinned, pki) == [
            f"{pinned}:7:1 security: expected trust_anchor with revocation_list: the list is the anchor's, "
            "signed by it"
        ]
    finally:
        for name in names.values():
            (folder / name).unlink(missing_ok=True)
