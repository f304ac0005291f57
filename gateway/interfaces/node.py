"""One gateway node: the composition root that turns ``Settings`` into a running aiohttp application.

Every resource is one async context in ``cleanup_ctx``, entered in dependency order and left in reverse:
store, HTTP client, services, background work (scheduler, pumps, folder watcher).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import aiohttp
import structlog
from aiohttp import web
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import SecretStr

from gateway.clock import Clock, SystemClock
from gateway.documents import ControlTables
from gateway.errors import ConfigError
from gateway.faults import Faults
from gateway.files import is_disk_full
from gateway.inbound.deliver import FolderDelivery
from gateway.inbound.http import MAX_MESSAGE_BYTES, ON_ACCEPTED, PAYLOADS, READ_TIMEOUT, RECEIVER, SIGNALS
from gateway.inbound.http import routes as as4_routes
from gateway.inbound.puller import Puller
from gateway.inbound.receive import Receiver
from gateway.interfaces import access, admin, folder, rest
from gateway.interfaces.control_tables import ControlTablesWatcher
from gateway.interfaces.keys import (
    ADMIN_NAMED,
    ADMIN_TOKEN,
    API_TOKEN,
    CLOCK,
    NODE,
    PROFILE_EDITOR,
    PROFILE_WATCHER,
    SETTINGS,
)
from gateway.metrics import CLOCK_OFFSET, DISK_FULL, STORE_UNAVAILABLE, count_from_zero, count_sends_from_zero
from gateway.outbound.dispatch import Dispatcher
from gateway.outbound.proxy import ProxySettings, proxy_settings
from gateway.outbound.pull_serve import PullServer
from gateway.outbound.submit import Submitter
from gateway.profiles.certificates import require_own_key_files
from gateway.profiles.check import is_own_endpoint, warn_refused_delivery_folders
from gateway.profiles.editor import ProfileEditor
from gateway.profiles.expiry import check_expiry
from gateway.profiles.keystore import Keystore, KeystoreWatcher, OwnKeys, load_own_keys
from gateway.profiles.trust import Partners
from gateway.profiles.watcher import ActiveProfiles, ProfileWatcher, load_at_start
from gateway.settings import MAX_CONNECTIONS, Settings, guarded_folders
from gateway.store import MessageStore, PayloadStore, PermitRegistry, State, create_engine, is_unavailable, upgrade
from gateway.store.retention import purge as retention_purge
from gateway.tasks import cancel_all

log = structlog.get_logger("gateway.node")

PROXY = web.AppKey("outbound_proxy", ProxySettings)
"""The proxy to partners, built once from the settings before the start goes on (its password read then)."""
PULL_TICK_SECONDS = 1.0
"""How often the puller looks for partners whose ``pull.interval_seconds`` has passed."""

PUMP_STOP_SECONDS = 5.0
"""How long a stopping node waits for a pump's run under way (a claim, lanes and deliveries started; no sending)."""


class Pump:
    """Runs ``work`` whenever woken, one run at a time; wakes that arrive during a run cause one more run."""

    def __init__(self, name: str, work: Callable[[], Awaitable[int]]) -> None:
        self.name = name
        self._work = work
        self._event = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        self._event.set()

    def stop(self) -> None:
        """End ``run`` once the work under way has ended: a run cut short may have claimed messages it did not
        yet hand to anything that gives them back at shutdown."""
        self._stopping = True
        self._event.set()

    async def wake_on_loop(self) -> None:
        """``wake`` as a scheduler job: APScheduler runs an async job on the loop, a plain function in a worker
        thread, where setting the ``asyncio.Event`` is not safe."""
        self.wake()

    async def run(self) -> None:
        while True:
            await self._event.wait()
            self._event.clear()
            if self._stopping:
                return
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
    permits: PermitRegistry
    payloads: PayloadStore
    partners: Partners
    submitter: Submitter
    dispatcher: Dispatcher
    receiver: Receiver
    delivery: FolderDelivery
    dispatch_pump: Pump
    delivery_pump: Pump
    keys: OwnKeys
    pull_server: PullServer
    puller: Puller
    pull_pump: Pump
    tables: ControlTablesWatcher | None
    profiles_at_start: ActiveProfiles
    clock_off: bool = False


