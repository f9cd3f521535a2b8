"""The process's TLS client context: made once, when a ``wss://`` or ``https://`` URL first
needs it, and shared by the websocket and the REST client.

Loading the trusted CA certificates is what a context costs (about 30 ms of CPU on a 2-core
host; trio-websocket made one per connection, httpx one per client): a book stream made two
at every start, and a fleet starts a hundred streams at once. The certificates are the
system's (``ssl.create_default_context``; OpenSSL honours ``SSL_CERT_FILE`` and
``SSL_CERT_DIR``), the same for both clients. Verification and host-name checks stay on.

A REST client whose URLs are plain ``http://`` gets a context that trusts nothing: no TLS is
expected there, and none could succeed (httpx would otherwise load the certificates for a
client that never uses them).
"""

from __future__ import annotations

import functools
import ssl
from urllib.parse import urlsplit


@functools.cache
def client_context() -> ssl.SSLContext:
    """The shared verifying client context (system CA certificates, host names checked)."""
    return ssl.create_default_context()


def for_websocket(url: str) -> ssl.SSLContext | None:
    """trio-websocket's ``ssl_context`` for ``url``: the shared context for ``wss://``, None
    for ``ws://`` (which takes none)."""
    return client_context() if urlsplit(url).scheme == "wss" else None


def for_http(url: str) -> ssl.SSLContext:
    """httpx's ``verify`` for a client that fetches URLs of ``url``'s scheme: the shared
    context for ``https://``; for anything else a verifying context with no trusted
    certificate (it refuses any TLS peer)."""
    if urlsplit(url).scheme == "https":
        return client_context()
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname, no CAs
