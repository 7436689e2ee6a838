"""What stands between the app and a network: allowed hosts, write tokens, CSRF, rate limits, headers, logs.

`Guard` is one ASGI middleware that does, in order: the access log line (common log format), security
headers on every answer, the Host check (DNS rebinding; one Host header only), the per-client rate limit,
HEAD/OPTIONS and a correct `Allow`, and for state-changing requests the read-only switch, the Origin check,
the local-only rule for open writes and the admin token (a wrong one is charged with back-off). Answers
are charged by their size too (`BYTES_PER_UNIT`), static files included. `ServePolicy` is the frozen value
it is built from; `ganime serve` fills it from its flags.

One `RateLimiter` (web/limiter.py) holds every client's budget: requests, rendering (an estimate first,
then the measured work: `Visit.settle`), bytes and failed logins all spend it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from ganime.web.limiter import (  # noqa: F401 - re-exported: the limiter is part of the guard's API
    RateLimited,
    RateLimiter,
    Visit,
    current_client,
    current_visit,
    enter_visit,
    leave_visit,
)

access_log = logging.getLogger("ganime.access")

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# POSTs that change nothing (a body in, an answer out): no token, and allowed on a read-only server; they are
# charged like any rendering and keep the same-origin rule
COMPUTE_POSTS = frozenset({"/api/invert"})
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
MIN_TOKEN_LEN = 24  # a user's --token: new_token() makes 32 characters
BYTES_PER_UNIT = 256 * 1024  # an answer costs 1 unit per 256 KiB (the 14.8 MB WebAssembly file: 57 units)


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
        local_hosts: Host names and client addresses besides loopback ones that mean "this machine": without
            a token, writes are accepted only from these (a proxy forwarding the internet is not this machine).
        renders_per_client: renders one client may have in flight; more wait their turn (0 = no cap).
    """

    token: str | None = None
    read_only: bool = False
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    rate: float = 10.0
    burst: float = 200.0
    max_items: int = 10_000
    max_clients: int = 10_000
    local_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    renders_per_client: int = 2

    @property
    def writes(self) -> str:
        """'off', 'token' or 'open': what the page shows and /api/info reports."""
        return "off" if self.read_only else "token" if self.token else "open"


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1, ::ffff:127.0.0.1)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    # an IPv4 client of a dual-stack ('::') socket shows as ::ffff:127.0.0.1
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


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
    # the addresses of the interfaces with the default routes (IPv6 too when bound to '::')
    probes = [(socket.AF_INET, "192.0.2.1")] + ([(socket.AF_INET6, "2001:db8::1")] if host == "::" else [])
    names += [a for family, probe in probes if (a := route_address(family, probe))]
    out: list[str] = []
    for n in names:
        if n and not is_loopback(n) and n not in out and n not in ("0.0.0.0", "::"):
            out.append(n)
    return out


def route_address(family: int, probe: str) -> str | None:
    """This machine's address on the route towards `probe` (a documentation address: a UDP "connect" sends
    nothing), or None without such a route."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))
            return s.getsockname()[0]
    except OSError:
        return None


def new_token() -> str:
    return secrets.token_urlsafe(24)


def check_token(token: str) -> str:
    """A user's admin token, or ConfigError: at least MIN_TOKEN_LEN printable characters, no spaces."""
    from ganime.errors import ConfigError

    if len(token) < MIN_TOKEN_LEN or not token.isprintable() or " " in token:
        raise ConfigError(
            f"--token must be at least {MIN_TOKEN_LEN} printable characters without spaces (got {len(token)}); "
            "leave it out and a random one is made"
        )
    if len(set(token)) < 8:
        raise ConfigError("--token repeats a few characters: leave it out and a random one is made")
    return token


def exposed(host: str, allowed_hosts: list[str] | tuple[str, ...]) -> bool:
    """True when requests may come from other machines: a non-loopback bind, or a Host name besides
    loopback ones that a proxy may forward ('*' included)."""
    return not is_loopback(host) or any(h == "*" or not is_loopback(h) for h in allowed_hosts)


def host_of(value: str) -> str:
    """'Example.com:8000' -> 'example.com'; '[::1]:80' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def client_of(scope: dict) -> str:
    client = scope.get("client")
    return client[0] if client else "-"


def error_answer(
    status: int, message: str, headers: dict[str, str] | None = None, limits: dict | None = None
) -> tuple[int, list, bytes]:
    """(status, headers, body) of a JSON error: {"error": ...} plus the input `limits` on a 4xx."""
    payload: dict[str, Any] = {"error": message}
    if limits is not None and 400 <= status < 500:
        payload["limits"] = limits
    body = json.dumps(payload).encode()
    hs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    hs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return status, hs, body


def bearer_token(header: str) -> str | None:
    """The credentials of an `Authorization: Bearer X` header; the scheme is case-insensitive (RFC 9110 11.1)."""
    scheme, _, credentials = header.strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def log_line(client: str, request: str, status: int, size: int, started: float) -> None:
    """One access-log line in NCSA common log format: host ident authuser [date] "request" status bytes."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    when = datetime.fromtimestamp(started, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")
    # one line per request whatever the client sent: quotes, backslashes and control bytes escaped
    request = "".join(c if " " <= c < "\x7f" and c not in '"\\' else f"\\x{ord(c):02x}" for c in request)
    access_log.info('%s - - [%s] "%s" %d %s', client, when, request, status, size or "-")