def new_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def open_store(settings: Settings, clock: Clock) -> MessageStore:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.store.url, wait_seconds=settings.store.wait_seconds)
    await upgrade(engine)
    return MessageStore(engine, clock, serving=True)


def tables_watcher(settings: Settings) -> ControlTablesWatcher | None:
    """The administrator's control tables from ``[documents].tables``, if the settings name a folder."""
    folder = settings.documents.tables
    return ControlTablesWatcher(folder) if folder is not None else None


def _services(
    settings: Settings,
    clock: Clock,
    store: MessageStore,
    session: aiohttp.ClientSession,
    proxy: ProxySettings,
) -> Node:
    now: datetime = clock.now()
    keys = load_own_keys(settings.keys, now=now)
    started = load_at_start(  # a broken file leaves its partner out, not every partner
        settings.profiles.folder,
        certificates_dir=settings.profiles.certificates,
        now=now,
        max_age=settings.inbound.duplicate_window,
        tls_passphrase=settings.keys.passphrase,
    )
    partners = started.partners
    warn_missing_suite_keys(partners, keys)
    payloads = PayloadStore(settings.data_dir / "payloads")
    node_id = new_node_id()
    identity = settings.identity
    faults = Faults(settings.faults.crash)
    tables = tables_watcher(settings)
    permits = PermitRegistry(store.engine, clock, tables.load() if tables else ControlTables())
    submitter = Submitter(
        store=store,
        permits=permits,
        payloads=payloads,
        partners=partners,
        identity=identity,
        keys=keys,
        clock=clock,
        faults=faults,
    )
    dispatcher = Dispatcher(
        store=store,
        payloads=payloads,
        partners=partners,
        clock=clock,
        session=session,
        node_id=node_id,
        http_timeout=settings.outbound.http_timeout_seconds,
        lease=timedelta(seconds=settings.outbound.lease_seconds),
        faults=faults,
        tls_passphrase=settings.keys.passphrase(),
        per_partner=settings.outbound.max_in_flight_per_partner,
        max_in_flight=settings.outbound.max_in_flight,
        proxy=proxy,
    )
    receiver = Receiver(
        store=store,
        permits=permits,
        payloads=payloads,
        partners=partners,
        identity=identity,
        keys=keys,
        clock=clock,
        faults=faults,
        max_message_bytes=settings.inbound.max_message_bytes,
    )
    pull_server = PullServer(
        store=store,
        payloads=payloads,
        partners=partners,
        identity=identity,
        keys=keys,
        clock=clock,
        node_id=node_id,
    )
    delivery = FolderDelivery(
        store=store,
        payloads=payloads,
        inbox=settings.folders.inbox,
        clock=clock,
        node_id=node_id,
        profiles=partners.registry,
        session=session,
        http_timeout=settings.outbound.http_timeout_seconds,
        lease=timedelta(seconds=settings.outbound.lease_seconds),
        faults=faults,
        guarded=guarded_folders(settings),
    )
    delivery_pump = Pump("delivery", delivery.run_once)
    delivery.wake_with(delivery_pump.wake)
    dispatch_pump = Pump("dispatch", dispatcher.run_once)
    dispatcher.wake_with(dispatch_pump.wake)
    puller = Puller(
        receiver=receiver,
        payloads=payloads,
        max_message_bytes=settings.inbound.max_message_bytes,
        partners=partners,
        identity=identity,
        keys=keys,
        clock=clock,
        session=session,
        http_timeout=settings.outbound.http_timeout_seconds,
        on_accepted=delivery_pump.wake,
        tls_passphrase=settings.keys.passphrase(),
        proxy=proxy,
    )
    return Node(
        settings=settings,
        clock=clock,
        node_id=node_id,
        store=store,
        permits=permits,
        payloads=payloads,
        partners=partners,
        submitter=submitter,
        dispatcher=dispatcher,
        receiver=receiver,
        delivery=delivery,
        dispatch_pump=dispatch_pump,
        delivery_pump=delivery_pump,
        keys=keys,
        pull_server=pull_server,
        puller=puller,
        pull_pump=Pump("pull", puller.run_once),
        tables=tables,
        profiles_at_start=started,
    )


