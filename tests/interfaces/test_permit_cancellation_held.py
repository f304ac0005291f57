"""The REST view of an ENDORSED export whose Cancellation its endorsement holds back: ``cancellation_held`` names
that cancellation's date beside ``cancelled_on`` (null: an endorsed export is not cancelled), as openapi.yaml
describes it, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from gateway.clock import FixedClock
from gateway.interfaces.rest import permit_json
from gateway.store import PermitRegistry, PermitState
from tests.conftest import NOW
from tests.e2e.test_openapi import REGISTRY, SPEC
from tests.store.test_cancellation_chain import endorsed_before_its_cancellation
from tests.store.test_future_cancellation import IN_30_DAYS, permit, registry
from tests.store.test_permits import BE_IA, CH_EA

__all__ = ["registry"]  # the fixture, on SQLite and PostgreSQL


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


def _valid_permit(body: dict[str, object]) -> None:
    validator = Draft202012Validator(
        {"$ref": "urn:permit-gateway:openapi#/components/schemas/Permit"}, registry=REGISTRY
    )
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
    assert errors == []


def test_the_description_gives_cancellation_held_as_a_nullable_date_and_says_what_it_is() -> None:
    held = SPEC["components"]["schemas"]["Permit"]["properties"]["cancellation_held"]
    assert held["type"] == ["string", "null"] and held["format"] == "date"
    assert "endorsement" in held["description"]


async def test_an_endorsed_exports_held_cancellation_is_shown_beside_cancelled_on(
    registry: PermitRegistry,
) -> None:
    await endorsed_before_its_cancellation(registry)
    held = await permit(registry, CH_EA)
    assert held.status is PermitState.ENDORSED_FULL

    body = permit_json(held)

    assert body["cancelled_on"] is None
    assert body["cancellation_held"] == IN_30_DAYS.isoformat()
    _valid_permit(body)
    other = permit_json(await permit(registry, BE_IA))
    assert other["cancellation_held"] is None
    _valid_permit(other)
