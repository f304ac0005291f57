"""SOAP delivery to national services on either contract version (review fixes): 1.2 added Metadata/DeliveryId
in the same namespace, and a service validating against the 1.1 XSD answered every DeliverPermit with a Fault,
retried for ever. ``delivery.soap_contract: "1.1"`` leaves DeliveryId out; a Fault about it says which way to set
that, or to upgrade the service."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
import zeep
from aiohttp import web
from lxml import etree
from ruamel.yaml import YAML

from gateway.errors import ProfileError
from gateway.inbound.deliver import delivery_id
from gateway.inbound.soap import BINDING, SoapDelivery, SoapDeliveryFailed, hardened_settings, wsdl_path
from gateway.inbound.soap import deliver_permit_request as request_of
from gateway.profiles import ProfileRegistry, generate_dev_pki, load_profile
from gateway.profiles.model import Delivery, SoapContract
from gateway.store import MessageRecord, State
from tests.conftest import free_port
from tests.inbound.conftest import PERMIT, Inbound, partner
from tests.inbound.national import CONTRACT_1_1_XSD, NationalSystem, _fault, national_system
from tests.profiles.conftest import AUTHORITIES, MINIMAL, NOW

ND = "{urn:permit-gateway:national-delivery:1}"
SAME = "1@gateway.local"


def soap(url: str, **fields: str) -> dict[str, str]:
    return {"method": "soap", "url": url} | fields


async def deliver_all(url: str, setting: Delivery, records: list[MessageRecord]) -> list[str]:
    """Each record through SoapDelivery as the delivery worker calls it, with the profile's contract."""
    assert setting.url == url
    delivery = SoapDelivery(timeout=5.0)
    try:
        return [await delivery.deliver(url, r, PERMIT, setting.soap_contract) for r in records]
    finally:
        delivery.close()


@pytest.fixture
async def national_1_1() -> AsyncIterator[NationalSystem]:
    async with national_system(free_port(), contract="1.1") as system:
        yield system


@pytest.fixture
async def national_1_2() -> AsyncIterator[NationalSystem]:
    async with national_system(free_port()) as system:
        yield system


async def test_a_service_on_contract_1_1_takes_every_permit_when_the_profile_says_1_1(
    inbound: Inbound, national_1_1: NationalSystem
) -> None:
    ch = await inbound.accepted(1, message_id=SAME)
    de = await inbound.accepted(2, partner_id="de-bfarm", message_id=SAME)
    other = await inbound.accepted(3)
    setting = partner(delivery=soap(national_1_1.url, soap_contract="1.1")).delivery

    references = await deliver_all(national_1_1.url, setting, [ch, de, other, ch])

    assert national_1_1.invalid == [] and national_1_1.requests == 4
    assert references == ["NAT-0001", "NAT-0002", "NAT-0003", "NAT-0001"]  # a redelivery: the first reference
    # keyed on FromParty + MessageId, which is what DeliveryId stands for
    assert set(national_1_1.deliveries) == {delivery_id(ch), delivery_id(de), delivery_id(other)}
    assert {(d.metadata["FromParty"], d.metadata["MessageId"]) for d in national_1_1.deliveries.values()} == {
        ("CH-SWISSMEDIC", SAME),
        ("DE-BFARM", SAME),
        ("CH-SWISSMEDIC", other.message_id),
    }


async def test_a_service_on_contract_1_1_faults_and_the_reason_says_to_set_soap_contract(
    inbound: Inbound, national_1_1: NationalSystem
) -> None:
    record = await inbound.accepted(1)
    worker = inbound.worker(ProfileRegistry([partner(delivery=soap(national_1_1.url))]))

    assert await worker.drain() == 0

    assert (await inbound.store.get(record.id)).state is State.ACCEPTED and national_1_1.deliveries == {}
    [failed] = [e for e in await inbound.store.events(record.id) if e.kind == "delivery_failed"]
    reason = failed.detail["reason"]
    assert reason.startswith(
        f"SOAP {national_1_1.url} answered with a Fault: soap:Client: DeliverPermit is invalid"
    )
    assert "DeliveryId': This element is not expected" in reason  # the service's own words come first
    assert (
        "set delivery.soap_contract: \"1.1\" in partner profile 'ch-swissmedic' to leave it out (the service then "
        "keys on FromParty + MessageId), or upgrade the national service to the 1.2 WSDL "
        "(schemas/wsdl/national-delivery.wsdl)"
    ) in reason