async def _node_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, clock = app[SETTINGS], app[CLOCK]
    store = await open_store(settings, clock)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS))
    try:
        node = _services(settings, clock, store, session, app[PROXY])
        app[NODE] = node
        app[RECEIVER] = node.receiver
        app[PAYLOADS] = node.payloads
        app[MAX_MESSAGE_BYTES] = node.settings.inbound.max_message_bytes
        app[READ_TIMEOUT] = node.settings.inbound.read_timeout_seconds
        app[ON_ACCEPTED] = node.delivery_pump.wake
        app[SIGNALS] = node.pull_server.answer
        count_partners_from_zero(node.partners)
        warn_own_endpoints(settings, node.partners)
        warn_refused_delivery_folders(node.partners, guarded_folders(settings), settings.profiles.folder)
        await count_unfinished_from_zero(store)
        await check_clock(node)
        log.info(
            "gateway started",
            party=settings.identity.party_id,
            node=node.node_id,
            partners=len(node.partners.registry),
            listening=settings.http.listening(),
            as4_url=settings.http.as4_url(),
            outbound_proxy=_proxy_in_use(app[PROXY]),
            held_back=[str(held.path) for held in node.profiles_at_start.held_back],
        )
        yield
    finally:
        await session.close()
        await store.close()
    log.info("gateway stopped", party=settings.identity.party_id, node=node.node_id)


def _proxy_in_use(proxy: ProxySettings) -> str:
    """The proxy to partners for the start's log line: its address, user and bypass list, never the password."""
    if proxy.url is None:
        return "none (partners are reached directly)"
    user = f" as {proxy.user}" if proxy.user is not None else ""
    direct = f"partners at {', '.join(proxy.direct)} reached directly" if proxy.direct else "for every partner"
    return f"{proxy.url}{user}; {direct}"


CLOCK_OFFSET_BOUND = timedelta(seconds=10)
"""The most a node's clock may differ from the database server's before the node says so (or a quarter lease)."""


async def check_clock(node: Node) -> None:
    """Compare this node's clock with the database server's (PostgreSQL), export the offset, and say when it
    goes past the bound and when it comes back. Leases are written and compared on each node's own clock: a
    node whose clock runs a lease ahead of another's takes over that node's sends while they run."""
    offset = await node.store.clock_offset()
    if offset is None:
        return
    CLOCK_OFFSET.set(offset.total_seconds())
    lease = timedelta(seconds=node.settings.outbound.lease_seconds)
    bound = min(CLOCK_OFFSET_BOUND, lease / 4)
    off = abs(offset) > bound
    if off and not node.clock_off:
        log.error(
            f"this node's clock is {abs(offset.total_seconds()):.1f} s "
            f"{'ahead of' if offset > timedelta(0) else 'behind'} the database server's; nodes sharing the "
            f"database compare leases on their own clocks, and one whose clock runs more than a lease "
            f"({lease.total_seconds():g} s, [outbound].lease_seconds) ahead of another's takes over that node's "
            f"sends while they run: synchronize the clocks of every node and of the database server (NTP)",
            node=node.node_id,
            offset_seconds=round(offset.total_seconds(), 3),
            bound_seconds=bound.total_seconds(),
        )
    elif node.clock_off and not off:
        log.info(
            "this node's clock agrees with the database server's again",
            node=node.node_id,
            offset_seconds=round(offset.total_seconds(), 3),
        )
    node.clock_off = off


