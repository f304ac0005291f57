"""What the store tests build their messages from."""

from __future__ import annotations

from gateway.store import Direction, NewMessage


def new_message(
    message_id: str,
    *,
    direction: Direction = Direction.OUTBOUND,
    partner_id: str = "ch-swissmedic",
    to_party: str = "CH-SWISSMEDIC",
    payload_sha256: str = "0" * 64,
) -> NewMessage:
    """A message from Belgium with the store's required fields filled in."""
    return NewMessage(
        direction=direction,
        message_id=message_id,
        conversation_id="c1",
        partner_id=partner_id,
        from_party="BE-FAMHP",
        to_party=to_party,
        service="svc",
        action="ImportAuthorization",
        payload_sha256=payload_sha256,
        payload_mime_type="application/xml",
    )
