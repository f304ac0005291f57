"""Connectivity test: send the AS4 test-service message to a partner and time the signed receipt.

The message is a real, signed user message under the ebMS test Service/Action, so it proves DNS, TCP, TLS,
the partner's AS4 stack, its trust in our certificate and ours in its receipt. Nothing is stored: the partner
answers with a receipt and does not deliver test messages. Every failure says which step failed.
"""

from __future__ import annotations

import ssl
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

import aiohttp

from gateway.as4 import (
    TEST_ACTION,
    TEST_SERVICE,
    EbmsError,
    ErrorDetail,
    ErrorReceived,
    Outgoing,
    Party,
    PartyId,
    UserMessage,
    build_user_message,
    message_id_for,
    mime,
    parse_response,
)
from gateway.as4._ns import EB
from gateway.as4.envelope import read_envelope
from gateway.as4.signals import error_detail
from gateway.clock import Clock
from gateway.errors import GatewayError
from gateway.outbound.proxy import NO_PROXY, ProxySettings, redirected
from gateway.outbound.tls import ssl_context
from gateway.profiles.keystore import OwnKeys
from gateway.profiles.model import agreement_ref
from gateway.profiles.trust import Partner
from gateway.settings import IdentitySettings


class Stage(StrEnum):
    """Where a ping stopped; ``RECEIPT_OK`` is success."""

    PROFILE = "profile"
    PROXY = "proxy"
    DNS = "dns"
    TLS = "tls"
    CONNECT = "connect"
    TIMEOUT = "timeout"
    HTTP = "http"
    EBMS_ERROR = "ebms-error"
    INVALID_RECEIPT = "invalid-receipt"
    RECEIPT_OK = "receipt"


@dataclass(frozen=True, slots=True, kw_only=True)
class PingResult:
    partner: str
    endpoint: str
    message_id: str
    stage: Stage
    detail: str
    http_status: int | None = None
    round_trip_ms: float | None = None
    error_codes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.stage is Stage.RECEIPT_OK


def ping_message(partner: Partner, identity: IdentitySettings, clock: Clock) -> UserMessage:
    """The ebMS test-service user message from us to the partner, with a fresh MessageId."""
    ours = PartyId(value=identity.party_id, type=identity.party_id_type)
    theirs = PartyId(value=partner.profile.party_id, type=partner.profile.party_id_type)
    agreement = agreement_ref(partner.profile)
    return UserMessage(
        message_id=message_id_for(identity.party_id, str(uuid.uuid4())),
        timestamp=clock.now(),
        from_party=Party(party_ids=(ours,), role=partner.profile.roles.initiator),
        to_party=Party(party_ids=(theirs,), role=partner.profile.roles.responder),
        service=TEST_SERVICE,
        action=TEST_ACTION,
        conversation_id=str(uuid.uuid4()),
        agreement_ref=agreement[0],
        agreement_ref_type=agreement[1],
        agreement_ref_pmode=agreement[2],
    )


async def ping(
    partner: Partner,
    *,
    identity: IdentitySettings,
    keys: OwnKeys,
    session: aiohttp.ClientSession,
    clock: Clock,
    timeout: float = 30.0,
    tls_passphrase: bytes | None = None,
    proxy: ProxySettings = NO_PROXY,
) -> PingResult:
    """Send one test message to ``partner`` under its profile's security suite (signed with our key of that
    suite) and report the receipt's round trip or exactly what failed."""
    message = ping_message(partner, identity, clock)
    result = _Result(partner, message.message_id)
    suite = partner.policy.suite
    try:
        partner.certificates.check(now=clock.now())
        partner.profile.endpoint_url  # noqa: B018 - refuses a partner without an endpoint, saying why
        sender = keys.signing_for(suite, partner=partner.profile.id)
        context = ssl_context(partner.profile.tls, tls_passphrase)
    except (GatewayError, OSError, ssl.SSLError) as exc:
        return result(Stage.PROFILE, f"the profile cannot be used: {exc}")
    sent = build_user_message(
        message,
        [],
        sender=sender,
        recipient_certificate=partner.certificates.encryption,
        compress=False,
        suite=suite,
    )
    return await _exchange(
        result, sent, session=session, clock=clock, timeout=timeout, context=context, proxy=proxy
    )


class _Result:
    """Builds the ``PingResult`` of one ping."""

    def __init__(self, partner: Partner, message_id: str) -> None:
        self._partner = partner
        self._message_id = message_id

    def __call__(
        self,
        stage: Stage,
        detail: str,
        *,
        status: int | None = None,
        started: float | None = None,
        codes: tuple[str, ...] = (),
    ) -> PingResult:
        elapsed = None if started is None else round((time.perf_counter() - started) * 1000, 1)
        return PingResult(
            partner=self._partner.profile.id,
            endpoint=self._partner.profile.endpoint or "(none: the partner pulls)",
            message_id=self._message_id,
            stage=stage,
            detail=detail,
            http_status=status,
            round_trip_ms=elapsed,
            error_codes=codes,
        )

    @property
    def partner(self) -> Partner:
        return self._partner