async def _recover(node: Node) -> None:
    await check_clock(node)
    recovered = await node.store.recover_leases()
    if recovered:
        log.warning(
            "messages whose send outlived its lease (the node stopped or stalled) are due again",
            messages=recovered,
        )
        node.dispatch_pump.wake()


async def purge_old_messages(node: Node) -> None:
    """The retention job: daily and at start; final messages past their state's retention go."""
    retention = node.settings.retention
    keep = {State(name): timedelta(days=days) for name, days in retention.days_by_state().items()}
    report = await retention_purge(
        node.store, node.payloads, keep, now=node.clock.now(), batch_size=retention.batch_size
    )
    if report.messages or report.files:
        by_state = {state.value: count for state, count in report.by_state.items()}
        log.info("retention purge", messages=report.messages, by_state=by_state, payload_files=report.files)


async def expire_permits(node: Node) -> None:
    """Daily and at start: cancellations whose effective date has come take effect, then authorizations past
    their validity move to EXPIRED or EXPIRED_UNENDORSED."""
    today = node.clock.now().date()
    applied = await node.permits.apply_cancellations(today)
    if applied.cancelled:
        cancelled = [f"{key.document_type} {key.number} of {key.issuing_country}" for key in applied.cancelled]
        log.info("permit cancellations took effect", documents=len(cancelled), cancelled=cancelled)
    for key, refused in applied.refused:
        finding = refused.findings[0]
        log.error(
            "a permit cancellation whose date has come was refused; the daily permit job tries it again",
            document=f"{key.document_type} {key.number} of {key.issuing_country}",
            rule=finding.rule,
            reason=finding.message,
            fix=finding.hint,
        )
    for held in applied.held:
        export = f"{held.export.document_type} {held.export.number} of {held.export.issuing_country}"
        endorsed_by = [
            f"{key.document_type} {key.number} of {key.issuing_country}"
            + (f" (cancelled from {day})" if day is not None else "")
            for key, day in held.endorsements
        ]
        log.warning(
            "a permit cancellation whose date has come cannot take effect: the export was endorsed before it",
            document=export,
            cancelled_on=held.cancelled_on.isoformat(),
            endorsed_by=endorsed_by,
            rule="LIFECYCLE",
            reason=f"{export} is cancelled from {held.cancelled_on}, but {', '.join(endorsed_by)} endorsed it "
            "before that date, and an endorsed ExportAuthorization cannot be cancelled (PERMITS-NOTES 4.4): the "
            "goods it authorized were received under it. The registry keeps it endorsed; this job warns of it at "
            "each run.",
            fix="If the endorsement is right, the export was used before its cancellation's date: tell the export's "
            "issuer that the cancellation has no effect. If the endorsement was issued in error, ask the importing "
            "authority to cancel it: the export's cancellation then takes effect, from the day the endorsement's "
            "does.",
        )
    expired = await node.permits.expire(today)
    if expired:
        log.info("permit validity ended", documents=expired)


async def _reload_tables(node: Node) -> None:
    if node.tables is not None:
        await node.tables.check(node.permits.use_tables)


async def _expire_pulls(node: Node) -> None:
    await node.pull_server.expire()


JOBS_SHUTDOWN_SECONDS = 10.0
"""How long a stopping node waits for running store jobs (retention purge, permit expiry, lease recovery)."""


class StoreJobs:
    """The scheduled jobs that use the store, tracked while they run.

    APScheduler's asyncio executor cancels running jobs on shutdown without awaiting them, which could cut a
    job off in the middle of a database call just before the store closes (and leave a connection that never
    finishes closing). On shutdown the node pauses the scheduler and lets running jobs finish first.
    """

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    def track(self, job: Callable[[Node], Awaitable[None]]) -> Callable[[Node], Awaitable[None]]:
        @functools.wraps(job)  # the scheduler's log names the job, not this wrapper
        async def run(node: Node) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            try:
                await job(node)
            finally:
                self._running.discard(task)

        return run

    async def finish(self, timeout: float) -> None:
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout)