async def test_a_service_on_contract_1_2_gets_the_delivery_id(
    inbound: Inbound, national_1_2: NationalSystem
) -> None:
    explicit = await inbound.accepted(1)
    default = await inbound.accepted(2, partner_id="de-bfarm")
    registry = ProfileRegistry(
        [
            partner(delivery=soap(national_1_2.url, soap_contract="1.2")),
            partner("de-bfarm", delivery=soap(national_1_2.url)),
        ]
    )

    assert await inbound.worker(registry).drain() == 2

    assert national_1_2.invalid == []
    assert set(national_1_2.deliveries) == {delivery_id(explicit), delivery_id(default)}  # sent as DeliveryId


async def test_a_service_on_contract_1_2_faults_and_the_reason_says_to_set_1_2_when_the_profile_says_1_1(
    inbound: Inbound, national_1_2: NationalSystem
) -> None:
    record = await inbound.accepted(1)
    setting = partner(delivery=soap(national_1_2.url, soap_contract="1.1")).delivery

    with pytest.raises(SoapDeliveryFailed) as failed:
        await deliver_all(national_1_2.url, setting, [record])

    assert national_1_2.deliveries == {}
    reason = str(failed.value)
    assert "Expected is ( {urn:permit-gateway:national-delivery:1}DeliveryId )" in reason
    assert reason.endswith(
        ". The national service wants Metadata/DeliveryId (contract 1.2 of national-delivery.wsdl), which "
        'delivery.soap_contract: "1.1" in partner profile \'ch-swissmedic\' leaves out: set it to "1.2" (or '
        "remove it); the permit is delivered again at the next attempt"
    )


@pytest.mark.parametrize(
    ("said", "advised"),
    [
        (  # JAXB (JAX-WS, CXF)
            'Unmarshalling Error: unexpected element (uri:"urn:permit-gateway:national-delivery:1", '
            'local:"DeliveryId"). Expected elements are <{urn:permit-gateway:national-delivery:1}ConversationId>',
            True,
        ),
        (  # Xerces
            "cvc-complex-type.2.4.a: Invalid content was found starting with element 'nd:DeliveryId'.",
            True,
        ),
        (  # .NET
            "The element 'Metadata' in namespace 'urn:permit-gateway:national-delivery:1' has invalid child element "
            "'DeliveryId' in namespace 'urn:permit-gateway:national-delivery:1'.",
            True,
        ),
        ("Request rejected: unexpected element in Metadata", True),  # not naming it
        ("the permit register is down for maintenance", False),
        ("DeliveryId 0f3a was stored before with another document", False),  # a 1.2 service's own rule
    ],
)
async def test_a_fault_about_an_unexpected_element_names_the_setting(
    said: str, advised: bool, inbound: Inbound
) -> None:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return _fault("soap:Client", said)

    app = web.Application()
    app.router.add_post("/delivery", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/delivery"
    record = await inbound.accepted(1)
    try:
        with pytest.raises(SoapDeliveryFailed) as failed:
            await deliver_all(url, partner(delivery=soap(url)).delivery, [record])
    finally:
        await runner.cleanup()

    reason = str(failed.value)
    assert reason.startswith(f"SOAP {url} answered with a Fault: soap:Client: {said.rstrip('.')}")
    assert ".." not in reason
    assert ('set delivery.soap_contract: "1.1" in partner profile' in reason) is advised
    if not advised:
        assert reason == f"SOAP {url} answered with a Fault: soap:Client: {said}"


async def test_the_1_1_xsd_refuses_delivery_id_wherever_it_stands(inbound: Inbound) -> None:
    """Why DeliveryId stays required right after MessageId: moving it to the end of Metadata would not make a
    1.2 request valid for a 1.1 service (its sequence has no extension point), and would break 1.2 services."""
    old = etree.XMLSchema(etree.parse(str(CONTRACT_1_1_XSD)))
    new = etree.XMLSchema(etree.parse(str(wsdl_path().with_name("national-delivery.xsd"))))
    record = await inbound.accepted(1)
    call = _body(record, SoapContract.V1_2)
    at_end = copy.deepcopy(call)
    metadata = at_end.find(f"{ND}Metadata")
    assert metadata is not None
    moved = metadata.find(f"{ND}DeliveryId")
    assert moved is not None
    metadata.remove(moved)
    metadata.append(moved)

    assert new.validate(etree.ElementTree(call))
    assert not old.validate(etree.ElementTree(call))
    assert not old.validate(etree.ElementTree(at_end)) and not new.validate(etree.ElementTree(at_end))
    assert old.validate(etree.ElementTree(_body(record, SoapContract.V1_1)))
    assert not new.validate(etree.ElementTree(_body(record, SoapContract.V1_1)))


def _body(record: MessageRecord, contract: SoapContract) -> etree._Element:
    client = zeep.Client(str(wsdl_path()), settings=hardened_settings())  # type: ignore[no-untyped-call]
    service = client.create_service(BINDING, "http://127.0.0.1:9/")  # type: ignore[no-untyped-call]
    envelope = client.create_message(  # type: ignore[no-untyped-call]
        service, "DeliverPermit", **request_of(record, PERMIT, contract)
    )
    call = envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0]
    assert isinstance(call, etree._Element)
    return call


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    swissmedic = [a for a in AUTHORITIES if a.party_id == "CH-SWISSMEDIC"]
    return generate_dev_pki(tmp_path_factory.mktemp("pki"), swissmedic, now=NOW).folder


