"""Our keys per eDelivery AS4 suite: 1.15 (RSA), 2.0 (Ed25519 + X25519) and 2.0-ecc (ECDSA + ECDH P-256), each
with its own current/next/previous, encrypted at rest; rollover per suite with messages in flight."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

from gateway.as4 import (
    ROLE_INITIATOR,
    ROLE_RESPONDER,
    EbmsCode,
    EbmsError,
    KeyPair,
    Outgoing,
    Party,
    PartyId,
    Payload,
    ReceiptReceived,
    SecurityPolicy,
    Suite,
    UserMessage,
    build_receipt,
    build_user_message,
    parse_incoming,
    parse_response,
)
from gateway.errors import ConfigError, KeyMaterialError
from gateway.profiles import DevPki
from gateway.profiles.certificates import load_certificate, load_private_key
from gateway.profiles.keystore import (
    Keystore,
    OwnKeys,
    generate_key,
    import_key,
    list_keys,
    load_own_keys,
    rollover,
    subject_name,
)
from gateway.profiles.suitekeys import suite_pair
from gateway.settings import KeySettings, SuiteKeyFiles, settings_from_dict

from .conftest import NOW

PASSPHRASE = b"correct horse battery staple"
SUBJECT = subject_name("BE-FAMHP", "Federal Agency for Medicines and Health Products", "BE")
PERMIT = b"<ImportAuthorization>suite keys</ImportAuthorization>"
TYPES = {
    Suite.EDELIVERY_1_15: (rsa.RSAPrivateKey, type(None)),
    Suite.EDELIVERY_2_0: (ed25519.Ed25519PrivateKey, x25519.X25519PrivateKey),
    Suite.EDELIVERY_2_0_ECC: (ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey),
}
SUITES_2_0 = [Suite.EDELIVERY_2_0, Suite.EDELIVERY_2_0_ECC]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr("gateway.profiles.keystore.GENERATED_KEY_BITS", 2048)
    return tmp_path / "keystore"


def test_each_suite_has_its_own_current_key_of_the_right_types(folder: Path) -> None:
    for suite in Suite:
        info = generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW, suite=suite)
        assert info.record.status.value == "current" and info.record.suite is suite

    keystore = Keystore.open(folder, PASSPHRASE)
    assert keystore.suites == tuple(Suite)
    for suite, (signing_type, agreement_type) in TYPES.items():
        pair = keystore.signing_for(suite)
        assert isinstance(pair.private_key, signing_type)
        assert isinstance(pair.agreement_key, agreement_type)
        assert keystore.decryption_for(suite) == (pair,)
    own = OwnKeys.of(keystore)
    assert own.signing is keystore.signing_for(Suite.EDELIVERY_1_15)
    assert set(own.decryption) == set(Suite)
    purposes = [purpose for purpose, _ in keystore.own_certificates()]
    assert purposes == [
        "current",
        "current edelivery-as4-2.0 signing",
        "current edelivery-as4-2.0 agreement",
        "current edelivery-as4-2.0-ecc signing",
        "current edelivery-as4-2.0-ecc agreement",
    ]


@pytest.mark.parametrize("suite", SUITES_2_0, ids=lambda s: s.value)
def test_a_2_0_agreement_key_is_encrypted_at_rest_and_certified_by_the_signing_key(
    folder: Path, suite: Suite
) -> None:
    info = generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW, suite=suite)
    key_id = info.record.id
    for name in (f"{key_id}.key.pem", f"{key_id}.agreement.key.pem"):
        assert b"ENCRYPTED PRIVATE KEY" in (folder / name).read_bytes()
        assert (folder / name).stat().st_mode & 0o077 == 0
    assert info.agreement_certificate is not None
    info.agreement_certificate.verify_directly_issued_by(info.certificate)
    assert (folder / f"{key_id}.csr.pem").is_file()
    assert (folder / f"{key_id}.agreement.csr.pem").is_file() is (suite is Suite.EDELIVERY_2_0_ECC)
    with pytest.raises(KeyMaterialError, match="wrong passphrase"):
        Keystore.open(folder, b"not the passphrase")


def test_statuses_and_rollover_stay_within_a_suite(folder: Path) -> None:
    rsa_current = generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    rsa_next = generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    ed_current = generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW, suite=Suite.EDELIVERY_2_0)
    ed_next = generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW, suite=Suite.EDELIVERY_2_0)
    assert (ed_current.record.status.value, ed_next.record.status.value) == ("current", "next")
    with pytest.raises(KeyMaterialError, match=r"has a next key already .*suite edelivery-as4-2.0\)"):
        generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW, suite=Suite.EDELIVERY_2_0)
    with pytest.raises(KeyMaterialError, match=r"no next key for suite edelivery-as4-2\.0-ecc.*--suite"):
        rollover(folder, PASSPHRASE, now=NOW, suite=Suite.EDELIVERY_2_0_ECC)

    after = rollover(folder, PASSPHRASE, now=NOW, suite=Suite.EDELIVERY_2_0)

    assert after.signing_for(Suite.EDELIVERY_2_0).certificate == ed_next.certificate
    assert [k.certificate for k in after.decryption_for(Suite.EDELIVERY_2_0)] == [
        ed_next.certificate,
        ed_current.certificate,
    ]
    assert after.signing.certificate == rsa_current.certificate
    assert after.next is not None and after.next.certificate == rsa_next.certificate
    statuses = {k.record.id: (k.record.suite.value, k.record.status.value) for k in list_keys(folder)}
    assert statuses == {
        rsa_current.record.id: ("edelivery-as4-1.15", "current"),
        rsa_next.record.id: ("edelivery-as4-1.15", "next"),
        ed_current.record.id: ("edelivery-as4-2.0", "previous"),
        ed_next.record.id: ("edelivery-as4-2.0", "current"),
    }


def test_an_index_written_before_suites_reads_as_1_15_and_keeps_working(folder: Path) -> None:
    generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    index = folder / "keystore.json"
    old = json.loads(index.read_text())
    for record in old["keys"]:
        del record["suite"]
    index.write_text(json.dumps(old))

    keystore = Keystore.open(folder, PASSPHRASE)
    assert keystore.suites == (Suite.EDELIVERY_1_15,)
    generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW, suite=Suite.EDELIVERY_2_0)
    assert [r["suite"] for r in json.loads(index.read_text())["keys"]] == [
        "edelivery-as4-1.15",
        "edelivery-as4-2.0",
    ]
    assert Keystore.open(folder, PASSPHRASE).signing.certificate == keystore.signing.certificate


def test_a_keystore_without_a_2_0_key_names_the_command_that_adds_one(folder: Path) -> None:
    generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    own = OwnKeys.of(Keystore.open(folder, PASSPHRASE))
    with pytest.raises(KeyMaterialError) as caught:
        own.signing_for(Suite.EDELIVERY_2_0, partner="ch-swissmedic")
    assert str(caught.value) == (
        "partner 'ch-swissmedic' uses security suite edelivery-as4-2.0, and this gateway has no "
        "edelivery-as4-2.0 key (an Ed25519 signing key and an X25519 agreement key); add one: "
        "'permit-gateway keys generate --suite edelivery-as4-2.0' or 'keys import --suite edelivery-as4-2.0'"
    )


@pytest.mark.parametrize("suite", SUITES_2_0, ids=lambda s: s.value)
def test_import_of_2_0_keys_checks_every_key(folder: Path, pki: DevPki, suite: Suite) -> None:
    files = pki.files_for("BE-FAMHP").suites[suite]
    info = import_key(
        folder,
        PASSPHRASE,
        key_file=files.key,
        certificate_file=files.certificate,
        agreement_key_file=files.agreement_key,
        agreement_certificate_file=files.agreement_certificate,
        key_passphrase=None,
        now=NOW,
        suite=suite,
    )
    assert info.record.suite is suite and info.record.origin == "imported"
    assert Keystore.open(folder, PASSPHRASE).signing_for(suite).certificate == info.certificate
    with pytest.raises(KeyMaterialError, match="agreement key or its certificate is missing"):
        import_key(
            folder,
            PASSPHRASE,
            key_file=files.key,
            certificate_file=files.certificate,
            key_passphrase=None,
            now=NOW,
            suite=suite,
        )
    rsa_files = pki.files_for("BE-FAMHP")
    with pytest.raises(KeyMaterialError, match=f"suite {suite.value} needs .*; the signing key is an RSA key"):
        import_key(
            folder,
            PASSPHRASE,
            key_file=rsa_files.key,
            certificate_file=rsa_files.certificate,
            agreement_key_file=files.agreement_key,
            agreement_certificate_file=files.agreement_certificate,
            key_passphrase=None,
            now=NOW,
            suite=suite,
        )
    with pytest.raises(KeyMaterialError, match="certificate does not belong to the private key"):
        import_key(
            folder,
            PASSPHRASE,
            key_file=files.key,
            certificate_file=files.certificate,
            agreement_key_file=files.agreement_key,
            agreement_certificate_file=files.certificate,
            key_passphrase=None,
            now=NOW,
            suite=suite,
        )


def _message_to_us(sender: KeyPair, ours: KeyPair, suite: Suite, number: int) -> Outgoing:
    user_message = UserMessage(
        message_id=f"m{number}-{uuid.uuid4()}@ch.test",
        timestamp=NOW,
        from_party=Party(party_ids=(PartyId(value="CH-SWISSMEDIC"),), role=ROLE_INITIATOR),
        to_party=Party(party_ids=(PartyId(value="BE-FAMHP"),), role=ROLE_RESPONDER),
        service="urn:permit-gateway:services:controlled-substances-trade",
        action="ImportAuthorization",
        conversation_id="c1",
    )
    payload = Payload(content_id=f"p{number}@ch.test", mime_type="application/xml", data=PERMIT)
    return build_user_message(
        user_message, [payload], sender=sender, recipient_certificate=ours.encryption_certificate, suite=suite
    )


def _dev_keys(pki: DevPki, party_id: str, suite: Suite) -> KeyPair:
    files = pki.files_for(party_id).suites[suite]
    return suite_pair(
        suite,
        load_private_key(files.key, None),
        load_certificate(files.certificate),
        load_private_key(files.agreement_key, None),
        load_certificate(files.agreement_certificate),
        what="dev keys",
    )


@pytest.mark.parametrize("suite", SUITES_2_0, ids=lambda s: s.value)
def test_rollover_with_a_2_0_message_in_flight(folder: Path, pki: DevPki, suite: Suite) -> None:
    """The partner encrypted for our old agreement key; after the rollover we still decrypt it (only with our
    keys of that suite) and sign the receipt with the new signing key, which the partner verifies once its
    profile lists both certificates."""
    generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW)
    old = generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW, suite=suite)
    new = generate_key(folder, PASSPHRASE, subject=SUBJECT, now=NOW, suite=suite)
    swiss = _dev_keys(pki, "CH-SWISSMEDIC", suite)
    before = Keystore.open(folder, PASSPHRASE)
    in_flight = _message_to_us(swiss, before.signing_for(suite), suite, 1)
    early = _message_to_us(swiss, before.next_for(suite), suite, 2)  # type: ignore[arg-type]

    own = OwnKeys.of(rollover(folder, PASSPHRASE, now=NOW, suite=suite))

    assert own.signing_for(suite).certificate == new.certificate
    policy_of_swiss = SecurityPolicy.for_suite(suite, signing_certificates=(swiss.certificate,))
    both = SecurityPolicy.for_suite(suite, signing_certificates=(old.certificate, new.certificate))
    for sent in (in_flight, early):
        received = parse_incoming(
            sent.content_type, sent.body, policy_for=lambda _: policy_of_swiss, keys=own.decryption, now=NOW
        )
        assert received.payloads[0].data == PERMIT
        receipt = build_receipt(
            received.user_message.message_id,
            received.references,
            key=own.signing_for(suite),
            message_id=f"r-{uuid.uuid4()}@be.test",
            now=NOW,
            suite=suite,
        )
        answer = parse_response(receipt.content_type, receipt.body, sent=sent, policy=both, now=NOW)
        assert isinstance(answer, ReceiptReceived)
    only_rsa = {Suite.EDELIVERY_1_15: own.decryption[Suite.EDELIVERY_1_15]}
    with pytest.raises(EbmsError) as caught:
        parse_incoming(
            in_flight.content_type, in_flight.body, policy_for=lambda _: policy_of_swiss, keys=only_rsa, now=NOW
        )
    assert caught.value.code is EbmsCode.FAILED_DECRYPTION
    assert f"holds no {suite.value} key" in caught.value.detail


def test_2_0_keys_from_files_in_the_settings(pki: DevPki, tmp_path: Path) -> None:
    be = pki.files_for("BE-FAMHP")
    files = {
        suite: SuiteKeyFiles(
            private_key=found.key,
            certificate=found.certificate,
            agreement_key=found.agreement_key,
            agreement_certificate=found.agreement_certificate,
        )
        for suite, found in be.suites.items()
    }
    settings = KeySettings(
        private_key=be.key,
        certificate=be.certificate,
        edelivery_2_0=files[Suite.EDELIVERY_2_0],
        edelivery_2_0_ecc=files[Suite.EDELIVERY_2_0_ECC],
    )
    own = load_own_keys(settings, now=NOW)
    assert set(own.suites) == set(Suite)
    assert own.signing_for(Suite.EDELIVERY_2_0).encryption_certificate == load_certificate(
        be.suites[Suite.EDELIVERY_2_0].agreement_certificate
    )
    with pytest.raises(KeyMaterialError, match=r"no edelivery-as4-2\.0 key.*set \[keys\.edelivery_2_0\]"):
        load_own_keys(KeySettings(private_key=be.key, certificate=be.certificate), now=NOW).signing_for(
            Suite.EDELIVERY_2_0
        )
    swapped = files[Suite.EDELIVERY_2_0_ECC]
    with pytest.raises(KeyMaterialError, match=r"edelivery-as4-2\.0 needs an Ed25519 signing key"):
        load_own_keys(settings.model_copy(update={"edelivery_2_0": swapped}), now=NOW)
    with pytest.raises(ConfigError, match=r"\[keys.edelivery_2_0\] / \[keys.edelivery_2_0_ecc\] files or"):
        settings_from_dict(
            {
                "identity": {"party_id": "BE-FAMHP", "country": "BE", "authority_name": "FAMHP"},
                "keys": {
                    "keystore": "keystore",
                    "edelivery_2_0": {
                        "private_key": "a",
                        "certificate": "b",
                        "agreement_key": "c",
                        "agreement_certificate": "d",
                    },
                },
            },
            base=tmp_path,
        )