MIDNIGHT_SECONDS = 5
"""A date-driven daily job runs this many seconds after UTC midnight: the loop may fire a timer slightly early,
and the job must read the new date."""

SCHEDULER_DEFAULTS = {"misfire_grace_time": None, "coalesce": True}
"""A job that falls due while the loop is busy runs late, once, instead of being skipped: with APScheduler's
default grace of 1 s, a daily job started more than a second late waited a whole day."""


def new_scheduler() -> AsyncIOScheduler:
    return AsyncIOScheduler(timezone="UTC", job_defaults=SCHEDULER_DEFAULTS)


def add_daily(
    scheduler: AsyncIOScheduler,
    job_id: str,
    job: Callable[[], Awaitable[None]],
    *,
    retry_after: timedelta,
    first: timedelta = timedelta(0),
    at_midnight: bool = False,
) -> None:
    """``job`` after ``first`` (at once by default), then daily: every 24 h, or ``at_midnight`` just after each
    UTC midnight (for work that follows the date). A run that fails (a store briefly out of reach) runs again
    after ``retry_after`` until one succeeds, instead of a day later; the next day counts from the run that did."""

    async def run() -> None:
        try:
            await job()
        except Exception:
            retry = retry_after.total_seconds()
            log.exception("daily job failed; it runs again soon", job=job_id, retry_in_seconds=retry)
            if scheduler.running:
                with contextlib.suppress(JobLookupError):
                    scheduler.modify_job(job_id, next_run_time=datetime.now(UTC) + retry_after)

    first_run = datetime.now(UTC) + first
    daily = CronTrigger(hour=0, minute=0, second=MIDNIGHT_SECONDS, timezone=UTC) if at_midnight else None
    trigger = daily or IntervalTrigger(days=1, timezone=UTC)
    scheduler.add_job(run, trigger, id=job_id, name=job_id, next_run_time=first_run)


async def _background_ctx(app: web.Application) -> AsyncIterator[None]:
    node = app[NODE]
    pumps = (node.dispatch_pump, node.delivery_pump, node.pull_pump)
    tasks = [asyncio.create_task(p.run(), name=p.name) for p in pumps]
    scheduler = new_scheduler()
    jobs = StoreJobs()
    sweep = timedelta(seconds=node.settings.outbound.sweep_seconds)
    every_sweep = {"trigger": "interval", "seconds": sweep.total_seconds()}
    scheduler.add_job(node.dispatch_pump.wake_on_loop, id="dispatch-sweep", **every_sweep)
    scheduler.add_job(node.delivery_pump.wake_on_loop, id="delivery-sweep", **every_sweep)
    scheduler.add_job(node.pull_pump.wake_on_loop, "interval", seconds=PULL_TICK_SECONDS, id="pull-tick")
    scheduler.add_job(jobs.track(_expire_pulls), args=[node], id="pull-expiry", **every_sweep)
    scheduler.add_job(jobs.track(_recover), args=[node], id="lease-recovery", **every_sweep)
    purge = functools.partial(jobs.track(purge_old_messages), node)
    add_daily(scheduler, "retention-purge", purge, retry_after=sweep)
    expiry = functools.partial(jobs.track(expire_permits), node)
    # validity ends with a date: a permit is EXPIRED from the first minute of the next day, not up to 24 h later
    add_daily(scheduler, "permit-expiry", expiry, retry_after=sweep, at_midnight=True)
    if node.tables is not None:
        every_poll = {"trigger": "interval", "seconds": node.settings.profiles.poll_seconds}
        scheduler.add_job(jobs.track(_reload_tables), args=[node], id="control-tables", **every_poll)
    scheduler.start()
    node.dispatch_pump.wake()
    node.delivery_pump.wake()
    node.pull_pump.wake()
    try:
        yield
    finally:
        scheduler.pause()
        await jobs.finish(timeout=JOBS_SHUTDOWN_SECONDS)
        scheduler.shutdown(wait=False)
        for pump in pumps:
            pump.stop()
        _, running = await asyncio.wait(tasks, timeout=PUMP_STOP_SECONDS)
        await cancel_all(running)
        await node.dispatcher.close()
        await node.delivery.close()
        await node.puller.close()


