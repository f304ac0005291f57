"""A national IT system on loopback implementing ``national-delivery.wsdl`` with lxml, for delivery tests.

It checks every request the way a strict consumer would: SOAP 1.1 envelope, the SOAPAction of the binding,
and the Body's ``DeliverPermit`` valid against the WSDL's schema. It keeps a permit once per DeliveryId (the
contract's idempotency key: two partners may send permits under one MessageId) and answers as told: ``"ok"``, ``"fault"`` (a SOAP Fault, HTTP 500) or
``"500"`` (a plain HTTP error).

``contract="1.1"`` makes it a service built on the 1.1 WSDL: it validates against the 1.1 XSD (a fixture copied
from git history), which has no DeliveryId, and keys on FromParty + MessageId, stored as the DeliveryId the
gateway would compute for them (the 1.2 contract's documented equivalence). ``contract="1.2"`` (the default)
validates against the 1.2 XSD (a fixture copied from git history), which has no Findings; ``contract="1.3"``
against the shipped XSD, and keeps the Findings it gets.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape

from aiohttp import web
from lxml import etree

from gateway.inbound.soap import wsdl_path

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
ND = "urn:permit-gateway:national-delivery:1"
SOAP_ACTION = '"urn:permit-gateway:national-delivery:1:DeliverPermit"'
PARSER = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
CONTRACT_1_1_XSD = Path(__file__).parents[1] / "fixtures" / "national-delivery" / "national-delivery-1.1.xsd"
CONTRACT_1_2_XSD = Path(__file__).parent / "contracts" / "national-delivery-1.2.xsd"


@dataclass(frozen=True)
class Delivered:
    delivery_id: str
    metadata: dict[str, str]
    """Metadata but its DeliveryId, which is ``delivery_id``, and its Findings, which are ``findings``."""
    document: bytes
    findings: list[dict[str, str]] | None = None
    """Each Metadata/Findings/Finding's children by name; None when the request had no Findings."""


@dataclass
class NationalSystem:
    url: str = ""
    contract: str = "1.2"
    answers: list[str] = field(default_factory=list)
    requests: int = 0
    deliveries: dict[str, Delivered] = field(default_factory=dict)
    """The permits kept, by DeliveryId."""
    references: dict[str, str] = field(default_factory=dict)
    """The NationalReference given, by DeliveryId."""
    invalid: list[str] = field(default_factory=list)

    @property
    def stored(self) -> dict[str, Delivered]:
        """The permits kept, by MessageId: for tests whose messages' MessageIds are unique."""
        by_message_id = {kept.metadata["MessageId"]: kept for kept in self.deliveries.values()}
        assert len(by_message_id) == len(self.deliveries), "permits share a MessageId: read deliveries"
        return by_message_id

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        problem = self._check(request, body)
        if problem is not None:
            self.invalid.append(problem)
            return _fault("soap:Client", problem)
        answer = self.answers.pop(0) if self.answers else "ok"
        if answer == "fault":
            return _fault("soap:Server", "the permit register is down for maintenance")
        if answer == "500":
            return web.Response(status=500, text="internal error", content_type="text/plain")
        call = etree.fromstring(body, PARSER).find(f"{{{SOAP11}}}Body/{{{ND}}}DeliverPermit")
        assert call is not None
        found = call.find(f"{{{ND}}}Metadata/{{{ND}}}Findings")
        findings = None if found is None else [_children(finding) for finding in found]
        metadata = _children(call.find(f"{{{ND}}}Metadata"))
        metadata.pop("Findings", None)
        document = base64.b64decode(call.findtext(f"{{{ND}}}Document") or "")
        key = metadata.pop("DeliveryId") if self.contract != "1.1" else _pair_key(metadata)
        if key not in self.references:
            self.deliveries[key] = Delivered(key, metadata, document, findings)
            self.references[key] = f"NAT-{len(self.references) + 1:04d}"
        return _answer(self.references[key])

    def _check(self, request: web.Request, body: bytes) -> str | None:
        if request.content_type != "text/xml":
            return f"Content-Type {request.content_type!r}, expected text/xml (SOAP 1.1)"
        if request.headers.get("SOAPAction") != SOAP_ACTION:
            return f"SOAPAction {request.headers.get('SOAPAction')!r}, expected {SOAP_ACTION}"
        envelope = etree.fromstring(body, PARSER)
        if envelope.tag != f"{{{SOAP11}}}Envelope":
            return f"root element {envelope.tag}, expected a SOAP 1.1 Envelope"
        children = list(envelope.iterfind(f"{{{SOAP11}}}Body/*"))
        if len(children) != 1:
            return f"the Body has {len(children)} child elements, expected 1"
        schema = _schema(self.contract)
        if not schema.validate(etree.ElementTree(children[0])):
            return (
                f"DeliverPermit is invalid against national-delivery.xsd {self.contract}: "
                f"{schema.error_log.last_error}"
            )
        return None


@cache
def _schema(contract: str) -> etree.XMLSchema:
    paths = {
        "1.1": CONTRACT_1_1_XSD,
        "1.2": CONTRACT_1_2_XSD,
        "1.3": wsdl_path().with_name("national-delivery.xsd"),
    }
    return etree.XMLSchema(etree.parse(str(paths[contract]), PARSER))


def _children(element: etree._Element | None) -> dict[str, str]:
    assert element is not None
    return {etree.QName(e).localname: e.text or "" for e in element}


def _pair_key(metadata: dict[str, str]) -> str:
    return hashlib.sha256(f"{metadata['FromParty']}\0{metadata['MessageId']}".encode()).hexdigest()


def _envelope(content: str) -> str:
    return f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body>{content}</soap:Body></soap:Envelope>'


def _answer(reference: str) -> web.Response:
    content = f'<nd:DeliverPermitResponse xmlns:nd="{ND}"><nd:NationalReference>{reference}</nd:NationalReference></nd:DeliverPermitResponse>'
    return web.Response(text=_envelope(content), content_type="text/xml", charset="utf-8")


def _fault(code: str, text: str) -> web.Response:
    content = f"<soap:Fault><faultcode>{code}</faultcode><faultstring>{escape(text)}</faultstring></soap:Fault>"
    return web.Response(status=500, text=_envelope(content), content_type="text/xml", charset="utf-8")


@asynccontextmanager
async def national_system(port: int, *, contract: str = "1.2") -> AsyncIterator[NationalSystem]:
    assert contract in ("1.1", "1.2", "1.3")
    system = NationalSystem(url=f"http://127.0.0.1:{port}/permit-gateway/delivery", contract=contract)
    app = web.Application()
    app.router.add_post("/permit-gateway/delivery", system.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield system
    finally:
        await runner.cleanup()
