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
