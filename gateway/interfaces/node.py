"""One gateway node: the composition root that turns ``Settings`` into a running aiohttp application.

Every resource is one async context in ``cleanup_ctx``, entered in dependency order and left in reverse:
store, HTTP client, services, background work (scheduler, pumps, folder watcher).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from gateway.clock import Clock, SystemClock
from gateway.inbound.deliver import FolderDelivery
from gateway.inbound.http import ON_ACCEPTED, RECEIVER
from gateway.inbound.http import routes as as4_routes
from gateway.inbound.receive import Receiver
from gateway.interfaces import folder, rest
from gateway.interfaces.keys import CLOCK, NODE, SETTINGS
from gateway.outbound.dispatch import Dispatcher
from gateway.outbound.submit import Submitter
from gateway.profiles.loader import load_profiles
from gateway.profiles.trust import Partners, load_key_pair
from gateway.settings import Settings
from gateway.store import MessageStore, PayloadStore, create_engine, upgrade

log = structlog.get_logger("gateway.node")


class Pump:
    """Runs ``work`` whenever woken, one run at a time; wakes that arrive during a run cause one more run."""

    def __init__(self, name: str, work: Callable[[], Awaitable[int]]) -> None:
        self.name = name
        self._work = work
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def run(self) -> None:
        while True:
            await self._event.wait()
            self._event.clear()
            try:
                await self._work()
            except Exception:
                log.exception("background work failed; it runs again at the next wake", pump=self.name)


@dataclass(slots=True)
class Node:
    """The running parts of one gateway, reachable from handlers through ``app[NODE]``."""

    settings: Settings
    clock: Clock
    node_id: str
    store: MessageStore
    payloads: PayloadStore
    partners: Partners
    submitter: Submitter
    dispatcher: Dispatcher
    receiver: Receiver
    delivery: FolderDelivery
    dispatch_pump: Pump
    delivery_pump: Pump


def new_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def open_store(settings: Settings, clock: Clock) -> MessageStore:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.store.url)
    await upgrade(engine)
    return MessageStore(engine, clock)


def _services(settings: Settings, clock: Clock, store: MessageStore, session: aiohttp.ClientSession) -> Node:
    now: datetime = clock.now()
    keys = load_key_pair(settings.keys.private_key, settings.keys.certificate, settings.keys.passphrase(), now=now)
    partners = Partners(load_profiles(settings.profiles.folder, certificates_dir=settings.profiles.certificates))
    payloads = PayloadStore(settings.data_dir / "payloads")
    node_id = new_node_id()
    identity = settings.identity
    submitter = Submitter(
        store=store, payloads=payloads, partners=partners, identity=identity, keys=keys, clock=clock
    )
    dispatcher = Dispatcher(
        store=store,
        payloads=payloads,
        partners=partners,
        clock=clock,
        session=session,
        node_id=node_id,
        http_timeout=settings.outbound.http_timeout_seconds,
    )
    receiver = Receiver(
        store=store, payloads=payloads, partners=partners, identity=identity, keys=(keys,), clock=clock
    )
    delivery = FolderDelivery(
        store=store, payloads=payloads, inbox=settings.folders.inbox, clock=clock, node_id=node_id
    )
    return Node(
        settings=settings,
        clock=clock,
        node_id=node_id,
        store=store,
        payloads=payloads,
        partners=partners,
        submitter=submitter,
        dispatcher=dispatcher,
        receiver=receiver,
        delivery=delivery,
        dispatch_pump=Pump("dispatch", dispatcher.run_once),
        delivery_pump=Pump("delivery", delivery.run_once),
    )


async def _node_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, clock = app[SETTINGS], app[CLOCK]
    store = await open_store(settings, clock)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
    try:
        node = _services(settings, clock, store, session)
        app[NODE] = node
        app[RECEIVER] = node.receiver
        app[ON_ACCEPTED] = node.delivery_pump.wake
        log.info(
            "gateway started",
            party=settings.identity.party_id,
            node=node.node_id,
            partners=len(node.partners.registry),
        )
        yield
    finally:
        await session.close()
        await store.close()


async def _background_ctx(app: web.Application) -> AsyncIterator[None]:
    node = app[NODE]
    tasks = [asyncio.create_task(p.run(), name=p.name) for p in (node.dispatch_pump, node.delivery_pump)]
    scheduler = AsyncIOScheduler(timezone="UTC")
    sweep = timedelta(seconds=node.settings.outbound.sweep_seconds)
    scheduler.add_job(node.dispatch_pump.wake, "interval", seconds=sweep.total_seconds(), id="dispatch-sweep")
    scheduler.add_job(node.delivery_pump.wake, "interval", seconds=sweep.total_seconds(), id="delivery-sweep")
    scheduler.add_job(node.store.recover_leases, "interval", seconds=30, id="lease-recovery")
    scheduler.start()
    node.dispatch_pump.wake()
    node.delivery_pump.wake()
    try:
        yield
    finally:
        scheduler.shutdown(wait=False)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def create_app(settings: Settings, *, clock: Clock | None = None, watch_outbox: bool = True) -> web.Application:
    """The gateway's one aiohttp application: the AS4 endpoint, the REST API and the background work."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SETTINGS] = settings
    app[CLOCK] = clock or SystemClock()
    app.cleanup_ctx.append(_node_ctx)
    app.cleanup_ctx.append(_background_ctx)
    if watch_outbox:
        app.cleanup_ctx.append(folder.outbox_ctx)
    app.router.add_routes(as4_routes)
    app.router.add_routes(rest.routes)
    return app
