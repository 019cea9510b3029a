"""HTTP provider: one bounded request, optionally resolving the host at a given DNS server.

Built on :mod:`http.client` so that the address connected to and the ``Host`` header (and TLS
server name) can differ: health can be checked through the public name as the target
region's DNS answers it (``resolve_via``), or at a region's address with the public ``Host``.

:func:`request` never raises for an unhealthy answer or a network failure: it returns a
:class:`HttpAnswer` whose ``error`` says what happened, because for a health probe a refused
connection is an observation, not a bug. Only a malformed URL raises (``ValueError``).
"""

from __future__ import annotations

import concurrent.futures
import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from dr_engine.errors import ProviderError, TransientError
from dr_engine.providers.dns.client import DnsServer, query

#: Bytes of response body kept (health pages are small; a huge body must not fill memory).
MAX_BODY = 64 * 1024

#: The system resolver (getaddrinfo) takes no timeout and cannot be interrupted: it runs here, and
#: a caller waits for it only as long as its deadline allows. A hung resolver ties up at most
#: these threads; later lookups then time out too, which is what a dead resolver means anyway.
_SYSTEM_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="dr-resolve")


@dataclass(frozen=True)
class HttpAnswer:
    """The outcome of one request: a status and body, or an error description."""

    status: int | None
    body: str
    error: str | None
    address: str
    elapsed: float

    @property
    def answered(self) -> bool:
        """True when the server sent an HTTP response (whatever its status)."""
        return self.status is not None


def redact_url(url: str) -> str:
    """The URL without any ``user:password@`` part, for messages and records."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a fixed address while naming ``host`` in the request."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a fixed address, verifying the certificate against ``host`` (SNI = host)."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def resolve(host: str, via: DnsServer | None, timeout: float) -> str:
    """The IPv4 address to connect to: ``host`` itself, its A record at ``via``, or the system's.

    Raises :class:`TransientError`/:class:`ProviderError` from the DNS provider, or
    :class:`ProviderError` when the name has no A record at ``via``.
    """
    try:
        socket.inet_aton(host)
        return host
    except OSError:
        pass
    if via is None:
        return _system_resolve(host, timeout)
    name = host
    for _ in range(8):  # follow a short CNAME chain inside the zone
        answer = query(via, name, "A", timeout=timeout)
        if answer.rdtype == "CNAME" and answer.values:
            name = answer.values[0]
            continue
        if answer.values:
            return answer.values[0]
        break
    raise ProviderError(
        f"{host} has no A record at DNS server {via}",
        hint="check the record the traffic shift maintains",
    )


def _system_resolve(host: str, timeout: float) -> str:
    """``host``'s first address from the system resolver, waiting at most ``timeout`` seconds."""
    lookup = _SYSTEM_RESOLVER.submit(socket.getaddrinfo, host, None, type=socket.SOCK_STREAM)
    try:
        found = lookup.result(timeout=max(timeout, 0.001))
    except concurrent.futures.TimeoutError as exc:
        raise TransientError(f"the system resolver did not resolve {host} within {timeout:.3g}s",
                             hint="check /etc/resolv.conf and the resolver, or give an address") from exc
    except OSError as exc:  # socket.gaierror: no such name, resolver failure
        raise TransientError(f"cannot resolve {host}: {exc}", hint="check the name and the resolver") from exc
    return str(found[0][4][0])


def request(
    url: str,
    *,
    timeout: float,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    host_header: str | None = None,
    resolve_via: DnsServer | None = None,
    tls_verify: bool = True,
) -> HttpAnswer:
    """Send one request; the whole exchange (DNS, connect, each read) is bounded by ``timeout``.

    ``host_header`` overrides the ``Host`` header (and the TLS server name) while connecting
    to the URL's host. ``resolve_via`` resolves the URL's host at that DNS server first.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {redact_url(url)!r}")
    started = time.monotonic()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    try:
        address = resolve(parts.hostname, resolve_via, timeout)
    except (TransientError, ProviderError) as exc:
        return HttpAnswer(None, "", f"DNS: {exc.message}", "", time.monotonic() - started)
    left = max(timeout - (time.monotonic() - started), 0.001)
    name = host_header.split(":")[0] if host_header else parts.hostname
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        if not tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        connection = _PinnedHTTPSConnection(name, port, address=address, timeout=left, context=context)
    else:
        connection = _PinnedHTTPConnection(name, port, address=address, timeout=left)
    send_headers = dict(headers or {})
    if host_header:
        send_headers["Host"] = host_header
    try:
        connection.request(method, path, body=body, headers=send_headers)
        response = connection.getresponse()
        data = response.read(MAX_BODY)
        return HttpAnswer(
            response.status, data.decode("utf-8", errors="replace"), None, address, time.monotonic() - started
        )
    except TimeoutError:
        return HttpAnswer(None, "", f"no answer within {left:.3g}s", address, time.monotonic() - started)
    except (OSError, http.client.HTTPException) as exc:
        return HttpAnswer(None, "", f"{type(exc).__name__}: {exc}", address, time.monotonic() - started)
    finally:
        connection.close()
