"""The outbound HTTP proxy every request to a partner goes through (``[outbound] proxy``), and what its failures
say: a proxy that refuses us is named as such, never taken for the partner being down.

Deliveries to the national system never use it: that traffic is internal.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import urlsplit

import aiohttp

from gateway.settings import OutboundSettings

CONNECT_MARGIN_SECONDS = 0.25
"""How much later than the connection's own limit a request's whole limit ends, at the least, when it goes
through the proxy: enough that the connection's fires first, and the time-out is told as the connection's (the
proxy's, or the partner's TLS handshake through its tunnel)."""
FIX = "check [outbound] proxy, proxy_user and proxy_password_env (and no_proxy for partners reached directly)"
UNREACHED = (502, 503, 504)
"""A proxy's answers to a CONNECT when it could not reach the partner (squid: ERR_CONNECT_FAIL, a time-out)."""


class Waited(Enum):
    """What the connection phase of a request through the proxy waited for when its limit ran out."""

    POOL = "a free connection of this gateway's pool: neither the proxy nor the partner was asked"
    PROXY = "the proxy: the TCP connection to it, or its answer to the CONNECT"
    TUNNEL = "the partner's TLS handshake, through the tunnel the proxy opened"
    UNKNOWN = "the proxy's tunnel or the partner's TLS handshake through it: aiohttp's frames named neither"


_WAITED_IN = {
    "_wait_for_available_connection": Waited.POOL,
    "_start_tls_connection": Waited.TUNNEL,
    "_wrap_existing_connection": Waited.TUNNEL,
    "_create_proxy_connection": Waited.PROXY,
}
"""aiohttp's connector functions a time-out interrupts, the most telling first: its TraceConfig has no hook on the
CONNECT (and trace configs are fixed when the session is made), so the frames are what tell the phases apart."""


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """How one request goes: the ``proxy``, ``headers`` and ``proxy_headers`` arguments of ``session.post``."""

    proxy: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Added to the request: an http:// request goes to the proxy whole, its Proxy-Authorization with it."""
    proxy_headers: Mapping[str, str] | None = field(default=None, repr=False)
    """Sent on the CONNECT that tunnels an https:// request (never to the partner)."""