class Guard:
    """The ASGI middleware described in the module docstring; `routes` gives the Allow header of a path,
    `limits` the input limits every 4xx carries."""

    def __init__(
        self, app: Any, policy: ServePolicy, limiter: RateLimiter, routes: Any, limits: dict | None = None
    ) -> None:
        self.app, self.policy, self.limiter, self.routes, self.limits = app, policy, limiter, routes, limits
        self.any_host = "*" in policy.allowed_hosts
        self.hosts = {h.strip("[]").lower() for h in policy.allowed_hosts}
        self.local = {h.strip("[]").lower() for h in policy.local_hosts}

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> tuple[int, list, bytes]:
        return error_answer(status, message, headers, self.limits)

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

    def from_this_machine(self, scope: dict, host: str | None) -> bool:
        """A loopback (or policy.local_hosts) Host and client; the client is the one a trusted proxy names."""
        client = client_of(scope).lower()
        name = host_of(host or "")
        return (is_loopback(name) or name in self.local) and (is_loopback(client) or client in self.local)

    def refuse_host(self, scope: dict, headers: dict[str, str]) -> tuple[int, list, bytes] | None:
        """400 for a foreign Host, or for more than one Host header (which one would a proxy have checked?)."""
        if sum(1 for k, _ in scope.get("headers") or [] if k.lower() == b"host") > 1:
            return self.error(400, "more than one Host header")
        host = headers.get("host")
        if not self.any_host and (host is None or host_of(host) not in self.hosts):
            return self.error(
                400, "this server does not answer to that Host name; add it with `ganime serve --allowed-host`"
            )
        return None

    def refuse_write(self, scope: dict, headers: dict[str, str]) -> tuple[int, list, bytes] | None:
        """Why this state-changing request is refused, or None (a COMPUTE_POSTS request: only if cross-origin)."""
        host = headers.get("host")
        compute = scope["method"] == "POST" and scope["path"] in COMPUTE_POSTS
        if self.policy.read_only and not compute:
            return self.error(403, "this server is read-only (ganime serve --read-only)")
        origin = headers.get("origin")
        if origin is not None and origin != "null":
            # same origin only: a proxy in front must pass the Host the browser used (nginx: $host)
            if urlsplit(origin).netloc.lower() != (host or "").lower():
                return self.error(403, "cross-origin request refused")
        elif origin == "null" or headers.get("sec-fetch-site") == "cross-site":
            return self.error(403, "cross-origin request refused")
        if compute:
            return None
        if self.policy.token is None:
            if not self.from_this_machine(scope, host):
                # writes open is for this machine only: a proxy may forward anyone under a public name
                return self.error(
                    403,
                    "saving and deleting from another machine need an admin token; start the server with "
                    f"--token or ${TOKEN_ENV} (or --read-only)",
                )
            return None
        given = bearer_token(headers.get("authorization", "")) or ""
        if not hmac.compare_digest(given.encode(), self.policy.token.encode()):
            client = client_of(scope)
            self.limiter.auth_failed(client)  # back-off: each wrong token in a row costs twice the last
            return self.error(
                401,
                "saving and deleting need the admin token (Authorization: Bearer TOKEN)",
                {"WWW-Authenticate": 'Bearer realm="ganime"'},
            )
        self.limiter.auth_succeeded(client_of(scope))
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.time()
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        status_sent, sent = [0], [0]
        head = method == "HEAD"
        client = client_of(scope)

        async def guarded_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                length = dict(message.get("headers", [])).get(b"content-length", b"0")
                if not head and length.isdigit():
                    # bytes cost too, static files included; as debt: a client that pulled a large file
                    # waits before its next request instead of losing an answer it already paid to render
                    self.limiter.charge(client, int(length) / BYTES_PER_UNIT, debt=True)
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

        visit = enter_visit(Visit(client, self.limiter))
        try:
            refused = self.refuse_host(scope, headers)
            if refused is None:
                try:  # charged before any other check: a refused login costs too
                    self.limiter.charge(client, 1.0)
                except RateLimited as e:
                    refused = self.error(429, str(e), {"Retry-After": e.header})
            if refused is None and method == "OPTIONS":
                allow = self.allowed_methods(path)
                refused = (204, [(b"allow", ", ".join(allow).encode())], b"") if allow else self.error(404, "not found")
            if refused is None and method in WRITE_METHODS:
                refused = self.refuse_write(scope, headers)
            if refused is not None:
                await answer(*refused)
            else:
                inner = {**scope, "method": "GET"} if head else scope
                await self.app(inner, receive, guarded_send)
        except Exception:
            # logged once, here; the client sees a short JSON error, never a traceback
            logging.getLogger("ganime.web").exception("unhandled error on %s %s", method, path)
            if not status_sent[0]:
                await answer(*error_answer(500, "internal error"))
        finally:
            leave_visit(visit)
            self.log(scope, method, status_sent[0] or 500, sent[0], started)

    @staticmethod
    def log(scope: dict, method: str, status: int, size: int, started: float) -> None:
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        request = f"{method} {target.decode('latin-1')} HTTP/{scope.get('http_version', '1.1')}"
        log_line(client_of(scope), request, status, size, started)
