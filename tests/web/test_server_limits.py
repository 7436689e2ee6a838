"""Issue #31's connection-level attacks on `ganime serve`, over real sockets on 127.0.0.1 (and ::1):
slow headers, a trickling body, idle connections, too many connections, smuggled Host names, a busy port."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time

import pytest

from ganime.cli import main
from ganime.web import listen
from ganime.web.served import LIMITS

SHORT = listen.ServerLimits(header_timeout=0.5, body_timeout=0.5, idle_timeout=1, max_connections=8)


@contextlib.contextmanager
def guarded(app, limits: listen.ServerLimits = SHORT):
    """`app` served as `ganime serve` serves it (listen.bind + GuardedHttp) on a free loopback port."""
    import uvicorn

    sock = listen.bind("127.0.0.1", 0)
    server = uvicorn.Server(listen.config(app, limits, error_limits=LIMITS))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def exchange(port: int, *parts: bytes, pause: float = 0.0, wait: float = 10.0) -> tuple[bytes, bool]:
    """Send `parts` (pausing between them), then read until the server closes or `wait` s pass.
    Returns (what came back, whether the server closed the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        for i, part in enumerate(parts):
            if i and pause:
                time.sleep(pause)
            try:
                s.sendall(part)
            except OSError:  # the server hung up meanwhile
                break
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except TimeoutError:
            return data, False
        except ConnectionResetError:
            pass
        return data, True


def status_and_json(data: bytes) -> tuple[int, dict, dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body) if body else {}


@pytest.fixture
def app(make_app):
    return make_app()


def test_half_headers_get_408_and_are_closed(app, caplog):
    with guarded(app) as port, caplog.at_level(logging.INFO, logger="ganime.access"):
        data, closed = exchange(port, b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        status, headers, body = status_and_json(data)
        assert closed and status == 408 and "headers took too long" in body["error"]
        assert headers["content-type"] == "application/json" and headers["x-frame-options"] == "DENY"
        assert "limits" in body
        # a connection that never sends a byte is closed the same way
        idle, closed = exchange(port)
        assert closed and status_and_json(idle)[0] == 408
    assert any('" 408 ' in r.getMessage() for r in caplog.records)


def test_a_trickling_body_is_cut_and_the_app_acts_on_nothing(app):
    with guarded(app) as port:
        head = b"POST /api/gallery HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        data, closed = exchange(port, head + b"Content-Length: 16384\r\n\r\n", b'{"seed": 1, ', pause=0.1)
        status, _, body = status_and_json(data)
        assert closed and status == 408 and "body took too long" in body["error"]
        saved, _ = exchange(port, b"GET /api/gallery HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert status_and_json(saved)[2]["total"] == 0


def test_an_idle_kept_alive_connection_is_closed(app):
    with guarded(app) as port:
        data, closed = exchange(port, b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert closed and data.startswith(b"HTTP/1.1 200")  # answered, then closed after idle_timeout


def test_connections_over_the_cap_get_503_while_others_are_served(app):
    with guarded(app) as port:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(SHORT.max_connections)]
        try:
            time.sleep(0.1)
            data, closed = exchange(port, b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, headers, body = status_and_json(data)
            assert closed and status == 503 and headers["retry-after"] == "1" and "connections" in body["error"]
        finally:
            for s in held:
                s.close()
        time.sleep(0.3)  # the server notices they are gone
        data, _ = exchange(port, b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    ("request_head", "says"),
    [
        (b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example.com\r\n", "more than one Host"),
        (b"GET http://evil.example.com/api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n", "another host"),
        (b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 + b"\r\n", "headers over"),
        (b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n", "invalid HTTP request"),
    ],
)
def test_smuggled_hosts_and_bad_requests_get_json_with_headers_and_a_log_line(app, caplog, request_head, says):
    with guarded(app) as port, caplog.at_level(logging.INFO, logger="ganime.access"):
        data, closed = exchange(port, request_head + b"\r\n")
    status, headers, body = status_and_json(data)
    assert closed and status in (400, 431) and says in body["error"], data[:300]
    assert body["limits"] == LIMITS and "frame-ancestors 'none'" in headers["content-security-policy"]
    assert [r for r in caplog.records if f'" {status} ' in r.getMessage()]


def test_absolute_form_naming_the_same_host_is_served(app):
    with guarded(app) as port:
        data, _ = exchange(
            port, b"GET http://127.0.0.1/api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
    assert data.startswith(b"HTTP/1.1 200")


def test_bind_on_ipv6_wildcard_takes_ipv4_and_ipv6():
    if not socket.has_ipv6 or not socket.has_dualstack_ipv6():
        pytest.skip("no dual-stack IPv6 on this machine")
    sock = listen.bind("::", 0)
    try:
        port = sock.getsockname()[1]
        assert listen.dual_stack(sock)
        sock.listen()
        for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(family, socket.SOCK_STREAM) as c:
                try:
                    c.connect((address, port))
                except OSError as e:
                    if family == socket.AF_INET6:
                        pytest.skip(f"::1 unreachable here: {e}")
                    raise
    finally:
        sock.close()


def test_a_busy_port_is_said_before_the_model_loads(generator_file, tmp_path, capsys, monkeypatch):
    import ganime.web.app as web_app

    loads = []
    monkeypatch.setattr(web_app, "load_generator", lambda *a, **k: loads.append(a))
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        store = tmp_path / "g.sqlite"
        assert main(["serve", str(generator_file), "--store", str(store), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err
    assert not loads and not store.exists()


def test_ipv6_wildcard_prints_urls_that_answer(generator_file, tmp_path, capsys, monkeypatch):
    if not socket.has_dualstack_ipv6():
        pytest.skip("no dual-stack IPv6 on this machine")
    seen = []
    monkeypatch.setattr(listen, "serve", lambda app, sock, limits, **kw: seen.append(listen.dual_stack(sock)) or sock.close())
    real_bind = listen.bind
    monkeypatch.setattr(listen, "bind", lambda host, port: real_bind(host, 0))
    assert main(["serve", str(generator_file), "--store", str(tmp_path / "g.sqlite"), "--host", "::"]) == 0
    out = capsys.readouterr().out
    assert seen == [True]  # so the IPv4 URLs printed for '::' are true
    policy_hosts = out.split("allowed hosts: ", 1)[1].split(";", 1)[0]
    from ganime.web.security import route_address

    v6 = route_address(socket.AF_INET6, "2001:db8::1")
    if v6 and not v6.startswith("fe80"):
        assert v6 in policy_hosts  # the machine's own IPv6 address is a name it answers to


def test_on_ipv6_wildcard_the_machines_ipv6_address_is_a_name_it_answers_to(monkeypatch):
    from ganime.web import security

    routes = {socket.AF_INET: "192.0.2.10", socket.AF_INET6: "2001:db8::5"}
    monkeypatch.setattr(security, "route_address", lambda family, probe: routes[family])
    assert {"192.0.2.10", "2001:db8::5"} <= set(security.local_names("::"))
    assert "2001:db8::5" not in security.local_names("0.0.0.0")  # an IPv4 bind answers on IPv4 only
