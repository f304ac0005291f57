"""The profile's new keys (several certificates, trust anchor, TLS, transport, delivery) and their checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.as4 import (
    DEFAULT_MPC,
    ROLE_INITIATOR,
    ROLE_RESPONDER,
    EbmsError,
    KeyPair,
    Outgoing,
    Party,
    PartyId,
    Payload,
    SecurityPolicy,
    UserMessage,
    build_user_message,
    parse_incoming,
)
from gateway.errors import ConfigError, KeyMaterialError, ProfileError
from gateway.profiles import DevPki, load_profile, load_profiles
from gateway.profiles.certificates import resolve_certificates
from gateway.profiles.model import DeliveryMethod, Pull, Transport, profile_json_schema
from gateway.profiles.trust import Partners, load_key_pair

from .conftest import DEMO_PROFILES, MINIMAL, NOW
from .helpers import certificate, rsa_key, write_certificate

WriteProfile = Callable[..., Path]
SECURITY = "security:\n  suite: edelivery-as4-1.15\n  signing_certificate: ch-swissmedic.crt.pem\n"


def problems(path: Path, certificates: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ProfileError) as caught:
        load_profile(path, certificates_dir=certificates, **kwargs)  # type: ignore[arg-type]
    return str(caught.value).splitlines()


@pytest.fixture
def certs(pki: DevPki, tmp_path: Path) -> Path:
    """The dev PKI plus an old (expired by NOW), a new (valid from NOW + 10 days) and an expiring certificate."""
    folder = tmp_path / "certs"
    folder.mkdir()
    for source in pki.folder.glob("*.crt.pem"):
        (folder / source.name).write_bytes(source.read_bytes())
    key = rsa_key(1)
    write_certificate(
        folder / "old.pem", certificate("CH-OLD", key=key, not_before=NOW - timedelta(days=400), days=399)
    )
    write_certificate(
        folder / "new.pem", certificate("CH-NEW", key=key, not_before=NOW + timedelta(days=10), days=400)
    )
    write_certificate(
        folder / "soon.pem", certificate("CH-SOON", key=key, not_before=NOW - timedelta(days=300), days=320)
    )
    return folder


def with_security(lines: str) -> str:
    return MINIMAL.replace(SECURITY, "security:\n" + lines)


def test_single_key_and_list_are_both_accepted(certs: Path, write_profile: WriteProfile) -> None:
    text = with_security(
        "  signing_certificate: ch-swissmedic.crt.pem\n  signing_certificates: [soon.pem, new.pem]\n"
    )

    profile = load_profile(write_profile(text), certificates_dir=certs, now=NOW)

    assert profile.security.pinned_certificates == (
        certs / "ch-swissmedic.crt.pem",
        certs / "soon.pem",
        certs / "new.pem",
    )


def test_list_alone_is_enough(certs: Path, write_profile: WriteProfile) -> None:
    text = with_security("  signing_certificates:\n    - soon.pem\n    - old.pem\n")

    assert load_profile(write_profile(text), certificates_dir=certs, now=NOW).security.signing_certificate is None


def test_one_expired_certificate_beside_a_valid_one_is_fine(certs: Path, write_profile: WriteProfile) -> None:
    text = with_security("  signing_certificates: [old.pem, ch-swissmedic.crt.pem]\n")

    assert load_profile(write_profile(text), certificates_dir=certs, now=NOW).id == "ch-swissmedic"


def test_no_valid_certificate_for_signing_names_each(certs: Path, write_profile: WriteProfile) -> None:
    path = write_profile(with_security("  signing_certificates: [old.pem, new.pem]\n"))

    found = problems(path, certs, now=NOW)

    assert [line.split(" ", 2)[:2] for line in found] == [
        [f"{path}:8:26", "security.signing_certificates[0]:"],
        [f"{path}:8:35", "security.signing_certificates[1]:"],
    ]
    assert "expired on" in found[0] and "is not valid before" in found[1]


def test_invalid_encryption_certificate_is_an_error_even_with_valid_signing(
    certs: Path, write_profile: WriteProfile
) -> None:
    path = write_profile(MINIMAL + "  encryption_certificate: old.pem\n")

    [line] = problems(path, certs, now=NOW)

    assert line.startswith(f"{path}:10:3 security.encryption_certificate: certificate {certs / 'old.pem'}")
    assert "expired on" in line


def test_missing_file_in_the_list(certs: Path, write_profile: WriteProfile) -> None:
    path = write_profile(with_security("  signing_certificates: [ch-swissmedic.crt.pem, gone.pem]\n"))

    [line] = problems(path, certs)

    assert line.startswith(f"{path}:8:49 security.signing_certificates[1]: got 'gone.pem', but ")


def test_nobody_to_trust(certs: Path, write_profile: WriteProfile) -> None:
    path = write_profile(with_security("  suite: edelivery-as4-1.15\n"))

    assert problems(path, certs) == [
        f"{path}:7:1 security: expected signing_certificate, signing_certificates, or trust_anchor with "
        "subject: without one, no signature of the partner can be verified"
    ]


def test_trust_anchor_needs_a_subject_and_an_encryption_certificate(
    certs: Path, write_profile: WriteProfile
) -> None:
    path = write_profile(with_security("  trust_anchor: ca.crt.pem\n"))

    assert problems(path, certs) == [
        f"{path}:7:1 security: expected trust_anchor and subject together: a CA is trusted only for one subject"
    ]
    path = write_profile(with_security("  trust_anchor: ca.crt.pem\n  subject: '.*CN=CH-SWISSMEDIC'\n"))
    assert problems(path, certs) == [
        f"{path}:7:1 security: expected encryption_certificate: with only a trust_anchor there is nothing to "
        "encrypt for"
    ]


def test_trust_anchor_with_subject(certs: Path, write_profile: WriteProfile) -> None:
    text = with_security(
        "  trust_anchor: ca.crt.pem\n  subject: 'C=CH,O=Swissmedic,CN=CH-SWISSMEDIC'\n"
        "  encryption_certificate: ch-swissmedic.crt.pem\n"
    )
    registry = load_profiles(write_profile(text).parent, certificates_dir=certs, now=NOW)

    partner = Partners(registry, now=NOW).get("ch-swissmedic")

    assert partner.certificates.trust_anchor is not None
    assert partner.policy.trust_anchors == (partner.certificates.trust_anchor,)
    assert partner.policy.subject_pattern == "C=CH,O=Swissmedic,CN=CH-SWISSMEDIC"
    assert partner.policy.signing_certificates == ()
    partner.certificates.check(now=NOW)


def test_bad_subject_regex(certs: Path, write_profile: WriteProfile) -> None:
    path = write_profile(with_security("  trust_anchor: ca.crt.pem\n  subject: 'CN=(unclosed'\n"))

    found = problems(path, certs)

    assert found[0].startswith(f"{path}:9:3 security.subject: got 'CN=(unclosed', expected a regular expression")


def test_trust_anchor_must_be_a_ca(certs: Path, write_profile: WriteProfile) -> None:
    path = write_profile(
        with_security(
            "  trust_anchor: ch-swissmedic.crt.pem\n  subject: '.*CN=CH-SWISSMEDIC'\n  encryption_certificate: ch-swissmedic.crt.pem\n"
        )
    )

    [line] = problems(path, certs)

    assert line.startswith(f"{path}:8:3 security.trust_anchor: certificate {certs / 'ch-swissmedic.crt.pem'}")
    assert "is not a CA certificate" in line


def test_transport_and_payload_size(certs: Path, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL + "transport: pull\nmax_payload_bytes: 1048576\n")

    profile = load_profile(path, certificates_dir=certs)

    assert profile.transport is Transport.PULL and profile.max_payload_bytes == 1048576
    bad = write_profile(MINIMAL + "transport: carrier-pigeon\nmax_payload_bytes: 0\n")
    assert problems(bad, certs) == [
        f"{bad}:10:1 transport: got 'carrier-pigeon', expected one of: push, pull",
        f"{bad}:11:1 max_payload_bytes: got 0, expected a value greater than 0",
    ]


def test_pull_section_defaults_and_checks(certs: Path, write_profile: WriteProfile) -> None:
    pushed = load_profile(write_profile(MINIMAL), certificates_dir=certs)
    assert pushed.transport is Transport.PUSH and pushed.pull == Pull()
    assert (pushed.pull.mpc, pushed.pull.receive_by_pulling) == (DEFAULT_MPC, False)
    no_endpoint = MINIMAL.replace("endpoint: https://as4.example.org/as4\n", "")
    pulling = write_profile(no_endpoint + "transport: pull\npull:\n  mpc: urn:permits:mpc:ch\n")
    profile = load_profile(pulling, certificates_dir=certs)
    assert profile.endpoint is None and profile.pull.mpc == "urn:permits:mpc:ch"
    with pytest.raises(ProfileError, match="has no endpoint: it pulls our messages"):
        profile.endpoint_url  # noqa: B018
    (pushed_without,) = problems(write_profile(no_endpoint), certs)
    assert pushed_without.endswith(
        "expected endpoint: with transport: push (the default) we POST our messages to it"
    )
    bad = write_profile(MINIMAL + "pull:\n  mpc: not a uri\n  interval_seconds: 0.5\n")
    found = problems(bad, certs)
    assert any("pull.mpc" in line and "expected an absolute URI" in line for line in found), found
    assert any("pull.interval_seconds" in line and "greater than or equal to 1" in line for line in found), found
    both = write_profile(no_endpoint + "transport: pull\npull:\n  receive_by_pulling: true\n")
    assert any("pull.receive_by_pulling sends our PullRequests to it" in line for line in problems(both, certs))


def _write_key(path: Path, source: Path, passphrase: bytes | None) -> None:
    key = serialization.load_pem_private_key(source.read_bytes(), password=None)
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))


def test_tls_files_resolve_and_need_https(certs: Path, write_profile: WriteProfile, pki: DevPki) -> None:
    (certs / "bundle.pem").write_bytes((certs / "ca.crt.pem").read_bytes())
    _write_key(certs / "client.key.pem", pki.files_for("CH-SWISSMEDIC").key, b"the [keys] passphrase")
    tls = "tls:\n  ca_bundle: bundle.pem\n  client_certificate: ch-swissmedic.crt.pem\n  client_key: client.key.pem\n"

    profile = load_profile(
        write_profile(MINIMAL + tls),
        certificates_dir=certs,
        now=NOW,
        tls_passphrase=lambda: b"the [keys] passphrase",
    )

    assert profile.tls.ca_bundle == certs / "bundle.pem"
    assert profile.tls.client_key == certs / "client.key.pem"
    plain = write_profile(MINIMAL.replace("https://", "http://") + tls)
    assert problems(plain, certs, tls_passphrase=lambda: b"the [keys] passphrase") == [
        f"{plain}:6:1 endpoint: expected an https:// endpoint: tls settings apply to https only, "
        "got 'http://as4.example.org/as4'"
    ]


def test_a_tls_client_key_outside_the_certificates_folder_is_refused(
    certs: Path, write_profile: WriteProfile, tmp_path: Path
) -> None:
    """A profile must not put another private key of this host to use (the gateway's own keystore key)."""
    elsewhere = tmp_path / "keystore"
    elsewhere.mkdir()
    (elsewhere / "gateway.key.pem").write_text("the gateway's own key")
    for named in (str(elsewhere / "gateway.key.pem"), "../keystore/gateway.key.pem"):
        tls = f"tls:\n  client_certificate: ch-swissmedic.crt.pem\n  client_key: {named}\n"
        path = write_profile(MINIMAL + tls)
        [problem] = problems(path, certs)
        assert problem.startswith(f"{path}:12:3 tls.client_key: got {named!r}, which is outside {certs}")


def test_a_tls_client_key_must_open_as_tls_opens_it_and_be_the_certificates(
    certs: Path, write_profile: WriteProfile, pki: DevPki
) -> None:
    """Found when the profile is loaded or edited, not at the first send (where TLS asked for the passphrase on
    the terminal, or the message waited for retries until the administrator read the reason)."""
    tls = "tls:\n  client_certificate: ch-swissmedic.crt.pem\n  client_key: client.key.pem\n"
    path = write_profile(MINIMAL + tls)
    key_file = certs / "client.key.pem"
    own, other = pki.files_for("CH-SWISSMEDIC").key, pki.files_for("BE-FAMHP").key
    place = f"{path}:12:3 tls.client_key: private key file {key_file}"

    _write_key(key_file, other, None)
    [mismatch] = problems(path, certs)
    assert mismatch == (
        f"{place} is not the key of TLS client certificate "
        "'C=CH,O=Swissmedic,CN=CH-SWISSMEDIC'; name the key that certificate was issued for"
    )
    _write_key(key_file, own, b"right")
    [no_passphrase] = problems(path, certs)
    assert no_passphrase.startswith(f"{place} is encrypted and needs a passphrase; TLS opens it with the [keys]")
    assert "set [keys].passphrase_env or passphrase_file" in no_passphrase
    [wrong] = problems(path, certs, tls_passphrase=lambda: b"wrong")
    assert wrong.startswith(f"{place} cannot be loaded: wrong passphrase")
    assert load_profile(path, certificates_dir=certs, tls_passphrase=lambda: b"right").tls.client_key == key_file
    _write_key(key_file, own, None)  # TLS ignores the passphrase for a key stored unencrypted, so it is not read

    def unset() -> bytes:
        raise ConfigError("[keys].passphrase_env names the environment variable 'GW_PASS', which is not set")

    assert load_profile(path, certificates_dir=certs, tls_passphrase=unset).tls.client_key == key_file
    _write_key(key_file, own, b"right")
    [unreadable] = problems(path, certs, tls_passphrase=unset)
    assert unreadable.startswith(f"{place} is encrypted and needs a passphrase; TLS opens it with the [keys] ")
    assert "'GW_PASS', which is not set" in unreadable


def test_tls_pair_and_bundle_content(certs: Path, write_profile: WriteProfile) -> None:
    (certs / "empty.pem").write_text("nothing here\n")
    path = write_profile(MINIMAL + "tls:\n  ca_bundle: empty.pem\n  client_certificate: ch-swissmedic.crt.pem\n")

    assert problems(path, certs) == [
        f"{path}:10:1 tls: expected client_certificate and client_key together (mutual TLS needs both)",
        f"{path}:11:3 tls.ca_bundle: CA bundle {certs / 'empty.pem'} holds no PEM certificates; expected one or more",
    ]


@pytest.mark.parametrize(
    ("delivery", "expected"),
    [
        ("  method: webhook\n", "expected url: delivery method webhook posts to a URL"),
        ("  method: rest-pull\n  url: https://n.example/in\n", "expected no url: delivery method rest-pull"),
        (
            "  method: soap\n  url: https://n.example/in\n  folder: in\n",
            "expected no folder: delivery method is soap",
        ),
    ],
)
def test_delivery_rules(delivery: str, expected: str, certs: Path, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL + "delivery:\n" + delivery)

    [line] = problems(path, certs)

    assert line.startswith(f"{path}:10:1 delivery: {expected}")


def test_delivery_url_scheme_and_folder(certs: Path, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL + "delivery:\n  method: webhook\n  url: ftp://n.example/in\n")
    [line] = problems(path, certs)
    assert line.startswith(f"{path}:12:3 delivery.url: got 'ftp://n.example/in', expected an http:// or https://")

    folder = write_profile(MINIMAL + "delivery:\n  folder: inbox/ch\n")
    profile = load_profile(folder, certificates_dir=certs)
    assert profile.delivery.method is DeliveryMethod.FOLDER
    assert profile.delivery.folder == folder.parent / "inbox/ch"


def test_every_action_must_be_a_known_document_type(certs: Path, write_profile: WriteProfile) -> None:
    path = write_profile(MINIMAL + "documents:\n  receive: [ImportAuthorization, http://example.org/test]\n")

    [line] = problems(path, certs)

    assert line.startswith(f"{path}:11:34 documents.receive[1]: got 'http://example.org/test', expected one of: ")


class TestEncryptionChoice:
    def test_newest_valid_certificate(self, certs: Path, write_profile: WriteProfile) -> None:
        text = with_security("  signing_certificates: [old.pem, soon.pem, ch-swissmedic.crt.pem, new.pem]\n")
        profile = load_profile(write_profile(text), certificates_dir=certs)

        at_now = resolve_certificates(profile, now=NOW)
        later = resolve_certificates(profile, now=NOW + timedelta(days=30))

        assert at_now.encryption.subject.rfc4514_string().endswith("CN=CH-SWISSMEDIC")
        assert later.encryption.subject.rfc4514_string() == "CN=CH-NEW"

    def test_policy_pins_every_certificate_and_knows_when_to_reload(
        self, certs: Path, write_profile: WriteProfile
    ) -> None:
        """Validity is checked per message, so the next certificate is trusted from its start without a reload
        (tests/profiles/test_rollover_pinning.py); the reload at changes_at chooses the encryption certificate."""
        text = with_security("  signing_certificates: [old.pem, soon.pem, new.pem]\n")
        registry = load_profiles(write_profile(text).parent, certificates_dir=certs)

        partners = Partners(registry, now=NOW)
        partner = partners.get("ch-swissmedic")

        pinned = [c.subject.rfc4514_string() for c in partner.policy.signing_certificates]
        assert pinned == ["CN=CH-OLD", "CN=CH-SOON", "CN=CH-NEW"]
        assert partners.changes_at == NOW + timedelta(days=10)

    def test_usable_needs_one_valid_signing_certificate(self, certs: Path, write_profile: WriteProfile) -> None:
        text = with_security("  signing_certificates: [old.pem, new.pem]\n  encryption_certificate: soon.pem\n")
        partners = Partners(load_profiles(write_profile(text).parent, certificates_dir=certs), now=NOW)
        partner = partners.get("ch-swissmedic")

        with pytest.raises(KeyMaterialError) as caught:
            partners.usable(partner, NOW)

        message = str(caught.value)
        assert message.startswith("partner 'ch-swissmedic' has no signing certificate valid now; ")
        assert "(CN=CH-OLD) expired on" in message and "(CN=CH-NEW) is not valid before" in message
        assert len(partner.policy.signing_certificates) == 2
        partners.usable(partner, NOW + timedelta(days=11))


class TestSchema:
    def test_schema_describes_the_model(self) -> None:
        schema = profile_json_schema()

        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert set(schema["required"]) == {"id", "authority_name", "country", "party_id", "security"}
        assert schema["additionalProperties"] is False
        security = schema["$defs"]["Security"]["properties"]
        assert {"signing_certificate", "signing_certificates", "trust_anchor", "subject"} <= set(security)
        assert schema["$defs"]["Transport"]["enum"] == ["push", "pull"]
        assert set(schema["$defs"]["Pull"]["properties"]) == {"mpc", "receive_by_pulling", "interval_seconds"}

    def test_shipped_schema_file_is_up_to_date(self) -> None:
        shipped = json.loads((DEMO_PROFILES / "profile.schema.json").read_text(encoding="utf-8"))

        assert shipped == profile_json_schema(), (
            "run: permit-gateway profiles schema -o partner_profiles/profile.schema.json"
        )


class TestTrustAnchorEndToEnd:
    """A profile trusting its CA for one subject verifies that partner's messages, not a sibling's."""

    def message_from(self, pki: DevPki, party_id: str) -> Outgoing:
        files = pki.files_for(party_id)
        sender = load_key_pair(files.key, files.certificate, None, now=NOW)
        user_message = UserMessage(
            message_id=f"{party_id.lower()}-1@test",
            timestamp=NOW,
            from_party=Party(party_ids=(PartyId(value=party_id),), role=ROLE_INITIATOR),
            to_party=Party(party_ids=(PartyId(value="BE-FAMHP"),), role=ROLE_RESPONDER),
            service="urn:permit-gateway:services:controlled-substances-trade",
            action="ImportAuthorization",
            conversation_id="c",
        )
        payload = Payload(content_id="p@test", mime_type="application/xml", data=b"<ImportAuthorization/>")
        return build_user_message(
            user_message, [payload], sender=sender, recipient_certificate=self.us(pki).certificate
        )

    def us(self, pki: DevPki) -> KeyPair:
        files = pki.files_for("BE-FAMHP")
        return load_key_pair(files.key, files.certificate, None, now=NOW)

    def policy(self, certs: Path, write_profile: WriteProfile) -> SecurityPolicy:
        text = with_security(
            "  trust_anchor: ca.crt.pem\n  subject: 'C=CH,O=Swissmedic,CN=CH-SWISSMEDIC'\n"
            "  encryption_certificate: ch-swissmedic.crt.pem\n"
        )
        registry = load_profiles(write_profile(text).parent, certificates_dir=certs, now=NOW)
        return Partners(registry, now=NOW).get("ch-swissmedic").policy

    def test_certificate_issued_by_the_anchor_to_the_subject_verifies(
        self, pki: DevPki, certs: Path, write_profile: WriteProfile
    ) -> None:
        policy = self.policy(certs, write_profile)
        sent = self.message_from(pki, "CH-SWISSMEDIC")

        received = parse_incoming(
            sent.content_type, sent.body, policy_for=lambda _: policy, keys=(self.us(pki),), now=NOW
        )

        assert received.payloads[0].data == b"<ImportAuthorization/>"

    def test_another_subject_of_the_same_ca_is_refused(
        self, pki: DevPki, certs: Path, write_profile: WriteProfile
    ) -> None:
        policy = self.policy(certs, write_profile)
        sent = self.message_from(pki, "DE-BFARM")

        with pytest.raises(EbmsError) as caught:
            parse_incoming(
                sent.content_type, sent.body, policy_for=lambda _: policy, keys=(self.us(pki),), now=NOW
            )

        assert caught.value.code.code == "EBMS:0101"
        assert "CN=DE-BFARM" in caught.value.detail
