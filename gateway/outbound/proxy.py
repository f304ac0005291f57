"""The outbound HTTP proxy every request to a partner goes through (``[outbound] proxy``), and what its failures
say: a proxy that refuses us is named as such, never taken for the partner being down.

Deliveries to the national system never use it: that traffic is internal.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from gateway.settings import OutboundSettings

CONNECT_MARGIN_SECONDS = 0.25
"""How much later than the connection's own limit a request's whole limit ends, at the least, when it goes
through the proxy: enough that the connection's fires first, and the time-out is told as the proxy's."""
FIX = "check [outbound] proxy, proxy_user and proxy_password_env (and no_proxy for partners reached directly)"


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
        when the request has only limits per read, and reads as a partner that is slow. aiohttp's rounding of
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

    def problem(self, exc: BaseException, timeout: float) -> str | None:
        """What went wrong with the proxy when a request through it raised ``exc``, or None if it is not
        about the proxy."""
        if self.url is None:
            return None
        if isinstance(exc, aiohttp.ClientProxyConnectionError):
            cause = exc.os_error.strerror or str(exc.os_error) or "refused"
            return f"cannot connect to the outbound proxy {self.shown} ({cause}); is it up and reachable? {FIX}"
        if isinstance(exc, aiohttp.ClientHttpProxyError):
            return self.refused(exc.status, exc.message, "to CONNECT")
        if isinstance(exc, aiohttp.ConnectionTimeoutError):  # the connection is the proxy's (and its CONNECT)
            return (
                f"the outbound proxy {self.shown} did not open the connection within the time-out ([outbound] "
                f"http_timeout_seconds = {timeout:g} s); is it up and reachable? {FIX}"
            )
        return None

    def through(self, exc: BaseException) -> str:
        """What to add to a transport failure of a request that went through the proxy: a time-out may be the
        proxy's as well as the partner's."""
        if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
            return (
                f" (sent through the outbound proxy {self.shown}: the proxy or the partner is down or slow; if every "
                f"partner times out, {FIX})"
            )
        return f" (sent through the outbound proxy {self.shown})"

    def refused(self, status: int, reason: str = "", answering: str = "") -> str:
        """The proxy answered ``status`` instead of passing the request on."""
        what = f"HTTP {status}{f' {reason}' if reason else ''}{f' {answering}' if answering else ''}"
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
