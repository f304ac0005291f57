"""One-Way/Pull, receiving side: fetch what a partner has for us from its endpoint (``pull.receive_by_pulling``).

For an authority whose gateway cannot be reached from outside: it only ever opens connections. Each pull is a
signed PullRequest for the partner's MPC; a user message in answer goes through the very receive path a
pushed one takes (decrypt, verify, duplicates, validate, store message and receipt together, deliver), and
the stored receipt (or the error signal) is then POSTed to the partner's endpoint. A crash or a lost POST
between the two is repaired by the partner: it offers the message again after its receipt timeout, the
duplicate detection finds it, and the stored receipt goes out again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import structlog

from gateway.as4 import (
    MAX_SIGNAL_BYTES,
    EbmsCode,
    EbmsError,
    ErrorReceived,
    Outgoing,
    PullRequest,
    build_pull_request,
    is_empty_mpc,
    message_id_for,
    mime,
    parse_pull_answer,
)
from gateway.as4.envelope import parse_envelope
from gateway.as4.header import parse_message_info
from gateway.clock import Clock
from gateway.inbound.http import IN_MEMORY_BYTES
from gateway.inbound.receive import Pulled, Receiver
from gateway.metrics import PULLS_SENT
from gateway.outbound.proxy import NO_PROXY, ProxySettings, redirected
from gateway.outbound.tls import TlsContexts, TlsSettingsError
from gateway.profiles.keystore import OwnKeys
from gateway.profiles.trust import Partner, Partners
from gateway.settings import IdentitySettings
from gateway.store import PayloadStore
from gateway.store.payloads import IncomingFile
from gateway.tasks import cancel_all

log = structlog.get_logger("gateway.inbound.pull")

_READ_CHUNK = 256 * 1024
MAX_PER_RUN = 100
"""Messages pulled from one partner in one run at most, so one busy partner cannot starve the others."""
_HEAD_BYTES = 1024 * 1024
"""What is read of a pulled message over the size limit, for its eb:MessageId: its first MIME part, the SOAP
envelope, is far smaller (some 100 KiB with 100 supporting documents), and no limit is below 1 MiB."""


class PullFailed(Exception):
    """One exchange with the partner failed; the message says how (logged, counted, retried next interval)."""


class _TooLarge(PullFailed):
    """The partner handed us a message over ``[inbound].max_message_bytes``; ``head`` is its start."""

    def __init__(self, content_type: str, head: bytes, size: str) -> None:
        super().__init__(f"the pulled message is {size}")
        self.content_type = content_type
        self.head = head
        self.size = size


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    content_type: str
    body: bytes
    file: IncomingFile | None = None
    """A large answer (a pulled message over ``MAX_SIGNAL_BYTES``), spooled to the data folder."""

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class Puller:
    def __init__(
        self,
        *,
        receiver: Receiver,
        payloads: PayloadStore,
        max_message_bytes: int,
        partners: Partners,
        identity: IdentitySettings,
        keys: OwnKeys,
        clock: Clock,
        session: aiohttp.ClientSession,
        http_timeout: float,
        on_accepted: Callable[[], None],
        tls_passphrase: bytes | None = None,
        proxy: ProxySettings = NO_PROXY,
    ) -> None:
        self._receiver = receiver
        self._payloads = payloads
        self._max_message_bytes = max_message_bytes
        self._partners = partners
        self._identity = identity
        self._keys = keys
        self._clock = clock
        self._session = session
        self._http_timeout = http_timeout
        self._timeout = aiohttp.ClientTimeout(total=http_timeout)
        self._pull_timeout = aiohttp.ClientTimeout(total=None, sock_connect=http_timeout, sock_read=http_timeout)
        self._on_accepted = on_accepted
        self._tls = TlsContexts(tls_passphrase)
        self._proxy = proxy
        self._next_pull: dict[str, float] = {}
        self._draining: dict[str, asyncio.Task[int]] = {}

    def use_partners(self, partners: Partners) -> None:
        self._partners = partners
        self._tls.clear()  # the reload may have replaced a CA bundle or client certificate under its old path

    def use_keys(self, keys: OwnKeys) -> None:
        self._keys = keys

    def pulled_from(self) -> list[Partner]:
        """The partners we pull from: ``pull.receive_by_pulling``, enabled, and not ourselves."""
        return [
            p
            for p in self._partners
            if p.profile.pull.receive_by_pulling
            and p.profile.enabled
            and p.profile.party_id != self._identity.party_id
        ]

    async def run_once(self) -> int:
        """Start pulling from every partner whose interval has passed and that is not being pulled from already;
        returns how many started. Each partner is pulled on its own, so one that takes our PullRequest and never
        answers delays only what we pull from it."""
        now = time.monotonic()
        due = [
            p
            for p in self.pulled_from()
            if self._next_pull.get(p.profile.id, 0.0) <= now and p.profile.id not in self._draining
        ]
        for partner in due:
            task = asyncio.create_task(self._drain_reported(partner), name=f"pull {partner.profile.id}")
            self._draining[partner.profile.id] = task
        return len(due)

    async def close(self) -> None:
        await cancel_all(list(self._draining.values()))

    async def _drain_reported(self, partner: Partner) -> int:
        try:
            return await self._drain(partner)
        except Exception as exc:
            PULLS_SENT.labels(partner=partner.profile.id, outcome="failed").inc()
            log.error("pulling failed", partner=partner.profile.id, reason=repr(exc))
            return 0
        finally:
            del self._draining[partner.profile.id]

    async def _drain(self, partner: Partner) -> int:
        """Pull until the partner's MPC is empty (or a pull fails, or ``MAX_PER_RUN``)."""
        pulled = 0
        try:
            while pulled < MAX_PER_RUN and await self.pull_once(partner):
                pulled += 1
        finally:
            self._next_pull[partner.profile.id] = time.monotonic() + partner.profile.pull.interval_seconds
        return pulled

    async def pull_once(self, partner: Partner) -> bool:
        """One PullRequest to ``partner``; True when a message came (and was received or refused)."""
        request = self._pull_request(partner)
        try:
            answer = await self._post(partner, request, spool=True)
        except _TooLarge as exc:
            return await self._refuse_too_large(partner, exc)
        except PullFailed as exc:
            return self._failed(partner, str(exc))
        try:
            return await self._take(partner, request, answer)
        finally:
            answer.close()

    async def _take(self, partner: Partner, request: Outgoing, answer: _Answer) -> bool:
        name = partner.profile.id
        if answer.file is None:
            try:
                now = self._clock.now()
                event = parse_pull_answer(
                    answer.content_type, answer.body, sent=request, policy=partner.policy, now=now
                )
            except EbmsError as exc:  # no ebMS answer in it: an HTTP error (a proxy's page) says more than 0003
                return self._failed(partner, str(exc) if _ok(answer) else _http_error(partner, answer))
            if event is not None:
                return self._refused(partner, event)
        if not _ok(answer) or (not answer.body and answer.file is None):
            return self._failed(partner, _http_error(partner, answer))
        pulled = Pulled(partner_id=name, mpc=partner.profile.pull.mpc)
        reception = await self._receiver.receive(answer.content_type, answer.file or answer.body, pulled=pulled)
        if reception.record is not None and not reception.duplicate:
            self._on_accepted()
        PULLS_SENT.labels(partner=name, outcome="message").inc()
        # a message refused before it was stored has no record: its id as it came, unverified, if it can be read
        pulled_id = reception.record.message_id if reception.record is not None else None
        pulled_id = pulled_id or _user_message_id(answer.content_type, answer.body)
        return await self._send_signal(partner, reception.response, pulled_id)

    def _pull_request(self, partner: Partner) -> Outgoing:
        pull = PullRequest(
            message_id=message_id_for(self._identity.party_id, str(uuid.uuid4())),
            timestamp=self._clock.now(),
            mpc=partner.profile.pull.mpc,
        )
        suite = partner.policy.suite  # signed like our receipts to this partner: with our key of its suite
        return build_pull_request(pull, key=self._keys.signing_for(suite, partner=partner.profile.id), suite=suite)

    def _failed(self, partner: Partner, reason: str) -> bool:
        PULLS_SENT.labels(partner=partner.profile.id, outcome="failed").inc()
        log.warning("pull failed", partner=partner.profile.id, reason=reason)
        return False

    def _refused(self, partner: Partner, event: ErrorReceived) -> bool:
        if is_empty_mpc(event):
            PULLS_SENT.labels(partner=partner.profile.id, outcome="empty").inc()
            return False
        described = "; ".join(
            f"{e.code} {e.short_description}: {e.detail or e.description or ''}" for e in event.errors
        )
        PULLS_SENT.labels(partner=partner.profile.id, outcome="failed").inc()
        log.warning("partner refused our PullRequest", partner=partner.profile.id, reason=described)
        return False

    async def _refuse_too_large(self, partner: Partner, exc: _TooLarge) -> bool:
        """Tell the partner, with a signed error signal about the message, that it cannot be taken: offered
        again, it would be refused again until it fails there as a missing receipt, nobody told why."""
        limit = self._max_message_bytes
        detail = (
            f"the pulled message is {exc.size}, over the receiving gateway's limit [inbound].max_message_bytes = "
            f"{limit}; send it with fewer or smaller supporting documents, or agree with the receiving authority "
            "to raise its [inbound].max_message_bytes"
        )
        message_id = _user_message_id(exc.content_type, exc.head)
        if message_id is None:
            unread = "its eb:MessageId could not be read from its first MIME part, so the partner is not told"
            return self._failed(partner, f"{detail}; {unread} (it offers the message again until it fails there)")
        error = EbmsError(EbmsCode.PROCESSING_MODE_MISMATCH, detail, ref_to_message_id=message_id)
        signal = self._receiver.refuse(error, exc.content_type, partner)
        PULLS_SENT.labels(partner=partner.profile.id, outcome="message").inc()
        return await self._send_signal(partner, signal, message_id)

    async def _send_signal(self, partner: Partner, signal: Outgoing, pulled_id: str | None) -> bool:
        """POST the receipt (or error signal) for the pulled message ``pulled_id``; False stops this run's
        pulls."""
        try:
            answer = await self._post(partner, signal)
        except PullFailed as exc:
            PULLS_SENT.labels(partner=partner.profile.id, outcome="receipt_failed").inc()
            log.warning(
                "receipt or error signal for a pulled message not delivered; the partner offers the message again",
                partner=partner.profile.id,
                message_id=pulled_id,
                signal=signal.message_id,
                reason=str(exc),
            )
            return False
        if not 200 <= answer.status < 300:
            PULLS_SENT.labels(partner=partner.profile.id, outcome="receipt_failed").inc()
            log.warning(
                "partner refused the receipt for a pulled message",
                partner=partner.profile.id,
                message_id=pulled_id,
                signal=signal.message_id,
                http_status=answer.status,
                answer=answer.body[:2000].decode("utf-8", errors="replace"),
            )
            return False
        return True

    async def _post(self, partner: Partner, outgoing: Outgoing, *, spool: bool = False) -> _Answer:
        """POST ``outgoing``; with ``spool`` a large answer (a pulled message) is written to the data folder as
        it arrives, under the same size limit as a pushed one, with a time limit per read instead of in all."""
        endpoint = partner.profile.endpoint_url
        timeout = self._proxy.timeout(endpoint, self._pull_timeout if spool else self._timeout, self._http_timeout)
        try:
            context = self._tls.get(partner.profile.tls)
        except TlsSettingsError as exc:
            raise PullFailed(str(exc)) from None
        route = self._proxy.route(endpoint)
        proxy = route.proxy
        try:
            async with self._session.post(
                endpoint,
                data=outgoing.body,
                headers={"Content-Type": outgoing.content_type, **route.headers},
                timeout=timeout,
                ssl=context or True,
                proxy=proxy,
                proxy_headers=route.proxy_headers,
                allow_redirects=False,
            ) as response:
                if proxy is not None and self._proxy.answered_for_partner(endpoint, response.status):
                    raise PullFailed(self._proxy.refused(response.status, answering=f"to our POST to {endpoint}"))
                if 300 <= response.status < 400:
                    location = response.headers.get("Location")
                    raise PullFailed(redirected(response.status, location, endpoint, partner.profile.id))
                content_type = response.headers.get("Content-Type", "")
                length = response.content_length
                if not spool:  # the answer to a receipt or error signal: empty, or a signal at most
                    return _Answer(response.status, content_type, await _signal_answer(response, endpoint))
                if length is not None and length <= IN_MEMORY_BYTES:
                    return _Answer(response.status, content_type, await response.read())
                if length is not None and length > self._max_message_bytes and 200 <= response.status < 300:
                    raise _TooLarge(content_type, await _head(response), f"{length} bytes")  # the rest is not read
                return await self._spooled(response, content_type)
        except (aiohttp.ClientError, TimeoutError) as exc:
            problem = self._proxy.problem(exc, self._http_timeout, endpoint) if proxy is not None else None
            if problem is not None:
                raise PullFailed(f"POST to {endpoint} not sent: {problem}") from None
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            through = self._proxy.through(exc) if proxy is not None else ""
            raise PullFailed(f"POST to {endpoint}: {reason}{through}") from None

    async def _spooled(self, response: aiohttp.ClientResponse, content_type: str) -> _Answer:
        incoming = self._payloads.incoming()
        head = bytearray()
        try:
            async for chunk in response.content.iter_chunked(_READ_CHUNK):
                if incoming.size + len(chunk) > self._max_message_bytes:
                    raise _TooLarge(content_type, bytes(head), f"more than {self._max_message_bytes} bytes")
                incoming.write(chunk)
                if len(head) < _HEAD_BYTES:
                    head += chunk
            if incoming.size > MAX_SIGNAL_BYTES:
                return _Answer(response.status, content_type, b"", incoming)
            body = b"".join(incoming.chunks())
        except BaseException:
            incoming.close()
            raise
        incoming.close()
        return _Answer(response.status, content_type, body)


