"""What stands between the app and a network: allowed hosts, write tokens, CSRF, rate limits, headers, logs.

`Guard` is one ASGI middleware that does, in order: the access log line (common log format), security
headers on every answer, the Host check (DNS rebinding), HEAD/OPTIONS and a correct `Allow`, the
per-client rate limit, and for state-changing requests the read-only switch, the Origin check and the
admin token. `ServePolicy` is the frozen value it is built from; `ganime serve` fills it from its flags.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import secrets
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

access_log = logging.getLogger("ganime.access")

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_ENV = "GANIME_TOKEN"
# The page loads only its own files: no inline script, no third-party origin, never inside a frame.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_OURS = {name for name, _ in SECURITY_HEADERS}
BROWSER_PREFIX = "/browser/"  # web/site.py's page sets its own CSP (WebAssembly); see Guard


@dataclass(frozen=True)
class ServePolicy:
    """Who may do what, and how much.

    Args:
        token: admin token that POST/DELETE must carry (`Authorization: Bearer ...`); None = writes open.
        read_only: refuse every state-changing request (the gallery can be read, not changed).
        allowed_hosts: names the Host header may carry (no port); "*" allows any (a proxy checks it).
        rate: cost units per second per client (0 = no limit); a request costs 1 plus its pixels / 65536.
        burst: cost units a client may spend at once before the rate applies.
        max_items: gallery quota: saves beyond it are refused (0 = none).
        max_clients: clients remembered by the rate limiter (the least recent are forgotten first).
    """

    token: str | None = None
    read_only: bool = False
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    rate: float = 10.0
    burst: float = 200.0
    max_items: int = 10_000
    max_clients: int = 10_000

    @property
    def writes(self) -> str:
        """'off', 'token' or 'open': what the page shows and /api/info reports."""
        return "off" if self.read_only else "token" if self.token else "open"


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_names(bound: str) -> list[str]:
    """Names and addresses a browser may use to reach a server bound to `bound` (for a wildcard: this
    machine's host name and its addresses), loopback ones excluded."""
    host = bound.strip("[]")
    if host not in ("0.0.0.0", "::", ""):
        return [] if is_loopback(host) else [host.lower()]
    names = [socket.gethostname().lower()]
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
        names += [info[4][0] for info in infos]
    except OSError:
        pass
    try:  # the address of the interface with the default route; a UDP "connect" sends nothing
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            names.append(s.getsockname()[0])
    except OSError:
        pass
    out: list[str] = []
    for n in names:
        if n and not is_loopback(n) and n not in out and n not in ("0.0.0.0", "::"):
            out.append(n)
    return out


def new_token() -> str:
    return secrets.token_urlsafe(24)


def host_of(value: str) -> str:
    """'Example.com:8000' -> 'example.com'; '[::1]:80' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class RateLimited(Exception):
    """A client spent its budget; retry after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        self.header = str(max(1, math.ceil(retry_after)))  # Retry-After: whole seconds
        super().__init__(f"too many requests from your address: retry in {self.header} s")


class RateLimiter:
    """A token bucket per client: `rate` units per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float, max_clients: int = 10_000) -> None:
        self.rate, self.burst, self.max_clients = rate, max(burst, 1.0), max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (units, when)
        self._lock = threading.Lock()

    def charge(self, client: str, cost: float, now: float | None = None) -> None:
        """Spend `cost` units of `client`'s bucket, or raise RateLimited (spending nothing)."""
        if self.rate <= 0:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            units, last = self._buckets.pop(client, (self.burst, now))
            units = min(self.burst, units + (now - last) * self.rate)
            if cost > units:
                self._buckets[client] = (units, now)
                # more than a full bucket can never be paid at once: the per-request cap refuses those
                raise RateLimited((min(cost, self.burst) - units) / self.rate)
            self._buckets[client] = (units - cost, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)  # the least recently seen client


def client_of(scope: dict) -> str:
    client = scope.get("client")
    return client[0] if client else "-"


def _json(status: int, message: str, headers: dict[str, str] | None = None) -> tuple[int, list, bytes]:
    body = json.dumps({"error": message}).encode()
    hs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    hs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return status, hs, body


class Guard:
    """The ASGI middleware described in the module docstring; `routes` gives the Allow header of a path."""

    def __init__(self, app: Any, policy: ServePolicy, limiter: RateLimiter, routes: Any) -> None:
        self.app, self.policy, self.limiter, self.routes = app, policy, limiter, routes
        self.any_host = "*" in policy.allowed_hosts
        self.hosts = {h.strip("[]").lower() for h in policy.allowed_hosts}

    def allowed_methods(self, path: str) -> list[str]:
        """The methods some route answers at `path`, found by asking the router (included routers too)."""
        from starlette.routing import Match, Mount

        methods: set[str] = set()
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            probe = {
                "type": "http",
                "path": path,
                "method": method,
                "root_path": "",
                "headers": [],
                "query_string": b"",
            }
            for route in self.routes():
                if route.matches(probe)[0] == Match.FULL:
                    methods.add("GET" if isinstance(route, Mount) else method)  # mounts: static files
                    break
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods | {"OPTIONS"}) if methods else []

    def refuse(self, scope: dict, method: str, path: str, headers: dict[str, str]) -> tuple[int, list, bytes] | None:
        """Why this request is not served (status, headers, body), or None."""
        host = headers.get("host")
        if not self.any_host and (host is None or host_of(host) not in self.hosts):
            return _json(
                400, "this server does not answer to that Host name; add it with `ganime serve --allowed-host`"
            )
        if method in WRITE_METHODS:
            if self.policy.read_only:
                return _json(403, "this server is read-only (ganime serve --read-only)")
            origin = headers.get("origin")
            if origin is not None and origin != "null":
                # same origin only: a proxy in front must pass the Host the browser used (nginx: $host)
                if urlsplit(origin).netloc.lower() != (host or "").lower():
                    return _json(403, "cross-origin request refused")
            elif origin == "null" or headers.get("sec-fetch-site") == "cross-site":
                return _json(403, "cross-origin request refused")
            if self.policy.token is not None:
                given = headers.get("authorization", "")
                expected = f"Bearer {self.policy.token}"
                if not hmac.compare_digest(given.encode(), expected.encode()):
                    return _json(
                        401,
                        "saving and deleting need the admin token (Authorization: Bearer TOKEN)",
                        {"WWW-Authenticate": 'Bearer realm="ganime"'},
                    )
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.time()
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        status_sent, sent = [0], [0]
        head = method == "HEAD"

        async def guarded_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_sent[0] = message["status"]
                hs = [(k, v) for k, v in message.get("headers", []) if k not in _OURS]
                hs += SECURITY_HEADERS
                if path.startswith(BROWSER_PREFIX):
                    # the in-browser page's own policy (site.HEADERS) allows WebAssembly and forbids framing
                    csp = dict(message.get("headers", [])).get(b"content-security-policy")
                    if csp is not None:
                        hs = [(k, csp if k == b"content-security-policy" else v) for k, v in hs]
                if message["status"] == 405:  # the router names only the methods of the route it tried
                    hs = [(k, v) for k, v in hs if k != b"allow"]
                    hs.append((b"allow", ", ".join(self.allowed_methods(path)).encode()))
                message = {**message, "headers": hs}
            elif message["type"] == "http.response.body":
                if head:  # HEAD: the GET's headers (Content-Length included), no body
                    message = {**message, "body": b""}
                sent[0] += len(message.get("body", b""))
            await send(message)

        async def answer(status: int, hs: list, body: bytes) -> None:
            await guarded_send({"type": "http.response.start", "status": status, "headers": hs})
            await guarded_send({"type": "http.response.body", "body": body})

        try:
            refused = self.refuse(scope, method, path, headers)
            if refused is None and method == "OPTIONS":
                allow = self.allowed_methods(path)
                refused = (204, [(b"allow", ", ".join(allow).encode())], b"") if allow else _json(404, "not found")
            if refused is None:
                try:
                    self.limiter.charge(client_of(scope), 1.0)
                except RateLimited as e:
                    refused = _json(429, str(e), {"Retry-After": e.header})
            if refused is not None:
                await answer(*refused)
            else:
                inner = {**scope, "method": "GET"} if head else scope
                await self.app(inner, receive, guarded_send)
        except Exception:
            # logged once, here; the client sees a short JSON error, never a traceback
            logging.getLogger("ganime.web").exception("unhandled error on %s %s", method, path)
            if not status_sent[0]:
                await answer(*_json(500, "internal error"))
        finally:
            self.log(scope, method, status_sent[0] or 500, sent[0], started)

    @staticmethod
    def log(scope: dict, method: str, status: int, size: int, started: float) -> None:
        # NCSA common log format: host ident authuser [date] "request" status bytes
        if not access_log.isEnabledFor(logging.INFO):
            return
        when = datetime.fromtimestamp(started, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        request = f"{method} {target.decode('latin-1')} HTTP/{scope.get('http_version', '1.1')}"
        # one line per request whatever the client sent: quotes, backslashes and control bytes escaped
        request = "".join(c if " " <= c < "\x7f" and c not in '"\\' else f"\\x{ord(c):02x}" for c in request)
        access_log.info('%s - - [%s] "%s" %d %s', client_of(scope), when, request, status, size or "-")
