"""Rolling our own key over with messages in flight: nothing encrypted for the old key is lost, and receipts
signed with the new key verify at a partner whose profile of us lists both certificates."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from gateway.as4 import (
    ROLE_INITIATOR,
    ROLE_RESPONDER,
    EbmsError,
    KeyPair,
    Outgoing,
    Party,
    PartyId,
    Payload,
    ReceiptReceived,
    SecurityPolicy,
    UserMessage,
    build_receipt,
    build_user_message,
    parse_incoming,
    parse_response,
)
from gateway.profiles import DevPki, load_profiles
from gateway.profiles.keystore import Keystore, generate_key, rollover, subject_name
from gateway.profiles.trust import Partners, load_key_pair

from .conftest import NOW
from .helpers import profile_text

PASSPHRASE = b"rollover"
PERMIT = b'<?xml version="1.0"?><ImportAuthorization xmlns="urn:test">in flight</ImportAuthorization>'


def message_to_us(sender: KeyPair, our_certificate: KeyPair | Keystore, number: int) -> Outgoing:
    """What the Swiss partner sends us, encrypted for the certificate it has of us."""
    certificate = (
        our_certificate.signing.certificate
        if isinstance(our_certificate, Keystore)
        else our_certificate.certificate
    )
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
    return build_user_message(user_message, [payload], sender=sender, recipient_certificate=certificate)


class World:
    """Us (a keystore), the Swiss partner (dev PKI key), and the Swiss profile of us listing our certificates."""

    def __init__(self, tmp_path: Path, pki: DevPki, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("gateway.profiles.keystore.GENERATED_KEY_BITS", 2048)
        self.tmp = tmp_path
        self.keystore_folder = tmp_path / "keystore"
        subject = subject_name("BE-FAMHP", "FAMHP", "BE")
        self.old = generate_key(self.keystore_folder, PASSPHRASE, subject=subject, now=NOW)
        self.new = generate_key(self.keystore_folder, PASSPHRASE, subject=subject, now=NOW)
        files = pki.files_for("CH-SWISSMEDIC")
        self.swiss = load_key_pair(files.key, files.certificate, None, now=NOW)
        self.policy_of_swiss = SecurityPolicy(signing_certificates=(self.swiss.certificate,))

    def keystore(self) -> Keystore:
        return Keystore.open(self.keystore_folder, PASSPHRASE)

    def swiss_profile_of_us(self, *key_ids: str) -> SecurityPolicy:
        """The policy the Swiss gateway derives from its profile of us (loaded by our own loader)."""
        folder = self.tmp / f"swiss-profiles-{len(key_ids)}"
        folder.mkdir(exist_ok=True)
        names = ", ".join(f"{key_id}.crt.pem" for key_id in key_ids)
        text = profile_text("be-famhp", "unused", country="BE").replace(
            "  signing_certificate: unused\n", f"  signing_certificates: [{names}]\n"
        )
        (folder / "be-famhp.yaml").write_text(text)
        partners = Partners(load_profiles(folder, certificates_dir=self.keystore_folder), now=NOW)
        return partners.get("be-famhp").policy

    def receive(self, keystore: Keystore, sent: Outgoing) -> Outgoing:
        """Our receive path: decrypt with every key we hold, answer with a receipt signed by the current key."""
        received = parse_incoming(
            sent.content_type,
            sent.body,
            policy_for=lambda _: self.policy_of_swiss,
            keys=keystore.decryption,
            now=NOW,
        )
        assert received.payloads[0].data == PERMIT
        return build_receipt(
            received.user_message.message_id,
            received.references,
            key=keystore.signing,
            message_id=f"r-{uuid.uuid4()}@be.test",
            now=NOW,
        )


@pytest.fixture
def world(tmp_path: Path, pki: DevPki, monkeypatch: pytest.MonkeyPatch) -> World:
    return World(tmp_path, pki, monkeypatch)


def test_message_encrypted_for_the_old_key_still_decrypts_after_rollover(world: World) -> None:
    before = world.keystore()
    in_flight = message_to_us(world.swiss, before, 1)

    after = rollover(world.keystore_folder, PASSPHRASE, now=NOW)

    assert after.signing.certificate == world.new.certificate
    receipt = world.receive(after, in_flight)
    both = world.swiss_profile_of_us(world.old.record.id, world.new.record.id)
    answer = parse_response(receipt.content_type, receipt.body, sent=in_flight, policy=both, now=NOW)
    assert isinstance(answer, ReceiptReceived)
    assert answer.ref_to_message_id == in_flight.message_id


def test_partner_may_encrypt_for_the_next_key_before_we_roll_over(world: World) -> None:
    next_key = world.keystore().next
    assert next_key is not None

    early = message_to_us(world.swiss, next_key, 2)
    receipt = world.receive(world.keystore(), early)

    both = world.swiss_profile_of_us(world.old.record.id, world.new.record.id)
    assert isinstance(
        parse_response(receipt.content_type, receipt.body, sent=early, policy=both, now=NOW), ReceiptReceived
    )


def test_receipt_from_the_new_key_needs_the_new_certificate_in_the_partner_profile(world: World) -> None:
    sent = message_to_us(world.swiss, world.keystore(), 3)
    after = rollover(world.keystore_folder, PASSPHRASE, now=NOW)
    receipt = world.receive(after, sent)

    only_old = world.swiss_profile_of_us(world.old.record.id)

    with pytest.raises(EbmsError) as caught:
        parse_response(receipt.content_type, receipt.body, sent=sent, policy=only_old, now=NOW)
    assert caught.value.code.code == "EBMS:0302"
    assert "is not among the certificates pinned in the partner profile" in caught.value.detail


def test_after_a_second_rollover_the_oldest_key_no_longer_decrypts(world: World) -> None:
    in_flight = message_to_us(world.swiss, world.keystore(), 4)
    rollover(world.keystore_folder, PASSPHRASE, now=NOW)
    generate_key(world.keystore_folder, PASSPHRASE, subject=subject_name("BE-FAMHP", "FAMHP", "BE"), now=NOW)
    twice = rollover(world.keystore_folder, PASSPHRASE, now=NOW)

    with pytest.raises(EbmsError) as caught:
        world.receive(twice, in_flight)
    assert caught.value.code.code == "EBMS:0102"
    assert "not one of our current keys" in caught.value.detail