DIRECT = ProxyRoute()


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """``url`` None: every partner is reached directly."""

    url: str | None = None
    user: str | None = None
    authorization: str | None = field(default=None, repr=False)
    """The Proxy-Authorization value (HTTP Basic), which holds the password: never logged."""
    direct: tuple[str, ...] = ()
    """``no_proxy``: host names, ``.domain`` suffixes and IP addresses (as ``[outbound].no_proxy`` normalises them)."""

    @property
    def shown(self) -> str:
        """``HOST:PORT`` of the proxy, for logs and the timeline (never its credentials), or ``none``."""
        return urlsplit(self.url).netloc if self.url is not None else "none"

    def route(self, url: str) -> ProxyRoute:
        """How a request to ``url`` goes: through the proxy, or directly (no proxy, or ``url`` in no_proxy)."""
        if self.url is None or self._is_direct(url):
            return DIRECT
        if self.authorization is None:
            return ProxyRoute(self.url)
        credentials = {"Proxy-Authorization": self.authorization}
        if urlsplit(url).scheme.lower() == "https":
            return ProxyRoute(self.url, proxy_headers=credentials)
        return ProxyRoute(self.url, headers=credentials)

    def _is_direct(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").rstrip(".")
        with contextlib.suppress(ValueError):  # an IP address in its usual form, as no_proxy has it
            host = str(ipaddress.ip_address(host))
        return any(host == entry or _under(host, entry) for entry in self.direct)

    def timeout(self, url: str, timeout: aiohttp.ClientTimeout, seconds: float) -> aiohttp.ClientTimeout:
        """``timeout`` for a request to ``url``; through the proxy, with the connection (to the proxy, its CONNECT
        and the TLS handshake through the tunnel) limited to ``seconds`` on its own. Without that a proxy that
        takes the connection and never answers the CONNECT runs out the whole request's limit, or for ever
        when the request has only limits per read, and reads as a partner that is slow. aiohttp's limit counts
        the wait for a pooled connection too: ``waited`` tells which phase ran out. aiohttp's rounding of
        limits to whole seconds is off, as it could make the two limits fire at once."""
        if self.route(url).proxy is None:
            return timeout
        total = None if timeout.total is None else max(timeout.total, seconds + CONNECT_MARGIN_SECONDS)
        return aiohttp.ClientTimeout(
            total=total,
            connect=seconds,
            sock_read=timeout.sock_read,
            sock_connect=timeout.sock_connect,
            ceil_threshold=math.inf,
        )

    def problem(self, exc: BaseException, timeout: float, url: str) -> str | None:
        """What went wrong with the proxy when a request to ``url`` through it raised ``exc``, or None if it is
        not about the proxy."""
        if self.url is None:
            return None
        if isinstance(exc, aiohttp.ClientConnectorDNSError):  # only the proxy's host is looked up here
            cause = exc.os_error.strerror or str(exc.os_error)
            return (
                f"the outbound proxy's host {urlsplit(self.url).hostname} cannot be resolved ({cause}); check the "
                f"host name in [outbound] proxy (now {self.shown}) and this host's DNS"
            )
        if isinstance(exc, aiohttp.ClientConnectorError) and self._at_proxy(exc):
            cause = exc.os_error.strerror or str(exc.os_error) or "refused"
            return f"cannot connect to the outbound proxy {self.shown} ({cause}); is it up and reachable? {FIX}"
        if isinstance(exc, aiohttp.ClientHttpProxyError):
            partner = urlsplit(url)  # a CONNECT tunnels only https://
            return self.refused(exc.status, exc.message, "to CONNECT", f"{partner.hostname}:{partner.port or 443}")
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return self._timed_out(waited(exc), timeout)
        return None

    @staticmethod
    def partner_unreached(exc: BaseException) -> bool:
        """Whether the proxy answered the CONNECT that it could not reach the partner (``UNREACHED``): the
        partner's endpoint or the route to it is down, not the proxy, so the failure is not tagged as the
        proxy's."""
        return isinstance(exc, aiohttp.ClientHttpProxyError) and exc.status in UNREACHED

    def _at_proxy(self, exc: aiohttp.ClientConnectorError) -> bool:
        """A connection error on the way to the proxy: aiohttp's own for it, or any at its HOST:PORT but TLS
        (the TLS handshake is the partner's)."""
        if isinstance(exc, aiohttp.ClientProxyConnectionError):
            return True
        parts = urlsplit(self.url)
        return not isinstance(exc, aiohttp.ClientSSLError) and (exc.host, exc.port) == (parts.hostname, parts.port)

    def _timed_out(self, phase: Waited, timeout: float) -> str | None:
        limit = f"within the time-out ([outbound] http_timeout_seconds = {timeout:g} s)"
        if phase is Waited.PROXY:
            return f"the outbound proxy {self.shown} did not open the connection {limit}; is it up and reachable? {FIX}"
        if phase is Waited.UNKNOWN:
            return (
                f"the outbound proxy {self.shown} did not open the tunnel, or the partner did not complete its TLS "
                f"handshake through it, {limit}; if every partner times out, {FIX}"
            )
        return None

    def through(self, exc: BaseException) -> str:
        """What to add to a transport failure of a request that went through the proxy: a time-out may be the
        proxy's as well as the partner's, unless the tunnel was up or the proxy was never asked."""
        if isinstance(exc, aiohttp.ConnectionTimeoutError) and (phase := waited(exc)) is not Waited.PROXY:
            if phase is Waited.TUNNEL:
                return (
                    f" (the partner's TLS handshake did not complete in time, through the outbound proxy {self.shown} "
                    "which opened the tunnel: the partner is down or slow, not the proxy)"
                )
            if phase is Waited.POOL:
                return (
                    f" (not sent: no connection of this gateway's pool came free in time, all busy with other "
                    f"requests; neither the outbound proxy {self.shown} nor the partner was asked)"
                )
        if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
            return (
                f" (sent through the outbound proxy {self.shown}: the proxy or the partner is down or slow; if every "
                f"partner times out, {FIX})"
            )
        return f" (sent through the outbound proxy {self.shown})"

    def refused(self, status: int, reason: str = "", answering: str = "", partner: str = "") -> str:
        """The proxy answered ``status`` instead of passing the request on (to ``partner``, its HOST:PORT)."""
        what = f"HTTP {status}{f' {reason}' if reason else ''}{f' {answering}' if answering else ''}"
        if status in UNREACHED:
            return (
                f"the outbound proxy {self.shown} answered {what}: it could not reach the partner's "
                f"{partner or 'host and port'} (the partner's endpoint or the route to it may be down); it is tried "
                "again: if it lasts, ask the partner's administrator whether its endpoint is up, and the proxy's "
                "whether the proxy can reach it"
            )
        if status == 407:
            cause = (
                "it needs credentials, or refused ours: set proxy_user and, in the environment variable "
                "proxy_password_env names, the password the proxy's administrator gave"
            )
        else:
            cause = "it would not open a tunnel to the partner (a proxy rule may not allow its host or port)"
        return f"the outbound proxy {self.shown} answered {what}: {cause}; {FIX}"

    def answered_for_partner(self, url: str, status: int) -> bool:
        """Whether ``status`` of a request to ``url`` is the proxy's own refusal (407: its credentials)."""
        return status == 407 and self.route(url).proxy is not None


def _under(host: str, entry: str) -> bool:
    """``.example.org`` covers example.org and every name under it."""
    return entry.startswith(".") and (host.endswith(entry) or host == entry[1:])


NO_PROXY = ProxySettings()


def waited(exc: aiohttp.ConnectionTimeoutError) -> Waited:
    """What the connection phase was waiting for when its limit ran out, read from the aiohttp functions the
    time-out interrupted (in the chain of causes of ``exc``)."""
    names = {frame.f_code.co_name for cause in _causes(exc) for frame, _ in traceback.walk_tb(cause.__traceback__)}
    return next((phase for name, phase in _WAITED_IN.items() if name in names), Waited.UNKNOWN)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def redirected(status: int, location: str | None, endpoint: str, profile_id: str) -> str:
    """A partner's endpoint answered a redirect: not followed, since the proxy (or not) is chosen for the
    endpoint, and a redirected POST may lose its body."""
    return (
        f"the partner's endpoint {endpoint} answered HTTP {status} to {location or '(no Location header)'}: "
        f"redirects are not followed; update endpoint in our profile of the partner (the file in partner_profiles/ "
        f"with id: {profile_id}) to the URL the partner's administrator confirms"
    )


def proxy_settings(outbound: OutboundSettings) -> ProxySettings:
    """Built once at the start: a missing password variable stops it, naming the variable."""
    if outbound.proxy is None:
        return NO_PROXY
    password = outbound.proxy_password()
    authorization = None
    if outbound.proxy_user is not None and password is not None:
        authorization = aiohttp.encode_basic_auth(outbound.proxy_user, password)
    return ProxySettings(
        url=outbound.proxy, user=outbound.proxy_user, authorization=authorization, direct=outbound.no_proxy
    )
