"""A partner trusted through its CA (``trust_anchor``) with the CA's revocation list: a certificate the list
names is refused both ways, until the administrator puts the CA's next list in place."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.errors import KeyMaterialError
from gateway.interfaces.demo import message, wait_for
from gateway.interfaces.keys import NODE, PROFILE_WATCHER
from gateway.profiles.certificates import load_certificate
from gateway.profiles.devpki import DevPki
from tests.e2e.conftest import Harness, example, submit

IA = "BE-IA-2026-0001.xml"
BE, CH = "BE-FAMHP", "CH-SWISSMEDIC"


def write_crl(pki: DevPki, path: Path, now: datetime, *revoked: x509.Certificate) -> None:
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(load_certificate(pki.ca_certificate).subject)
        .last_update(now - timedelta(hours=1))
        .next_update(now + timedelta(days=7))
    )
    for cert in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(now).build()
        builder = builder.add_revoked_certificate(entry)
    path.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


@pytest.fixture
def crl_file(pki: DevPki) -> Iterator[Path]:
    path = pki.folder / f"ca-{uuid.uuid4().hex[:8]}.crl.pem"  # the certificates folder is the session's PKI
    yield path
    path.unlink(missing_ok=True)


async def test_a_revoked_partner_certificate_is_refused_both_ways_until_the_list_is_renewed(
    harness: Harness, session: aiohttp.ClientSession, pki: DevPki, crl_file: Path
) -> None:
    be_certificate = load_certificate(pki.files_for(BE).certificate)
    now = harness.clock.now()
    write_crl(pki, crl_file, now, be_certificate)
    profile = harness.tmp / "profiles" / "be-famhp.yaml"
    anchored = (
        f"security:\n  trust_anchor: {pki.ca_certificate.name}\n"
        f"  subject: '{re.escape(be_certificate.subject.rfc4514_string())}'\n"
        f"  encryption_certificate: {pki.files_for(BE).certificate.name}\n  revocation_list: {crl_file.name}\n"
    )
    profile.write_text(re.sub(r"security:\n(  .*\n)+", anchored, profile.read_text()))
    be, ch = await harness.start(BE), await harness.start(CH)

    status, body = await submit(session, be, example(IA, today=now))
    assert status == 202
    refused = await wait_for(session, be, body["message_id"], "FAILED")
    assert "error signal" in refused["last_error"] and "was revoked by its CA" in refused["last_error"]
    assert await message(session, ch, body["message_id"]) is None
    ch_node = ch.runner.app[NODE]
    with pytest.raises(KeyMaterialError, match=r"encryption certificate of partner 'be-famhp' .* was revoked"):
        ch_node.partners.usable(ch_node.partners.get("be-famhp"), now)  # nothing goes to BE either

    write_crl(pki, crl_file, now)  # the CA's next list: the certificate was reinstated
    assert ch.runner.app[PROFILE_WATCHER].reload("test: the revocation list was renewed")
    status, body = await submit(session, be, example(IA, today=now))  # the same document, sent again
    assert status in (200, 202)
    await wait_for(session, be, body["message_id"], "ACKNOWLEDGED")