# --- partner profiles, our keys, certificate expiry: hot reload and the admin API ------------------------


def warn_missing_suite_keys(partners: Partners, keys: OwnKeys) -> None:
    """A partner whose security suite we hold no key of can neither be sent to nor answered: say so at once."""
    for partner in partners:
        suite = partner.policy.suite
        if suite not in keys.suites:
            log.warning(
                "no key of this partner's security suite: messages to and from it will be refused",
                partner=partner.profile.id,
                suite=suite.value,
                fix=f"permit-gateway keys generate --suite {suite.value} (or [keys] files of that suite)",
            )


def warn_own_endpoints(settings: Settings, partners: Partners) -> None:
    """A partner whose endpoint is this gateway (a port typed wrong): what we send it comes back to us."""
    for partner in partners:
        endpoint = partner.profile.endpoint
        ours = partner.profile.party_id == settings.identity.party_id  # our own profile, as in the demo's folder
        if not ours and is_own_endpoint(endpoint, settings.http.own_as4_urls()):
            log.warning(
                "a partner's endpoint is this gateway's own AS4 endpoint: what we send it comes back to us and is "
                "refused as from an unknown partner; set endpoint in its profile to the URL its administrator gives",
                partner=partner.profile.id,
                endpoint=endpoint,
            )


def use_partners(node: Node, partners: Partners) -> None:
    """Swap a new profile set into every service; a message in flight keeps the ``Partner`` it holds."""
    warn_missing_suite_keys(partners, node.keys)
    warn_own_endpoints(node.settings, partners)
    warn_refused_delivery_folders(partners, guarded_folders(node.settings), node.settings.profiles.folder)
    node.submitter.use_partners(partners)
    node.dispatcher.use_partners(partners)
    node.receiver.use_partners(partners)
    node.pull_server.use_partners(partners)
    node.puller.use_partners(partners)
    node.delivery.use_profiles(partners.registry)
    node.partners = partners
    node.dispatch_pump.wake()  # a partner enabled again, or a delivery method changed: act now, not at the sweep
    node.delivery_pump.wake()
    count_partners_from_zero(partners)
    check_certificates(node)  # a renewed or new partner certificate shows in the expiry metric at once


def use_keys(node: Node, keystore: Keystore) -> None:
    """After a key rollover: sign with the new current key, decrypt with current, next and previous."""
    node.keys = OwnKeys.of(keystore)
    node.submitter.use_keys(node.keys)
    node.receiver.use_keys(node.keys)
    node.pull_server.use_keys(node.keys)
    node.puller.use_keys(node.keys)
    check_certificates(node)


def count_partners_from_zero(partners: Partners) -> None:
    count_from_zero((p.profile.id, p.profile.delivery.method.value) for p in partners)


async def count_unfinished_from_zero(store: MessageStore) -> None:
    """The send and failure series at 0 of each partner with messages that may still fail, a partner no profile
    here names too, before the first send sweep: that sweep fails those whose time to live ran out while the
    node was down, and a series created and counted in one sweep shows ``increase()`` no step, so no alert."""
    for partner_id in await store.unfinished_outbound_partners():
        count_sends_from_zero(partner_id)


T = TypeVar("T")


def on_loop(loop: asyncio.AbstractEventLoop, swap: Callable[[T], None]) -> Callable[[T], None]:
    """``swap`` as a callback for the worker threads that reload profiles and keys: the node's state lives on
    ``loop``, so from another thread the swap is queued there. A caller awaiting that thread resumes after it,
    as the loop runs its callbacks in order."""

    def call(value: T) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            swap(value)
        else:
            loop.call_soon_threadsafe(swap, value)

    return call


