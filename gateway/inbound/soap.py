"""SOAP delivery: each received permit goes to the national system's ``DeliverPermit`` operation.

The service contract is ``schemas/wsdl/national-delivery.wsdl`` (shipped in the wheel beside the XSDs). The
WSDL is read once from our package data with a hardened zeep (no DTD, no entities, no external access,
strict), never from the network; the binding address is the partner profile's ``delivery.url``. zeep's
client is synchronous (requests, whose connection pool is thread-safe), so each call runs in a worker thread
off the event loop; the simplest robust choice, as zeep's async transport would need httpx besides aiohttp.
Each delivery URL has threads of its own, so a national service that hangs holds up only the calls made to it.
"""

from __future__ import annotations

import asyncio
import functools
import re
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import requests
import zeep
import zeep.exceptions
from zeep.transports import Transport
from zeep.xsd import SkipValue

from gateway.profiles.model import SoapContract
from gateway.store import MessageRecord
from gateway.xmlsafe import schema_root

WSDL_FILE = "national-delivery.wsdl"
BINDING = "{urn:permit-gateway:national-delivery:1}NationalDeliverySoap11"
WSDL_LOAD_TIMEOUT = 10.0
SOAP_THREADS = 16
"""zeep blocks a thread per call: each delivery URL has up to this many threads of its own (a partner's
deliveries in flight, ``deliver.PER_PARTNER``), started as calls need them. A national SOAP service that hangs
holds only its URL's, never another URL's (one pool for all let one hung endpoint hold every thread, and another
partner's permits waited for its time-outs) nor the threads that store received messages and write files."""
SOAP_URLS = 32
"""Thread pools kept for this many delivery URLs, the least recently used dropped beyond (its calls in flight
finish): an administrator who changes a partner's delivery.url again and again, or tries URLs, does not leave
a pool of idle threads behind for each."""
REFUSED_ELEMENT = re.compile(
    r"unexpected element|not expected|invalid child element|invalid content", re.IGNORECASE
)
"""How XSD validators (libxml2, Xerces/JAXB, .NET) word a Fault about an element the schema does not have."""


class SoapDeliveryFailed(Exception):
    """The national system did not take the permit: a SOAP Fault, an HTTP error, a timeout, a bad answer."""


def wsdl_path() -> Path:
    """The national delivery WSDL, found where the XSDs are (the wheel's ``_schemas``, or the checkout)."""
    return schema_root().parent / "wsdl" / WSDL_FILE


def hardened_settings() -> zeep.Settings:
    # force_https would rewrite an http:// delivery.url only because the WSDL came from a file; the profile
    # decides the scheme.
    return zeep.Settings(
        strict=True,
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
        xml_huge_tree=False,
        force_https=False,
    )


def deliver_permit_request(
    record: MessageRecord, document: bytes, contract: SoapContract = SoapContract.V1_2
) -> dict[str, Any]:
    """The ``DeliverPermit`` body: the AS4 metadata and the document bytes (zeep encodes them base64).

    Under the 1.1 contract the body has no DeliveryId, as the 1.1 XSD has none (SkipValue: the one WSDL the
    gateway ships, 1.3, requires it); only the 1.3 contract gets Findings, and only when there are some."""
    from gateway.inbound.deliver import delivery_id  # deliver imports this module

    metadata = {
        "MessageId": record.message_id,
        "DeliveryId": delivery_id(record) if contract is not SoapContract.V1_1 else SkipValue,
        "Findings": _findings(record) if contract is SoapContract.V1_3 else None,
        "ConversationId": record.conversation_id,
        "RefToMessageId": record.ref_to_message_id,
        "FromParty": record.from_party,
        "ToParty": record.to_party,
        "PartnerId": record.partner_id,
        "Service": record.service,
        "Action": record.action,
        "DocumentType": record.document_type,
        "DocumentNumber": record.document_number,
        "MimeType": record.payload_mime_type,
        "PayloadSha256": record.payload_sha256,
        "ReceivedAt": record.created_at,
        "Attachments": len(record.attachments) if record.attachments else None,
    }
    return {"Metadata": metadata, "Document": document}


def _findings(record: MessageRecord) -> dict[str, Any] | None:
    """Metadata/Findings of contract 1.3; None (left out) when the permit was accepted without any."""
    if not record.findings:
        return None
    return {
        "Finding": [
            {
                "Rule": f["rule"],
                "Severity": f["severity"],
                "Text": f["text"],
                "Message": f["message"],
                "Hint": f.get("hint"),
                "Basis": f.get("basis"),
                "Path": f.get("path"),
                "Line": f.get("line"),
                "Column": f.get("column"),
            }
            for f in record.findings
        ]
    }