def _ok(answer: _Answer) -> bool:
    return 200 <= answer.status < 300


def _http_error(partner: Partner, answer: _Answer) -> str:
    snippet = answer.body[:500].decode("utf-8", errors="replace") or "(empty body)"
    return (
        f"HTTP {answer.status}: {snippet} (from {partner.profile.endpoint_url}, no ebMS answer in it: the partner's "
        "endpoint, or a proxy before it, failed; pulled again at the next interval)"
    )


async def _head(response: aiohttp.ClientResponse) -> bytes:
    head = bytearray()
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        head += chunk
        if len(head) >= _HEAD_BYTES:
            break
    return bytes(head)


def _user_message_id(content_type: str, head: bytes) -> str | None:
    """The eb:MessageId of the user message whose body starts with ``head``, read (unverified) from its first
    MIME part; None when that part is not all there or is not a UserMessage envelope."""
    root = bytearray()
    try:
        for event in mime.MimeReader(content_type).feed(head):
            if isinstance(event, mime.PartData):
                root += event.data
            elif isinstance(event, mime.PartEnded):
                incoming = parse_envelope(bytes(root))
                return parse_message_info(incoming.unit)[0] if incoming.kind == "UserMessage" else None
    except EbmsError:
        return None
    return None


async def _signal_answer(response: aiohttp.ClientResponse, endpoint: str) -> bytes:
    """At most ``MAX_SIGNAL_BYTES``: a partner's answer to a signal is no message, and must not fill our memory."""
    body = bytearray()
    while chunk := await response.content.read(_READ_CHUNK):
        body += chunk
        if len(body) > MAX_SIGNAL_BYTES:
            raise PullFailed(
                f"POST to {endpoint}: the answer to our signal is over {MAX_SIGNAL_BYTES} bytes, the largest signal "
                "taken (an answer to a receipt is empty, or an ebMS signal); the partner's administrator checks what "
                "its endpoint answers to a receipt"
            )
    return bytes(body)