def check_certificates(node: Node) -> None:
    """The expiry check: at start, daily and on each change of profiles or keys, ours and every partner's (log +
    metric)."""
    own = node.keys.own_certificates()
    check_expiry(node.partners, own, now=node.clock.now(), warning_days=node.settings.keys.expiry_warning_days)


async def _profiles_ctx(app: web.Application) -> AsyncIterator[None]:
    """The profile watcher, the profile editor behind the admin API, the keystore watcher, the expiry job."""
    node, settings = app[NODE], app[SETTINGS]
    folder, certificates = settings.profiles.folder, settings.profiles.certificates
    active = node.profiles_at_start
    watcher = ProfileWatcher(
        folder,
        certificates_dir=certificates,
        clock=node.clock,
        on_reload=on_loop(asyncio.get_running_loop(), functools.partial(use_partners, node)),
        active=active,
        interval=settings.profiles.poll_seconds,
        tls_passphrase=settings.keys.passphrase,
    )
    app[PROFILE_WATCHER] = watcher
    app[PROFILE_EDITOR] = editor = ProfileEditor(
        folder,
        certificates_dir=certificates,
        data_dir=settings.data_dir,
        clock=node.clock,
        on_change=watcher.reload,
        kept=watcher.last_accepted,
        warning_days=settings.keys.expiry_warning_days,
        duplicate_window=settings.inbound.duplicate_window,
        tls_passphrase=settings.keys.passphrase,
        guarded=guarded_folders(settings),
    )
    watcher.record_with(editor)  # changes made on disk are versioned and audited like the editor's own
    # and those made while the gateway was stopped: the files it starts with, compared with their history
    await asyncio.to_thread(watcher.record_start)
    check_certificates(node)
    scheduler = new_scheduler()

    async def check_daily() -> None:
        check_certificates(node)

    retry_after = timedelta(seconds=settings.outbound.sweep_seconds)
    add_daily(scheduler, "certificate-expiry", check_daily, retry_after=retry_after, first=timedelta(days=1))
    scheduler.start()
    try:
        async with contextlib.AsyncExitStack() as running:
            await running.enter_async_context(watcher.running())
            if node.keys.keystore is not None:
                keystore = KeystoreWatcher(
                    node.keys.keystore,
                    settings.keys.keystore_passphrase(),
                    on_change=on_loop(asyncio.get_running_loop(), functools.partial(use_keys, node)),
                    interval=settings.profiles.poll_seconds,
                )
                await running.enter_async_context(keystore.running())
            yield
    finally:
        scheduler.shutdown(wait=False)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop a gateway process runs on: uvloop's where it is installed (every platform but Windows). Its
    callbacks, timers, sockets and cross-thread wake-ups (aiosqlite's worker thread hands back every statement's
    result) cost a fraction of the standard loop's, which measured a sixth less CPU per exchange on SQLite."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


_RETRY_AFTER_SECONDS = "2"


