"""The send loop uses the partner profile's TLS settings: its CA bundle to trust the partner's server, and our
client certificate for mutual TLS. A partner that demands a client certificate refuses a sender without one."""

from __future__ import annotations

import ipaddress
import os
import pty
import select
import shutil
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.clock import FixedClock
from gateway.interfaces.demo import AUTHORITIES, Running, gateway_settings, start_gateway, wait_for
from gateway.profiles.devpki import DevPki
from gateway.settings import Settings
from tests.conftest import free_port
from tests.e2e.conftest import example


def _server_certificate(pki: DevPki, folder: Path) -> tuple[Path, Path]:
    """A TLS server certificate for 127.0.0.1, issued by the dev CA."""
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    ca = x509.load_pem_x509_certificate(pki.ca_certificate.read_bytes())
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "as4.ch.test")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = folder / "tls-server.crt.pem", folder / "tls-server.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class TlsFront:
    """An HTTPS front for the partner's gateway that demands a client certificate from the dev CA."""

    def __init__(self, pki: DevPki, folder: Path, real: str) -> None:
        cert, key = _server_certificate(pki, folder)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca_certificate))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_cert_chain(cert, key)
        self.real = real
        self.clients: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        self.clients.append(dict(x[0] for x in peer["subject"])["commonName"] if peer else "")
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.real}/as4",
                data=await request.read(),
                headers={"Content-Type": request.headers["Content-Type"]},
            ) as answer,
        ):
            body = await answer.read()
            return web.Response(
                status=answer.status, body=body, headers={"Content-Type": answer.headers["Content-Type"]}
            )


PROFILE = """\
id: {id}
authority_name: {name}
country: {country}
party_id: {party}
endpoint: {endpoint}
security:
  signing_certificate: {stem}.crt.pem
reception_awareness:
  retries: 3
  retry_delays_seconds: [60]
"""


