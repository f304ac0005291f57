"""Delivery tests: the store on SQLite and PostgreSQL (the store tests' fixtures), inbound messages made to
measure, and the worker that delivers them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.clock import FixedClock
from gateway.inbound.deliver import FolderDelivery
from gateway.profiles import PartnerProfile, ProfileRegistry
from gateway.store import Direction, Event, MessageRecord, MessageStore, NewMessage, PayloadStore
from tests.store.conftest import clock, store  # noqa: F401 - fixtures shared with the store tests

PERMIT = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<ImportAuthorization xmlns="urn:permit-gateway:cs-permits:1"/>\n'
)


def partner(profile_id: str = "ch-swissmedic", **fields: Any) -> PartnerProfile:
    """A profile as loaded from YAML (certificates are not read: the delivery worker does not need them)."""
    base: dict[str, Any] = {
        "id": profile_id,
        "authority_name": profile_id,
        "country": profile_id[:2].upper(),
        "party_id": profile_id.upper(),
        "endpoint": f"https://as4.{profile_id}.example/as4",
        "security": {"signing_certificate": f"{profile_id}.crt.pem"},
    }
    return PartnerProfile.model_validate(base | fields)


@dataclass
class Inbound:
    """Accepted inbound messages in a real store, and a delivery worker over them."""

    store: MessageStore
    payloads: PayloadStore
    clock: FixedClock
    inbox: Path

    async def accepted(
        self,
        n: int,
        *,
        partner_id: str = "ch-swissmedic",
        data: bytes = PERMIT,
        message_id: str | None = None,
        findings: list[dict[str, Any]] | None = None,
    ) -> MessageRecord:
        """Stored as the receive path stores a permit accepted with ``findings`` (``Finding.to_json()`` each)."""
        new = NewMessage(
            direction=Direction.INBOUND,
            message_id=message_id or f"m-{n}@{partner_id}.test",
            conversation_id=f"c-{n}",
            ref_to_message_id=f"earlier-{n}@be-famhp.test",
            partner_id=partner_id,
            from_party=partner_id.upper(),
            to_party="BE-FAMHP",
            service="urn:permit-gateway:services:controlled-substances-trade",
            action="ImportAuthorization",
            document_type="ImportAuthorization",
            document_number=f"CH-IA-2026-{n:04d}",
            payload_sha256=self.payloads.put(data),
            payload_mime_type="application/xml",
        )
        extra = {} if findings is None else {"findings": findings}
        record, created = await self.store.add(new, then=Event.ACCEPT, **extra)
        assert created
        return record

    def worker(
        self, registry: ProfileRegistry, *, timeout: float = 5.0, session: aiohttp.ClientSession | None = None
    ) -> FolderDelivery:
        return FolderDelivery(
            store=self.store,
            payloads=self.payloads,
            inbox=self.inbox,
            clock=self.clock,
            node_id="node-1",
            profiles=registry,
            session=session,
            http_timeout=timeout,
        )


@pytest.fixture
def inbound(store: MessageStore, clock: FixedClock, tmp_path: Path) -> Inbound:  # noqa: F811
    return Inbound(
        store=store, payloads=PayloadStore(tmp_path / "payloads"), clock=clock, inbox=tmp_path / "inbox"
    )
