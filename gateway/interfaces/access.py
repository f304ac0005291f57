"""Who may use the national REST API (``/api/v1`` outside ``/admin``) and ``/metrics``.

The listener that serves them also serves ``/as4`` to partners, so they must not answer whoever reaches the
port. With ``[api].token_env`` set, every request needs ``Authorization: Bearer <token>``. Without it only
clients on this host are answered, and a request that came through a proxy (it carries ``Forwarded`` or
``X-Forwarded-For``) is not taken for one: a proxy on this host would otherwise open the API to the network.
The admin API has its own token (gateway/interfaces/admin.py); ``/health``, ``/ready`` and ``/as4`` are open.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import SecretStr

from gateway.interfaces.keys import API_TOKEN

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")
_GUARDED = ("/api/", "/metrics")
_ADMIN = "/api/v1/admin/"


def bearer_token(request: web.Request) -> bytes | None:
    """The bytes of an ``Authorization: Bearer`` credential as sent (a header that is not UTF-8 included); None
    without one, an empty one included: no token may match it."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    token = given.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token.encode("utf-8", "surrogateescape")


def bearer_matches(request: web.Request, token: SecretStr) -> bool:
    """True when the request carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    given = bearer_token(request)
    return given is not None and hmac.compare_digest(given, token.get_secret_value().encode())


def is_local(request: web.Request) -> bool:
    """True for a client on this host that did not come through a proxy."""
    if any(name in request.headers for name in _PROXY_HEADERS):
        return False
    return is_loopback(request.remote)


def is_loopback(remote: str | None) -> bool:
    """True for a loopback peer address (IPv4, IPv6 or IPv4-mapped IPv6); False for anything else."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _guarded(path: str) -> bool:
    return path.startswith(_GUARDED) and not path.startswith(_ADMIN)


def _refusal(request: web.Request, token: SecretStr | None) -> web.Response | None:
    if token is not None:
        if bearer_matches(request, token):
            return None
        return web.json_response(
            {
                "error": "API credential missing or wrong",
                "fix": "send Authorization: Bearer <token>, the token in the variable [api].token_env names",
            },
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="permit-gateway-api"'},
        )
    if is_local(request):
        return None
    return web.json_response(
        {
            "error": f"{request.path} answers only clients on this host, and this request came from "
            f"{request.remote or 'an unknown address'}"
            + (" through a proxy" if any(h in request.headers for h in _PROXY_HEADERS) else ""),
            "fix": "set [api].token_env to the environment variable holding a long random token, restart, and "
            "send Authorization: Bearer <token>",
        },
        status=403,
    )


@web.middleware
async def national_api_access(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a request to the national REST API or /metrics that is neither authenticated nor local."""
    if not _guarded(request.path):
        return await handler(request)
    refusal = _refusal(request, request.app[API_TOKEN])
    return refusal if refusal is not None else await handler(request)
