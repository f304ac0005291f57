"""TLS towards a partner's endpoint, as its profile asks (CA bundle, client certificate for mutual TLS)."""

from __future__ import annotations

import ssl

from gateway.profiles.model import Tls


def ssl_context(tls: Tls, client_key_passphrase: bytes | None = None) -> ssl.SSLContext | None:
    """The TLS context a profile asks for (CA bundle, client certificate), or None for the default."""
    if not tls.configured:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca_bundle) if tls.ca_bundle else None)
    if tls.client_certificate is not None and tls.client_key is not None:
        context.load_cert_chain(tls.client_certificate, tls.client_key, password=client_key_passphrase)
    return context


class TlsContexts:
    """One TLS context per distinct profile setting, built on first use and dropped at every profile reload:
    a CA bundle or client certificate replaced under the same path is read again."""

    def __init__(self, client_key_passphrase: bytes | None) -> None:
        self._passphrase = client_key_passphrase
        self._built: dict[Tls, ssl.SSLContext | None] = {}

    def get(self, tls: Tls) -> ssl.SSLContext | None:
        if tls not in self._built:
            self._built[tls] = ssl_context(tls, self._passphrase)
        return self._built[tls]

    def clear(self) -> None:
        self._built = {}
