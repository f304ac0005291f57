"""A node that stops while its delivery loop is claiming still gives the claimed messages back, due at once: the
claim committed, but cut off before their deliveries started, nobody handed them back and they waited for the
claim to run out (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sqlalchemy import event

from gateway.profiles import ProfileRegistry
from tests.inbound.conftest import Inbound, partner
from tests.inbound.test_delivery_review import HeldPayloads, second_node


async def test_a_stop_during_the_claim_still_hands_the_claimed_message_back(inbound: Inbound) -> None:
    record = await inbound.accepted(1)
    registry = ProfileRegistry([partner()])
    gate = threading.Event()
    worker = inbound.worker(registry)
    worker._payloads = HeldPayloads(inbound.payloads._root, gate)  # started, the delivery waits here
    caller: list[asyncio.Task[Any]] = []

    def cancel_the_loop(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().startswith("WITH") and "lease_owner" in statement and caller:
            caller.pop().cancel()

    event.listen(inbound.store.engine.sync_engine, "before_cursor_execute", cancel_the_loop)
    loop_run = asyncio.create_task(worker.run_once())
    caller.append(loop_run)
    await asyncio.gather(loop_run, return_exceptions=True)
    threading.Timer(0.3, gate.set).start()

    await worker.close()

    last = (await inbound.store.events(record.id))[-1]
    assert last.kind == "delivery_interrupted"
    assert await second_node(inbound, registry).drain() == 1  # due at once, not when the claim runs out
