"""TLS towards a partner's endpoint, as its profile asks (CA bundle, client certificate for mutual TLS)."""

from __future__ import annotations

import ssl

from gateway.errors import GatewayError
from gateway.profiles.model import Tls


class TlsSettingsError(GatewayError):
    """A profile's TLS files cannot be used (a client key that does not match its certificate, a wrong
    passphrase, a file gone); fixed by the administrator, after which the next try uses the new files."""


def ssl_context(tls: Tls, client_key_passphrase: bytes | None = None) -> ssl.SSLContext | None:
    """The TLS context a profile asks for (CA bundle, client certificate), or None for the default."""
    if not tls.configured:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca_bundle) if tls.ca_bundle else None)
    if tls.client_certificate is not None and tls.client_key is not None:
        # with password=None OpenSSL would ask for an encrypted key's passphrase on the terminal, blocking the loop
        password = client_key_passphrase if client_key_passphrase is not None else _no_passphrase
        context.load_cert_chain(tls.client_certificate, tls.client_key, password=password)
    return context


def _no_passphrase() -> bytes:
    return b""


class TlsContexts:
    """One TLS context per distinct profile setting, built on first use and dropped at every profile reload:
    a CA bundle or client certificate replaced under the same path is read again."""

    def __init__(self, client_key_passphrase: bytes | None) -> None:
        self._passphrase = client_key_passphrase
        self._built: dict[Tls, ssl.SSLContext | None] = {}

    def get(self, tls: Tls) -> ssl.SSLContext | None:
        """The context for ``tls``; ``TlsSettingsError`` naming the files and the reason if it cannot be built."""
        if tls not in self._built:
            try:
                self._built[tls] = ssl_context(tls, self._passphrase)
            except (ssl.SSLError, OSError, ValueError, TypeError) as exc:
                raise TlsSettingsError(
                    f"the profile's TLS settings cannot be used ({exc}): check tls.ca_bundle "
                    f"({tls.ca_bundle}), tls.client_certificate ({tls.client_certificate}) and tls.client_key "
                    f"({tls.client_key}), which must be the certificate's key, encrypted with the [keys] passphrase"
                ) from None
        return self._built[tls]

    def clear(self) -> None:
        self._built = {}