@web.middleware
async def store_unavailable(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """503 with Retry-After while the database is out of reach (a restart, a failover) or a disk is full, instead
    of a bare 500: the submitter tries again, and so does the partner's AS4 sender, whose retry keeps its
    MessageId (a message that was kept after all gets its stored receipt)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            return _disk_full(request, exc)
        if is_unavailable(exc):
            return _store_unreachable(request, exc)
        raise


def _store_unreachable(request: web.Request, exc: Exception) -> web.Response:
    log.warning("message store unavailable; request answered 503", path=request.path, reason=_reason(exc))
    STORE_UNAVAILABLE.labels(endpoint=_endpoint(request)).inc()
    # the database's own words stay in the log: they name hosts and statements, and the AS4 answer goes abroad
    return _try_again(
        request,
        "store unavailable",
        "the message store cannot be reached (the database is down, restarting or too busy; the gateway's log "
        "has its error), so the request was probably not kept",
    )


def _disk_full(request: web.Request, exc: Exception) -> web.Response:
    """A request that could not be kept because a disk is full: the submitter and the partner's AS4 sender try
    again (the same MessageId), and succeed once an operator has made space."""
    log.error(
        "a disk is full: the request was not kept and was answered 503; make space on the file system the reason "
        "names (the data folder's, the SQLite database's, or the PostgreSQL server's): the sender tries again",
        path=request.path,
        data_dir=str(request.app[NODE].settings.data_dir),
        reason=_reason(exc),
    )
    DISK_FULL.labels(endpoint=_endpoint(request)).inc()
    return _try_again(
        request,
        "disk full",
        "the gateway's disk is full, so the request was not kept; its operator has been told (the log names the "
        "folder)",
    )


def _try_again(request: web.Request, error: str, why: str) -> web.Response:
    """503 with Retry-After: JSON for the REST API, plain text for an AS4 sender."""
    detail = f"{why}; send it again after {_RETRY_AFTER_SECONDS} s (Retry-After)"
    headers = {"Retry-After": _RETRY_AFTER_SECONDS}
    if _endpoint(request) == "api":
        return web.json_response({"error": error, "detail": detail}, status=503, headers=headers)
    return web.Response(status=503, text=detail, headers=headers)


def _endpoint(request: web.Request) -> str:
    return "api" if request.path.startswith("/api/") else "as4"


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def _refuse_shared_api_and_admin_token(
    api: SecretStr | None, admin: SecretStr | None, named: dict[str, str]
) -> None:
    """The national system's token must not open the admin API: whoever holds it could then edit profiles."""
    if api is None:
        return
    token = api.get_secret_value()
    if admin is not None and hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
        raise ConfigError(
            "[api].token_env and [admin].token_env hold the same token, so the national system could edit partner "
            "profiles; give the admin API a token of its own"
        )
    name = named.get(hashlib.sha256(token.encode()).hexdigest())
    if name is not None:
        raise ConfigError(
            f"[api].token_env holds the token of administrator {name!r} in [admin].tokens_file, so the national "
            f"system could edit partner profiles; give {name!r} a token of its own ('permit-gateway admin token "
            f"{name}') or the national API another token"
        )


def create_app(settings: Settings, *, clock: Clock | None = None, watch_outbox: bool = True) -> web.Application:
    """The gateway's one aiohttp application: the AS4 endpoint, the REST API and the background work."""
    app = web.Application(
        client_max_size=64 * 1024 * 1024,
        middlewares=[access.national_api_access, rest.json_errors, store_unavailable],
    )
    app[SETTINGS] = settings
    # Settings that cannot work stop the start here, before the store is opened and "gateway started" logged.
    app[API_TOKEN] = settings.api.token()
    app[ADMIN_TOKEN] = settings.admin.token()
    app[ADMIN_NAMED] = settings.admin.named_tokens()
    _refuse_shared_api_and_admin_token(app[API_TOKEN], app[ADMIN_TOKEN], app[ADMIN_NAMED])
    app[PROXY] = proxy_settings(settings.outbound)
    if settings.keys.keystore is None:
        require_own_key_files(settings.keys.private_key, settings.keys.certificate)
    if app[API_TOKEN] is None:
        log.info(
            "the national REST API and /metrics answer only clients on this host; set [api].token_env to "
            "open them to others with a bearer token"
        )
    app[CLOCK] = clock or SystemClock()
    app[rest.READINESS] = rest.Readiness()
    if watch_outbox:  # first: an outbox folder that cannot work stops the start before anything runs
        app.cleanup_ctx.append(folder.folders_ctx)
    app.cleanup_ctx.append(_node_ctx)
    app.cleanup_ctx.append(_profiles_ctx)
    app.cleanup_ctx.append(_background_ctx)
    if watch_outbox:
        app.cleanup_ctx.append(folder.outbox_ctx)
    app.router.add_routes(as4_routes)
    app.router.add_routes(rest.routes)
    app.router.add_routes(admin.routes)
    return app
