"""How `ganime serve` listens: the socket, bound before the model loads (a busy port fails at once; `::` takes
IPv6 and IPv4 alike), and an HTTP protocol with the limits an ASGI app cannot set.

`GuardedHttp` is uvicorn's httptools protocol plus: a header timeout (from connect, or from the first byte
of a later request, to the end of its headers), a body timeout (from the headers to the end of the body),
a cap on header bytes and on open connections, one Host header per request and no absolute-form target
naming another host. What it refuses is answered as JSON with the security headers and logged in the
access log, like the app's own errors (uvicorn itself answers plain text and logs nothing). Idle
keep-alive connections are closed by uvicorn's `timeout_keep_alive`.

uvicorn's own `limit_concurrency` is not used: it answers a plain-text 503 without the security headers or
a log line, per request, and keeps the connection; the cap here is on connections and answers like the app.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from ganime.errors import ConfigError
from ganime.web.security import SECURITY_HEADERS, error_answer, host_of, log_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerLimits:
    """Connection limits (seconds, bytes, connections); README, 'Public server', lists them."""

    header_timeout: float = 10.0  # connect (or a later request's first byte) -> end of the request headers
    body_timeout: float = 30.0  # end of the headers -> end of the body (bodies are at most 16 KiB)
    idle_timeout: int = 5  # keep-alive: an idle connection between requests is closed after this
    max_header_bytes: int = 16 * 1024  # request line + headers
    max_connections: int = 256  # open connections at once; more get 503 + Retry-After and are closed


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; ConfigError if the name does not resolve or the port is taken.
    '::' (and '') listen on every IPv6 and IPv4 address (dual stack) where the system allows it."""
    try:
        if host in ("::", ""):
            dual = socket.has_dualstack_ipv6()
            return socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=dual, backlog=2048)
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        return socket.create_server(addr[:2], family=family, backlog=2048)
    except socket.gaierror as e:
        raise ConfigError(f"cannot resolve --host {host!r}: {e}") from None
    except OSError as e:
        why = os.strerror(e.errno) if e.errno else str(e)  # create_server's text adds the address again
        raise ConfigError(f"cannot listen on {host}:{port} ({why}); pick another --port") from None


def dual_stack(sock: socket.socket) -> bool:
    """True when an IPv6 socket also accepts IPv4 connections."""
    if sock.family != socket.AF_INET6:
        return False
    return not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools on CPython
    httptools = None
    HttpToolsProtocol = object  # type: ignore[assignment,misc]


class GuardedHttp(HttpToolsProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's httptools protocol with ServerLimits (class attributes; `protocol` makes a configured one)."""

    limits = ServerLimits()
    error_limits: dict | None = None  # the app's input limits, in the JSON of a 4xx

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._deadline: Any = None
        self._header_bytes = 0
        if len(self.connections) > self.limits.max_connections:
            return self._refuse(503, "too many connections to this server; retry", {"Retry-After": "1"})
        self._arm(self.limits.header_timeout, "the request headers took too long")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float, why: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, why)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, why: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:  # too late for a 408: just hang up
                self.transport.close()
                return
            cycle.disconnected = True  # the app waiting for the body sees the client leave
            cycle.message_event.set()
        self._refuse(408, why)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as e:
            refused = e.__context__ if isinstance(e.__context__, _Refused) else None
            if refused is not None:
                self._refuse(refused.status, refused.message)
            else:
                self._refuse(400, "invalid HTTP request")

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "invalid HTTP request")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._deadline is None:  # a later request on a kept-alive connection
            self._arm(self.limits.header_timeout, "the request headers took too long")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.limits.max_header_bytes:
            raise _Refused(431, f"request headers over {self.limits.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        hosts = [v for k, v in self.headers if k == b"host"]
        if len(hosts) > 1:
            raise _Refused(400, "more than one Host header")
        if not self.url.startswith((b"/", b"*")):
            # absolute form (GET http://host/path): RFC 9112 3.2.2 makes its host the one that counts, so it
            # must be the Host header's (which the app checks); a CONNECT-style authority is refused too
            try:
                named = httptools.parse_url(self.url).host
            except httptools.HttpParserInvalidURLError:
                named = None
            given = host_of(hosts[0].decode("latin-1")) if hosts else None
            if named is None or given is None or named.decode("latin-1").lower().strip("[]") != given:
                raise _Refused(400, "the request target names another host than the Host header")
        self._disarm()
        super().on_headers_complete()
        if any(k == b"transfer-encoding" or (k == b"content-length" and v.strip() != b"0") for k, v in self.headers):
            self._arm(self.limits.body_timeout, "the request body took too long")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _refuse(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """Answer a JSON error with the security headers, log it, close the connection."""
        self._disarm()
        if self.transport.is_closing():
            return
        status, hs, body = error_answer(status, message, headers, self.error_limits)
        from http import HTTPStatus

        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
        head += [k + b": " + v for k, v in [*hs, *SECURITY_HEADERS, (b"connection", b"close")]]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()
        scope = self.scope or {}
        request = "-"
        if scope.get("method"):
            request = f"{scope['method']} {self.url.decode('latin-1')} HTTP/{scope.get('http_version', '1.1')}"
        client = self.client[0] if self.client else "-"
        log_line(client, request, status, len(body), time.time())


def protocol(limits: ServerLimits, error_limits: dict | None = None) -> type:
    """A GuardedHttp class with these limits (uvicorn builds one protocol object per connection)."""
    return type("GuardedHttp", (GuardedHttp,), {"limits": limits, "error_limits": error_limits})


def serve(
    app: Any,
    sock: socket.socket,
    limits: ServerLimits,
    *,
    forwarded_allow_ips: str = "127.0.0.1",
    error_limits: dict | None = None,
) -> None:
    """Run `app` with uvicorn on the bound `sock` until Ctrl+C."""
    import uvicorn

    server = uvicorn.Server(config(app, limits, forwarded_allow_ips=forwarded_allow_ips, error_limits=error_limits))
    server.run(sockets=[sock])


def config(app: Any, limits: ServerLimits, *, forwarded_allow_ips: str = "127.0.0.1", error_limits: dict | None = None):
    """uvicorn's Config for `app` with GuardedHttp and the limits uvicorn has itself."""
    import uvicorn

    if httptools is None:  # pragma: no cover
        log.warning("httptools is missing: no header or body timeouts (pip install 'uvicorn[standard]')")
    return uvicorn.Config(
        app,
        http=protocol(limits, error_limits) if httptools is not None else "h11",
        log_level="warning",
        access_log=False,  # ganime.access logs every answer (security.Guard and GuardedHttp)
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        timeout_keep_alive=limits.idle_timeout,
        h11_max_incomplete_event_size=limits.max_header_bytes,
    )