@pytest.fixture
async def pair(
    tmp_path: Path, pki: DevPki, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Running, Running, TlsFront]]:
    be_port, ch_port, front_port = free_port(), free_port(), free_port()
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    certificates = tmp_path / "certificates"  # a copy: a test replaces a key in it
    shutil.copytree(pki.folder, certificates)
    endpoints = {
        "BE-FAMHP": f"http://127.0.0.1:{be_port}/as4",
        "CH-SWISSMEDIC": f"https://127.0.0.1:{front_port}/as4",
    }
    for authority in AUTHORITIES:
        stem = authority.party_id.lower()
        text = PROFILE.format(
            id=stem,
            name=authority.authority_name,
            country=authority.country,
            party=authority.party_id,
            endpoint=endpoints[authority.party_id],
            stem=stem,
        )
        if authority.party_id == "CH-SWISSMEDIC":
            text += f"tls:\n  ca_bundle: {pki.ca_certificate}\n"
            if request.param:
                files = pki.files_for("BE-FAMHP")
                text += f"  client_certificate: {files.certificate}\n  client_key: {files.key.name}\n"
        (profiles / f"{stem}.yaml").write_text(text)
    clock = FixedClock(datetime.now(UTC))
    be_settings, ch_settings = (
        _with_certificates(
            gateway_settings(a, pki, port=p, data_dir=tmp_path / "data", profiles=profiles), certificates
        )
        for a, p in zip(AUTHORITIES, (be_port, ch_port), strict=True)
    )
    be = await start_gateway("BE", be_settings, clock)
    ch = await start_gateway("CH", ch_settings, clock)
    front = TlsFront(pki, tmp_path, ch.url)
    app = web.Application()
    app.router.add_post("/as4", front.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", front_port, ssl_context=front.context).start()
    yield be, ch, front
    await runner.cleanup()
    await be.runner.cleanup()
    await ch.runner.cleanup()


def _with_certificates(settings: Settings, certificates: Path) -> Settings:
    return settings.model_copy(
        update={"profiles": settings.profiles.model_copy(update={"certificates": certificates})}
    )


async def _submit(session: aiohttp.ClientSession, be: Running) -> str:
    document = example("BE-IA-2026-0001.xml", today=datetime.now(UTC))
    async with session.post(f"{be.url}/api/v1/documents", data=document) as response:
        message_id: str = (await response.json())["message_id"]
        return message_id


@pytest.mark.parametrize("pair", [True], indirect=True)
async def test_mutual_tls_with_the_profile_client_certificate(pair: tuple[Running, Running, TlsFront]) -> None:
    be, ch, front = pair
    async with aiohttp.ClientSession() as session:
        message_id = await _submit(session, be)
        await wait_for(session, be, message_id, "ACKNOWLEDGED")
        await wait_for(session, ch, message_id, "DELIVERED")
    assert front.clients == ["BE-FAMHP"]


@pytest.mark.parametrize("pair", [False], indirect=True)
async def test_without_a_client_certificate_the_partner_refuses_the_connection(
    pair: tuple[Running, Running, TlsFront],
) -> None:
    be, _, front = pair
    async with aiohttp.ClientSession() as session:
        message_id = await _submit(session, be)
        waiting = await wait_for(session, be, message_id, "RETRY_WAIT")
    # TLS 1.3 reports the missing client certificate after the handshake, as a reset: either way nothing got in
    assert any(word in waiting["last_error"] for word in ("SSL", "Connection reset"))
    assert front.clients == []


@pytest.mark.parametrize("pair", [True], indirect=True)
async def test_a_client_key_replaced_by_another_is_a_retry_naming_the_tls_settings(
    pair: tuple[Running, Running, TlsFront], tmp_path: Path, pki: DevPki
) -> None:
    """A key replaced on disk after the profile loaded (the reload that would check it is refused): the TLS
    context cannot be built, and the message waits for its retry with the reason, instead of staying SENDING
    until its lease runs out, again and again."""
    be, _, front = pair
    (tmp_path / "certificates" / pki.files_for("BE-FAMHP").key.name).write_bytes(
        pki.files_for("CH-SWISSMEDIC").key.read_bytes()
    )
    async with aiohttp.ClientSession() as session:
        message_id = await _submit(session, be)
        waiting = await wait_for(session, be, message_id, "RETRY_WAIT")
    assert "the profile's TLS settings cannot be used" in waiting["last_error"]
    assert "tls.client_key" in waiting["last_error"]
    assert front.clients == []


def test_an_encrypted_client_key_without_a_passphrase_is_refused_not_asked_for_on_the_terminal(
    tmp_path: Path, pki: DevPki
) -> None:
    """With password=None OpenSSL asks on the controlling terminal and the gateway's event loop waits there. Run
    in a child on a pseudo-terminal, so the prompt would show; it must fail at once instead."""
    files = pki.files_for("BE-FAMHP")
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    encrypted = tmp_path / "client.key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    code = (
        "import ssl, sys\n"
        "from gateway.outbound.tls import ssl_context\n"
        "from gateway.profiles.model import Tls\n"
        f"tls = Tls(client_certificate={str(files.certificate)!r}, client_key={str(encrypted)!r})\n"
        "try:\n    ssl_context(tls, None)\nexcept ssl.SSLError:\n    print('REFUSED', flush=True)\n"
    )
    pid, terminal = pty.fork()
    if pid == 0:  # the child: exec at once, nothing of pytest's state is used
        os.execv(sys.executable, [sys.executable, "-c", code])
    output = b""
    deadline = time.monotonic() + 20
    try:
        while b"REFUSED" not in output and b"pass phrase" not in output and time.monotonic() < deadline:
            if select.select([terminal], [], [], 0.5)[0]:
                try:
                    output += os.read(terminal, 1024)
                except OSError:  # the child is gone
                    break
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(terminal)
    assert b"pass phrase" not in output and b"REFUSED" in output, output