async def _exchange(
    result: _Result,
    sent: Outgoing,
    *,
    session: aiohttp.ClientSession,
    clock: Clock,
    timeout: float,
    context: ssl.SSLContext | None,
    proxy: ProxySettings,
) -> PingResult:
    endpoint = result.partner.profile.endpoint_url
    route = proxy.route(endpoint)
    via = route.proxy
    started = time.perf_counter()
    try:
        async with session.post(
            endpoint,
            data=sent.body,
            headers={"Content-Type": sent.content_type, **route.headers},
            timeout=proxy.timeout(endpoint, aiohttp.ClientTimeout(total=timeout), timeout),
            ssl=context if context is not None else True,
            proxy=via,
            proxy_headers=route.proxy_headers,
            allow_redirects=False,
        ) as response:
            body = await response.read()
            status, reason = response.status, response.reason or ""
            content_type = response.headers.get("Content-Type", "")
            location = response.headers.get("Location")
    except (aiohttp.ClientError, TimeoutError) as exc:
        if via is not None and (problem := proxy.problem(exc, timeout, endpoint)) is not None:
            stage = Stage.CONNECT if proxy.partner_unreached(exc) else Stage.PROXY
            return result(stage, problem, status=getattr(exc, "status", None), started=started)
        stage, detail = _transport_failure(exc, endpoint, timeout)
        return result(stage, detail + (proxy.through(exc) if via is not None else ""), started=started)
    if via is not None and proxy.answered_for_partner(endpoint, status):
        detail = proxy.refused(status, reason, f"to our POST to {endpoint}")
        return result(Stage.PROXY, detail, status=status, started=started)
    if 300 <= status < 400:
        detail = redirected(status, location, endpoint, result.partner.profile.id)
        return result(Stage.HTTP, detail, status=status, started=started)
    try:
        answer = parse_response(content_type, body, sent=sent, policy=result.partner.policy, now=clock.now())
    except EbmsError as exc:
        if not 200 <= status < 300:
            errors = _unverified_errors(content_type, body)
            if not errors:
                return result(
                    Stage.HTTP, f"HTTP {status} {reason}: {_snippet(body)}", status=status, started=started
                )
            detail = f"HTTP {status} {reason}: {_describe(errors)} (unverified: {exc.detail})"
            codes = tuple(e.code for e in errors)
            return result(Stage.HTTP, detail, status=status, started=started, codes=codes)
        return result(Stage.INVALID_RECEIPT, f"{exc.code.code}: {exc.detail}", status=status, started=started)
    if isinstance(answer, ErrorReceived):
        codes = tuple(e.code for e in answer.errors)
        unsigned = "" if answer.signed else " (unsigned, so unverified)"
        described = _describe(answer.errors) + unsigned
        return result(Stage.EBMS_ERROR, described, status=status, started=started, codes=codes)
    return result(Stage.RECEIPT_OK, f"signed receipt {answer.message_id} verified", status=status, started=started)


def _transport_failure(exc: BaseException, endpoint: str, timeout: float) -> tuple[Stage, str]:
    match exc:
        case aiohttp.ClientConnectorDNSError():
            return Stage.DNS, f"the host of {endpoint} cannot be resolved: {exc.os_error}"
        case aiohttp.ClientSSLError():
            return Stage.TLS, f"TLS handshake with {endpoint} failed: {exc}"
        case aiohttp.ClientConnectorError():
            return (
                Stage.CONNECT,
                f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}",
            )
        case TimeoutError() | aiohttp.ServerTimeoutError():
            return Stage.TIMEOUT, f"no answer from {endpoint} within {timeout:g} s"
    return Stage.CONNECT, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _describe(errors: tuple[ErrorDetail, ...]) -> str:
    return "; ".join(f"{e.code} {e.short_description or ''}: {e.detail or e.description or ''}" for e in errors)


def _unverified_errors(content_type: str, body: bytes) -> tuple[ErrorDetail, ...]:
    """The eb:Error elements of an answer that did not verify (an error signal signed by another party than
    the profile pins, as another gateway at the endpoint sends): read only to say what it reported."""
    try:
        root, _ = read_envelope(mime.parse(content_type, body).envelope)
    except EbmsError:
        return ()
    return tuple(error_detail(element) for element in root.iter(f"{{{EB}}}Error"))


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    return (text[:limit] + "...") if len(text) > limit else (text or "(empty body)")
