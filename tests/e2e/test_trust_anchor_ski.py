"""A partner whose profile trusts its CA (trust_anchor, subject, encryption_certificate) and that signs as Domibus
does by default: the signature's KeyInfo names the certificate by SubjectKeyIdentifier and the message carries
no BinarySecurityToken of it (eDeliveryAS4Policy.xml, IncludeToken Never). The gateway finds the certificate in
the profile, checks it against the anchor and the subject, and accepts the message."""

from __future__ import annotations

import base64

import aiohttp
from cryptography import x509
from lxml import etree

from gateway.as4 import Payload, ReceiptReceived, SecurityPolicy, build_user_message, mime, parse_response
from gateway.as4._ns import BASE64_ENCODING, DS, WSSE, WSU, X509_SKI, q
from gateway.interfaces.demo import wait_for
from gateway.xmlsafe import parse_xml
from tests.e2e.conftest import Harness, example, permit_user_message

IA = "BE-IA-2026-0001.xml"


def _anchored_profile(harness: Harness) -> None:
    """Switzerland's profile for Belgium: nothing pinned, Belgium's CA and subject instead."""
    folder = harness.tmp / "ch-profiles"
    folder.mkdir()
    (folder / "be-famhp.yaml").write_text(
        "id: be-famhp\nauthority_name: Federal Agency for Medicines and Health Products\ncountry: BE\n"
        f"party_id: BE-FAMHP\nendpoint: http://127.0.0.1:{harness.ports['BE-FAMHP']}/as4\n"
        f"security:\n  trust_anchor: {harness.pki.ca_certificate.name}\n"
        "  subject: 'C=BE,O=Federal Agency for Medicines and Health Products,CN=BE-FAMHP'\n"
        "  encryption_certificate: be-famhp.crt.pem\n"
    )
    harness.profile_folders["CH-SWISSMEDIC"] = folder


def _as_domibus_signs(envelope: bytes, ski: bytes) -> bytes:
    """The signature's KeyInfo (outside SignedInfo) naming the signer by SubjectKeyIdentifier, its token gone."""
    root = parse_xml(envelope)
    ns = {"ds": DS, "wsse": WSSE}
    str_el = root.find(".//ds:Signature/ds:KeyInfo/wsse:SecurityTokenReference", ns)
    assert str_el is not None
    (reference,) = list(str_el)
    token_id = (reference.get("URI") or "").removeprefix("#")
    str_el.remove(reference)
    key_id = etree.SubElement(
        str_el, q(WSSE, "KeyIdentifier"), {"EncodingType": BASE64_ENCODING, "ValueType": X509_SKI}
    )
    key_id.text = base64.b64encode(ski).decode()
    (token,) = [t for t in root.iter(q(WSSE, "BinarySecurityToken")) if t.get(q(WSU, "Id")) == token_id]
    security = token.getparent()
    assert security is not None
    security.remove(token)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


async def test_a_domibus_style_signature_is_accepted_under_a_trust_anchor(
    harness: Harness, session: aiohttp.ClientSession
) -> None:
    _anchored_profile(harness)
    ch = await harness.start("CH-SWISSMEDIC")
    belgium, switzerland = harness.keys("BE-FAMHP"), harness.keys("CH-SWISSMEDIC")
    document = example(IA, today=harness.clock.now())
    sent = build_user_message(
        permit_user_message(harness, "ski-1@be-famhp.test"),
        [Payload(content_id="permit@be-famhp.test", mime_type="application/xml", data=document)],
        sender=belgium,
        recipient_certificate=switzerland.certificate,
    )
    package = mime.parse(sent.content_type, sent.body)
    ski = belgium.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    content_type, body = mime.build(_as_domibus_signs(package.envelope, ski), list(package.attachments.values()))

    async with session.post(f"{ch.url}/as4", data=body, headers={"Content-Type": content_type}) as response:
        assert response.status == 200, await response.text()
        answer_type, answer = response.headers["Content-Type"], await response.read()
    policy = SecurityPolicy(signing_certificates=(switzerland.certificate,))
    receipt = parse_response(answer_type, answer, sent=sent, policy=policy, now=harness.clock.now())
    assert isinstance(receipt, ReceiptReceived), receipt
    record = await wait_for(session, ch, "ski-1@be-famhp.test", "DELIVERED")
    assert record["state"] == "DELIVERED"