class SoapDelivery:
    """Calls ``DeliverPermit`` at a URL; returns the national reference or raises ``SoapDeliveryFailed``."""

    def __init__(self, *, timeout: float) -> None:
        self._timeout = timeout
        self._threads: dict[str, ThreadPoolExecutor] = {}

    async def deliver(
        self, url: str, record: MessageRecord, document: bytes, contract: SoapContract = SoapContract.V1_2
    ) -> str:
        """``contract``: the partner profile's ``delivery.soap_contract``."""
        threads = self._threads_for(url)
        call = functools.partial(self._call, url, record, document, contract)
        return await asyncio.get_running_loop().run_in_executor(threads, call)

    def _threads_for(self, url: str) -> ThreadPoolExecutor:
        threads = self._threads.pop(url, None)
        if threads is None:
            threads = ThreadPoolExecutor(max_workers=SOAP_THREADS, thread_name_prefix="soap-delivery")
        self._threads[url] = threads  # the most recently used last
        while len(self._threads) > SOAP_URLS:
            oldest = next(iter(self._threads))
            self._threads.pop(oldest).shutdown(wait=False)  # its calls queued and in flight still run
        return threads

    def close(self) -> None:
        """Calls not started are dropped (their messages are delivered again when their claims run out)."""
        for threads in self._threads.values():
            threads.shutdown(wait=False, cancel_futures=True)

    def _call(self, url: str, record: MessageRecord, document: bytes, contract: SoapContract) -> str:
        service = _client(self._timeout).create_service(BINDING, url)  # type: ignore[no-untyped-call]
        try:
            answer = service.DeliverPermit(**deliver_permit_request(record, document, contract))
        except zeep.exceptions.Fault as fault:
            reason = f"SOAP {url} answered with a Fault: {fault.code}: {fault.message}"
            advice = _contract_advice(fault, contract, record.partner_id)
            raise SoapDeliveryFailed(reason.rstrip(". ") + advice if advice else reason) from None
        except zeep.exceptions.TransportError as exc:
            raise SoapDeliveryFailed(f"SOAP {url} answered HTTP {exc.status_code}") from None
        except requests.RequestException as exc:
            raise SoapDeliveryFailed(f"SOAP {url}: {_request_failure(exc)}") from None
        except zeep.exceptions.Error as exc:
            raise SoapDeliveryFailed(f"SOAP {url}: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # zeep reads some malformed answers (an empty Body, none) into errors of its own
            raise SoapDeliveryFailed(
                f"SOAP {url}: unreadable answer: {type(exc).__name__}; national-delivery.wsdl wants a SOAP 1.1 "
                "Envelope whose Body holds one DeliverPermitResponse"
            ) from None
        if not isinstance(answer, str) or not answer.strip():
            raise SoapDeliveryFailed(f"SOAP {url} answered without a NationalReference")
        return answer


def _request_failure(exc: requests.RequestException) -> str:
    """The exception's type and the reason under it, never requests' own text: that names the URL's path and
    query ("Max retries exceeded with url: /deliver?api_key=..."), and a query may carry the service's credential."""
    reason: BaseException = exc
    while True:
        inner = reason.args[0] if reason.args and isinstance(reason.args[0], BaseException) else None
        inner = getattr(reason, "reason", None) if inner is None else inner
        if not isinstance(inner, BaseException) or inner is reason:
            break
        reason = inner
    if reason is exc:
        return type(exc).__name__
    return f"{type(exc).__name__}: {type(reason).__name__}: {reason}"


def _contract_advice(fault: zeep.exceptions.Fault, contract: SoapContract, partner_id: str) -> str:
    """What to do when the Fault says the service is on the other contract version; empty when it does not."""
    said = " ".join(
        [str(fault.message or "")] + (list(fault.detail.itertext()) if fault.detail is not None else [])
    )
    profile = f"partner profile {partner_id!r}"
    refused = REFUSED_ELEMENT.search(said) is not None
    # a 1.2 service refuses Findings; a 1.1 one refuses DeliveryId first, which stands before them
    if contract is SoapContract.V1_3 and refused and "DeliveryId" not in said:
        return (
            ". A national service built on the 1.2 contract of national-delivery.wsdl refuses Metadata/Findings "
            f'(new in 1.3): set delivery.soap_contract: "1.2" in {profile} (or remove it) to leave them out, or '
            "upgrade the national service to the 1.3 WSDL (schemas/wsdl/national-delivery.wsdl); the permit is "
            "delivered again at the next attempt"
        )
    # under 1.2 only a refused element, so that a 1.2 service's own complaint about a DeliveryId gets no advice
    if contract is not SoapContract.V1_1 and refused:
        return (
            ". A national service built on the 1.1 contract of national-delivery.wsdl refuses Metadata/DeliveryId "
            f'(new in 1.2): set delivery.soap_contract: "1.1" in {profile} to leave it out (the service then keys '
            "on FromParty + MessageId), or upgrade the national service to the 1.2 WSDL "
            "(schemas/wsdl/national-delivery.wsdl); the permit is delivered again at the next attempt"
        )
    if contract is SoapContract.V1_1 and "DeliveryId" in said:
        return (
            ". The national service wants Metadata/DeliveryId (contract 1.2 of national-delivery.wsdl), which "
            f'delivery.soap_contract: "1.1" in {profile} leaves out: set it to "1.2" (or remove it); the permit is '
            "delivered again at the next attempt"
        )
    return ""


@cache
def _client(timeout: float) -> zeep.Client:
    """One parsed WSDL and HTTP session per timeout; services for each URL are cheap views on it."""
    transport = Transport(timeout=WSDL_LOAD_TIMEOUT, operation_timeout=timeout)  # type: ignore[no-untyped-call]
    return zeep.Client(  # type: ignore[no-untyped-call]
        str(wsdl_path()), transport=transport, settings=hardened_settings()
    )