@pytest.fixture
def profile_file(tmp_path: Path) -> Callable[[str], Path]:
    def write(delivery: str) -> Path:
        path = tmp_path / "ch-swissmedic.yaml"
        path.write_text(MINIMAL + "delivery:\n" + delivery, encoding="utf-8")
        return path

    return write


@pytest.mark.parametrize(
    ("written", "contract"),
    [
        ("", SoapContract.V1_2),
        ('  soap_contract: "1.1"\n', SoapContract.V1_1),
        ("  soap_contract: 1.1\n", "1.1"),
        ('  soap_contract: "1.3"\n', SoapContract.V1_3),
        ("  soap_contract: 1.3\n", "1.3"),
    ],
)
def test_soap_contract_in_a_profile(
    written: str,
    contract: str,
    certs: Path,
    profile_file: Callable[[str], Path],
) -> None:
    path = profile_file("  method: soap\n  url: https://n.example/in\n" + written)
    assert load_profile(path, certificates_dir=certs).delivery.soap_contract is SoapContract(contract)


@pytest.mark.parametrize(
    ("delivery", "expected"),
    [
        (
            "  method: soap\n  url: https://n.example/in\n  soap_contract: 1.4\n",
            ":13:3 delivery.soap_contract: got '1.4', expected one of: 1.1, 1.2, 1.3",
        ),
        (
            "  method: webhook\n  url: https://n.example/in\n  soap_contract: '1.1'\n",
            ":13:3 delivery.soap_contract: expected no soap_contract: delivery method is webhook, not soap",
        ),
    ],
)
def test_a_wrong_soap_contract_is_refused_at_its_line(
    delivery: str,
    expected: str,
    certs: Path,
    profile_file: Callable[[str], Path],
) -> None:
    path = profile_file(delivery)
    with pytest.raises(ProfileError) as refused:
        load_profile(path, certificates_dir=certs)
    assert f"{path}{expected}" in str(refused.value)


def test_an_effective_profile_without_soap_loads_again(certs: Path, tmp_path: Path) -> None:
    """``profiles show --effective`` writes the default soap_contract for every method."""
    path = tmp_path / "ch-swissmedic.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    effective = load_profile(path, certificates_dir=certs).model_dump(mode="json")
    assert effective["delivery"] == {"method": "folder", "folder": None, "url": None, "soap_contract": "1.2"}
    YAML().dump(effective, path)
    assert load_profile(path, certificates_dir=certs).delivery == Delivery()


async def test_a_service_on_contract_1_1_gets_every_permit_once_the_profile_says_1_1(inbound: Inbound) -> None:
    async with national_system(free_port(), contract="1.1") as national:
        records = [
            await inbound.accepted(1, message_id=SAME),
            await inbound.accepted(2, partner_id="de-bfarm", message_id=SAME),
            await inbound.accepted(3),
        ]
        soap = {"method": "soap", "url": national.url}
        worker = inbound.worker(ProfileRegistry([partner(delivery=soap), partner("de-bfarm", delivery=soap)]))
        assert await worker.drain() == 0  # contract 1.2 by default: every one a Fault

        contract = soap | {"soap_contract": "1.1"}
        worker = inbound.worker(
            ProfileRegistry([partner(delivery=contract), partner("de-bfarm", delivery=contract)])
        )
        inbound.clock.advance(timedelta(minutes=5))
        assert await worker.drain() == 3

        assert set(national.deliveries) == {delivery_id(r) for r in records}
        for record in records:
            assert (await inbound.store.get(record.id)).state is State.DELIVERED
