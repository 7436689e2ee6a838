"""Issue #19's attacks on a public `ganime serve`, each one refused: tokens, hosts, CSRF, framing, floods."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from ganime.cli import main
from ganime.web.app import LIMITS
from ganime.web.security import RateLimiter

TOKEN = "s3cret-token-for-tests-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def public(make_app):
    """The app as `ganime serve --host 0.0.0.0` builds it: writes need the token."""
    with TestClient(make_app(policy={"token": TOKEN})) as c:
        yield c


def saved(c: TestClient, seed: int = 1, **headers: str) -> dict:
    r = c.post("/api/gallery", json={"seed": seed, "tags": ["a"]}, headers=AUTH | headers)
    assert r.status_code == 201, r.text
    return r.json()


def test_writes_need_the_admin_token(public):
    item = saved(public)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        post = public.post("/api/gallery", json={"seed": 2}, headers=headers)
        assert post.status_code == 401 and "token" in post.json()["error"], headers
        assert post.headers["www-authenticate"].startswith("Bearer")
        assert public.delete(f"/api/gallery/{item['id']}", headers=headers).status_code == 401
    # reading stays open: the page, the listing, the images
    assert public.get("/api/gallery").json()["total"] == 1
    assert public.get(item["image_url"]).status_code == 200
    assert public.get("/api/info").json()["writes"] == "token"
    assert public.delete(f"/api/gallery/{item['id']}", headers=AUTH).status_code == 204


def test_read_only_refuses_every_write(make_app):
    with TestClient(make_app(policy={"read_only": True})) as c:
        r = c.post("/api/gallery", json={"seed": 1})
        assert r.status_code == 403 and "read-only" in r.json()["error"]
        assert c.delete("/api/gallery/0123456789abcdef").status_code == 403
        assert c.get("/api/info").json()["writes"] == "off"
        assert c.get("/api/face.png", params={"seed": 1}).status_code == 200


def test_foreign_host_names_are_refused_dns_rebinding(public):
    item = saved(public)
    evil = {"Host": "evil.example.com"}
    for url in ("/", f"/api/gallery/{item['id']}/", "/api/gallery", "/static/app.js"):
        r = public.get(url, headers=evil, follow_redirects=False)
        assert r.status_code == 400 and "Host" in r.json()["error"], url
        assert "evil.example.com" not in r.headers.get("location", "")  # no redirect to the attacker's name
    r = public.delete(f"/api/gallery/{item['id']}", headers=AUTH | evil | {"Origin": "http://evil.example.com"})
    assert r.status_code == 400
    assert public.get("/api/gallery").json()["total"] == 1
    assert public.get("/", headers={"Host": "localhost:8765"}).status_code == 200  # loopback names with a port


def test_cross_origin_writes_are_refused_csrf(public):
    for headers in ({"Origin": "http://evil.example.com"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        r = public.post("/api/gallery", json={"seed": 1}, headers=AUTH | headers)
        assert r.status_code == 403 and "cross-origin" in r.json()["error"], headers
    item = saved(public)
    r = public.delete(f"/api/gallery/{item['id']}", headers=AUTH | {"Origin": "http://evil.example.com"})
    assert r.status_code == 403 and public.get("/api/gallery").json()["total"] == 1
    # the page's own requests (same origin) and scripts without an Origin pass
    saved(public, 2, Origin="http://testserver", **{"Sec-Fetch-Site": "same-origin"})
    assert public.get("/api/gallery").json()["total"] == 2


@pytest.mark.parametrize(
    "url", ["/", "/static/index.html", "/static/app.js", "/api/info", "/docs", "/api/nothing", "/api/face.png?seed=x"]
)
def test_every_path_carries_the_security_headers(client, url):
    r = client.get(url)
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_static_index_is_the_page_not_its_template(client):
    page, raw = client.get("/"), client.get("/static/index.html")
    assert raw.status_code == 200 and raw.text == page.text and "{{" not in page.text
    title = client.get("/api/info").json()["title"]
    assert f'<h1 id="title">{title}</h1>' in page.text and " anime " not in page.text.lower()


def test_rate_limit_is_per_client_with_retry_after(make_app):
    app = make_app(policy={"rate": 1.0, "burst": 5.0})

    async def scenario():
        async with app.router.lifespan_context(app):
            results = {}
            for ip in ("10.0.0.1", "10.0.0.2"):
                transport = httpx.ASGITransport(app=app, client=(ip, 1234))
                async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                    results[ip] = [await c.get("/api/info") for _ in range(7 if ip.endswith("1") else 2)]
            return results

    results = asyncio.run(scenario())
    first = [r.status_code for r in results["10.0.0.1"]]
    assert first[:5] == [200] * 5 and first[5:] == [429, 429], first
    limited = results["10.0.0.1"][-1]
    assert int(limited.headers["retry-after"]) >= 1 and "retry" in limited.json()["error"]
    assert [r.status_code for r in results["10.0.0.2"]] == [200, 200]  # another client is not slowed


def test_generator_work_costs_more_of_the_budget(make_app):
    with TestClient(make_app(policy={"rate": 0.5, "burst": 20.0})) as c:
        big = c.get("/api/face.png", params={"seed": 1, "size": 1024})  # 1 + 16 units
        assert big.status_code == 200
        again = c.get("/api/face.png", params={"seed": 2, "size": 1024})
        assert again.status_code == 429 and int(again.headers["retry-after"]) >= 1
        assert c.get("/api/info").status_code == 200  # cheap requests still fit in what is left


def test_rate_limiter_refills_and_forgets_old_clients():
    limiter = RateLimiter(rate=1.0, burst=10.0, max_clients=2)
    limiter.charge("a", 8.0, now=0.0)
    with pytest.raises(Exception, match="retry in 6 s"):
        limiter.charge("a", 8.0, now=0.0)
    limiter.charge("a", 8.0, now=6.0)  # refilled at 1 unit/s
    limiter.charge("b", 1.0, now=6.0)
    limiter.charge("c", 1.0, now=6.0)  # a third client: the least recent one ("a") is forgotten
    limiter.charge("a", 10.0, now=6.0)  # so "a" starts again with a full bucket (bounded memory)


def test_rate_limiter_debt_and_login_back_off():
    limiter = RateLimiter(rate=1.0, burst=10.0)
    limiter.charge("a", 30.0, now=0.0, debt=True)  # measured afterwards: always paid, down to -burst
    with pytest.raises(Exception, match="retry in 11 s"):  # from -10 back to 1 unit at 1 unit/s
        limiter.charge("a", 1.0, now=0.0)
    assert [limiter.auth_failed("b", now=0.0) for _ in range(4)] == [5.0, 10.0, 10.0, 10.0]  # capped at the burst
    limiter.auth_succeeded("b")
    assert limiter.auth_failed("b", now=100.0) == 5.0  # the right token reset the count


def test_one_request_cannot_cost_more_than_the_cap(client):
    r = client.get("/api/interpolate.gif", params={"a": 1, "b": 2, "frames": 120, "size": 256})
    assert r.status_code == 422 and str(LIMITS["pixels_per_request"]) in r.json()["error"]
    assert client.get("/api/interpolate.gif", params={"a": 1, "b": 2, "frames": 8, "size": 64}).status_code == 200


def test_gallery_quota(make_app):
    with TestClient(make_app(policy={"max_items": 2})) as c:
        saved(c, 1), saved(c, 2)
        r = c.post("/api/gallery", json={"seed": 3})
        assert r.status_code == 507 and "full" in r.json()["error"]
        assert c.get("/api/gallery").json()["total"] == 2


def test_a_locked_database_is_a_503_with_retry_after_and_no_traceback(make_app, tmp_path, caplog):
    from ganime.web.store import SQLiteStore

    path = tmp_path / "locked.sqlite"
    store = SQLiteStore(path, timeout=0.2)
    with TestClient(make_app(store=store)) as c:
        item = saved(c)
        locker = sqlite3.connect(path, timeout=0.2)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            with caplog.at_level(logging.INFO):
                r = c.post("/api/gallery", json={"seed": 2})
                d = c.delete(f"/api/gallery/{item['id']}")
        finally:
            locker.rollback()
            locker.close()
        assert r.status_code == d.status_code == 503 and r.headers["retry-after"] == "2"
        assert "busy" in r.json()["error"] and "Traceback" not in r.text and str(tmp_path) not in r.text
        assert "Traceback" not in caplog.text and not [x for x in caplog.records if x.levelno >= logging.ERROR]
        assert c.post("/api/gallery", json={"seed": 2}).status_code == 201  # and works once it is free


def test_an_internal_error_is_logged_once_and_says_nothing_inside(client, caplog, monkeypatch):
    def boom():
        raise RuntimeError("secret detail")

    monkeypatch.setattr(client.app.state.store, "tags", boom)
    client.raise_server_exceptions = False
    with caplog.at_level(logging.INFO):
        r = client.get("/api/tags")
    assert r.status_code == 500 and r.json() == {"error": "internal error"}
    assert r.headers["x-content-type-options"] == "nosniff"
    errors = [x for x in caplog.records if x.levelno >= logging.ERROR]
    assert len(errors) == 1 and "secret detail" in caplog.text


def test_access_log_in_common_log_format(client, caplog):
    with caplog.at_level(logging.INFO, logger="ganime.access"):
        client.get("/api/face.png?seed=5&size=32")
        client.get("/api/face.png?seed=-1")
    lines = [r.getMessage() for r in caplog.records if r.name == "ganime.access"]
    clf = re.compile(r'^\S+ - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET (\S+) HTTP/1\.1" (\d{3}) (\d+|-)$')
    parsed = [clf.match(line) for line in lines]
    assert all(parsed), lines
    assert [(m[1], m[2]) for m in parsed] == [("/api/face.png?seed=5&size=32", "200"), ("/api/face.png?seed=-1", "422")]
    assert int(parsed[0][3]) > 100


def test_head_and_allow_everywhere(client):
    item = client.post("/api/gallery", json={"seed": 4}).json()
    for url in ("/", "/api/info", "/api/gallery", "/api/face.png?seed=3", item["image_url"], "/static/app.js", "/docs"):
        get, head = client.get(url), client.head(url)
        assert head.status_code == 200 and head.content == b"", url
        assert head.headers["content-length"] == get.headers["content-length"], url
        assert head.headers["content-type"] == get.headers["content-type"], url
    for method, url, allow in [
        ("HEAD", "/api/nothing", None),
        ("PUT", "/api/gallery", "GET, HEAD, OPTIONS, POST"),
        ("POST", "/api/info", "GET, HEAD, OPTIONS"),
        ("POST", f"/api/gallery/{item['id']}", "DELETE, GET, HEAD, OPTIONS"),
        ("DELETE", "/", "GET, HEAD, OPTIONS"),
    ]:
        r = client.request(method, url)
        if allow is None:
            assert r.status_code == 404
            continue
        assert r.status_code == 405 and r.headers["allow"] == allow, (method, url, r.headers.get("allow"))
    options = client.options("/api/gallery")
    assert options.status_code == 204 and options.headers["allow"] == "GET, HEAD, OPTIONS, POST"


def test_docs_work_offline_with_no_script(client):
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<script" not in r.text.lower() and "cdn" not in r.text.lower()
    for path in ("/api/face.png", "/api/gallery/{item_id}", "/openapi.json"):
        assert path in r.text
    assert client.get("/redoc").status_code == 404 and client.get("/openapi.json").status_code == 200


def test_gallery_answers_location_normalised_tags_and_revalidated_images(client):
    r = client.post("/api/gallery", json={"seed": 9, "tags": ["ＣＡＴ"]})
    item = r.json()
    assert r.headers["location"] == f"/api/gallery/{item['id']}" and item["tags"] == ["cat"]
    assert client.get(r.headers["location"]).json()["seed"] == 9
    for tag in ("CAT", "ｃａｔ", " cat "):
        listing = client.get("/api/gallery", params={"tag": tag}).json()
        assert listing["tag"] == "cat" and listing["total"] == 1, tag
    image = client.get(item["image_url"])
    assert image.headers["cache-control"] == "public, no-cache"  # never kept a day after a delete
    again = client.get(item["image_url"], headers={"If-None-Match": image.headers["etag"]})
    assert again.status_code == 304
    client.delete(f"/api/gallery/{item['id']}")
    assert client.get(item["image_url"], headers={"If-None-Match": image.headers["etag"]}).status_code == 404


# --- the CLI ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_server(monkeypatch):
    """Stand-in for listen.serve: records what `ganime serve` would have served (the socket is bound, on a
    free port, then closed)."""
    from ganime.web import listen

    calls = []

    def record(app, sock, limits, **kw):
        calls.append((app, {"host": sock.getsockname()[0], "limits": limits, **kw}))
        sock.close()

    monkeypatch.setattr(listen, "serve", record)
    real_bind = listen.bind
    monkeypatch.setattr(listen, "bind", lambda host, port: real_bind(host, 0))
    return calls


def test_serve_on_a_public_address_warns_prints_urls_and_a_token_once(generator_file, tmp_path, capsys, no_server):
    assert main(["serve", str(generator_file), "--store", str(tmp_path / "g.sqlite"), "--host", "0.0.0.0"]) == 0
    out, err = capsys.readouterr()
    assert "warning: listening on 0.0.0.0" in err
    ((app, kw),) = no_server
    policy = app.state.served.policy
    assert policy.token and out.count(policy.token) == 2  # the token, and the admin link that carries it
    assert f"#token={policy.token}" in out and "http://0.0.0.0" not in out
    assert kw["host"] == "0.0.0.0" and kw["forwarded_allow_ips"] == "127.0.0.1"
    assert "*" not in policy.allowed_hosts and "localhost" in policy.allowed_hosts


def test_serve_token_from_flag_or_environment_and_loopback_defaults(
    generator_file, tmp_path, capsys, no_server, monkeypatch
):
    store = str(tmp_path / "g.sqlite")
    assert main(["serve", str(generator_file), "--store", store]) == 0  # loopback: writes open, no token
    assert no_server[-1][0].state.served.policy.token is None and "admin token" not in capsys.readouterr().out
    monkeypatch.setenv("GANIME_TOKEN", TOKEN)
    assert main(["serve", str(generator_file), "--store", store, "--host", "0.0.0.0"]) == 0
    assert no_server[-1][0].state.served.policy.token == TOKEN and TOKEN not in capsys.readouterr().out
    args = ["serve", str(generator_file), "--store", store, "--read-only", "--allowed-host", "faces.example.org"]
    assert main(args) == 0
    policy = no_server[-1][0].state.served.policy
    assert policy.read_only and "faces.example.org" in policy.allowed_hosts
    for bad, says in [
        (["--token", "short"], "at least 24"),
        (["--token", "x" * 23], "at least 24"),
        (["--token", "ab" * 20], "repeats"),
        (["--allowed-host", "http://x/"], "without scheme"),
        (["--rate-limit", "-1"], "--rate-limit"),
    ]:
        assert main(["serve", str(generator_file), "--store", store, *bad]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err


def test_gallery_list_marks_utc_and_export_drops_deleted_faces(client, tmp_path, capsys):
    store = tmp_path / "gallery.sqlite"
    a, b = (client.post("/api/gallery", json={"seed": s}).json() for s in (1, 2))
    assert main(["gallery", "list", "--store", str(store)]) == 0
    assert re.search(r"\d\d:\d\d:\d\dZ  seed", capsys.readouterr().out)
    out = tmp_path / "export"
    assert main(["gallery", "export", str(out), "--store", str(store)]) == 0
    (out / "notes.txt").write_text("mine")
    assert len(list(out.glob("*.png"))) == 2
    client.delete(f"/api/gallery/{a['id']}")
    assert main(["gallery", "export", str(out), "--store", str(store)]) == 0
    assert "removed 1" in capsys.readouterr().out
    assert [p.name for p in out.glob("*.png")] == [f"seed2-{b['id']}.png"] and (out / "notes.txt").exists()
    assert [r["id"] for r in json.loads((out / "gallery.json").read_text())] == [b["id"]]


# --- issue #31: the proxy trap, logins and bytes that cost, errors that say the limits ---------------------


def local_default_policy(**kw):
    """A policy whose "this machine" is loopback only (the conftest's adds TestClient's names)."""
    from ganime.web.security import LOOPBACK_HOSTS

    return {"local_hosts": LOOPBACK_HOSTS, **kw}


async def _as(app, client_ip: str, host: str, method: str, url: str, **kw):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_ip, 4321))
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as c:
            return await c.request(method, url, **kw)


def test_open_writes_are_for_this_machine_only_whatever_the_proxy_forwards(make_app):
    # writes open (no token), as `ganime serve --allowed-host faces.example.org` without $GANIME_TOKEN was
    app = make_app(policy=local_default_policy(allowed_hosts=("localhost", "127.0.0.1", "faces.example.org")))
    body = {"json": {"seed": 1}}
    forwarded = asyncio.run(_as(app, "127.0.0.1", "faces.example.org", "POST", "/api/gallery", **body))
    assert forwarded.status_code == 403 and "--token" in forwarded.json()["error"]
    # a trusted proxy's X-Forwarded-For made the client a public address (uvicorn rewrites scope["client"])
    public = asyncio.run(_as(app, "203.0.113.9", "localhost", "DELETE", "/api/gallery/0123456789abcdef"))
    assert public.status_code == 403
    mapped = asyncio.run(_as(app, "::ffff:203.0.113.9", "localhost", "DELETE", "/api/gallery/0123456789abcdef"))
    assert mapped.status_code == 403  # an IPv4 client of a dual-stack socket
    assert asyncio.run(_as(app, "127.0.0.1", "localhost", "POST", "/api/gallery", **body)).status_code == 201
    star = make_app(policy=local_default_policy(allowed_hosts=("*",)))
    assert asyncio.run(_as(star, "127.0.0.1", "anything.example", "POST", "/api/gallery", **body)).status_code == 403


def test_a_forwarded_public_client_cannot_write_through_a_real_server(make_app):
    from .test_server_limits import exchange, guarded, status_and_json

    app = make_app(policy=local_default_policy())
    with guarded(app) as port:
        body = b'{"seed": 1}'
        head = (
            b"POST /api/gallery HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"X-Forwarded-For: 203.0.113.9\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        status, _, answer = status_and_json(exchange(port, head + body)[0])
        assert status == 403 and "another machine" in answer["error"]
        direct = head.replace(b"X-Forwarded-For: 203.0.113.9\r\n", b"")
        assert status_and_json(exchange(port, direct + body)[0])[0] == 201


@pytest.mark.parametrize("flags", [["--allowed-host", "faces.example.org"], ["--allowed-host", "*"]])
def test_serve_behind_a_proxy_makes_a_token_like_a_public_bind(generator_file, tmp_path, capsys, no_server, flags):
    assert main(["serve", str(generator_file), "--store", str(tmp_path / "g.sqlite"), *flags]) == 0
    policy = no_server[-1][0].state.served.policy
    out = capsys.readouterr().out
    assert policy.token and f"admin token (saving and deleting need it): {policy.token}" in out
    assert policy.writes == "token" and "GANIME_TOKEN" in out
    read_only = ["serve", str(generator_file), "--store", str(tmp_path / "g.sqlite"), "--read-only", *flags]
    assert main(read_only) == 0 and no_server[-1][0].state.served.policy.token is None


def test_wrong_tokens_cost_more_each_time_and_the_scheme_is_case_insensitive(make_app):
    app = make_app(policy={"token": TOKEN, "rate": 1.0, "burst": 100.0})

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                ok = await c.post("/api/gallery", json={"seed": 1}, headers={"Authorization": f"bearer {TOKEN}"})
                wrong = [
                    await c.post("/api/gallery", json={"seed": 1}, headers={"Authorization": f"Bearer x{i}"})
                    for i in range(12)
                ]
                right = await c.post("/api/gallery", json={"seed": 2}, headers=AUTH)
                return ok, wrong, right

    ok, wrong, right = asyncio.run(scenario())
    assert ok.status_code == 201  # RFC 9110: the scheme is case-insensitive
    codes = [r.status_code for r in wrong]
    assert codes[:3] == [401] * 3 and 429 in codes, codes  # 5, 10, 20, 40... units: soon over the budget
    waits = [int(r.headers["retry-after"]) for r in wrong if r.status_code == 429]
    assert waits[-1] >= 60 and right.status_code == 429  # backed off: even the right token waits now


def test_answer_bytes_cost_static_files_included(make_app, monkeypatch):
    from ganime.web import security

    monkeypatch.setattr(security, "BYTES_PER_UNIT", 1024)  # app.js (~12 KB) costs ~12 units
    with TestClient(make_app(policy={"rate": 0.1, "burst": 40.0})) as c:
        codes = [c.get("/static/app.js").status_code for _ in range(5)]
        # 1 unit a request would let 40 through; its bytes overdraw the budget after 3 or 4
        assert codes[0] == 200 and codes[-1] == 429 and codes.count(200) <= 4, codes
        refused = c.get("/static/app.js")
        assert refused.status_code == 429 and len(refused.content) < 1000  # refused before the bytes
        assert int(refused.headers["retry-after"]) >= 60 and refused.headers["x-frame-options"] == "DENY"


def test_every_4xx_carries_the_limits(client, make_app):
    deep = "[" * 5000 + "]" * 5000
    answers = [
        client.post("/api/gallery", content=deep, headers={"Content-Type": "application/json"}),
        client.post("/api/gallery", content=b"seed=1", headers={"Content-Type": "application/x-www-form-urlencoded"}),
        client.get("/api/nothing"),
        client.get("/", headers={"Host": "evil.example.com"}),
        client.post("/api/info"),
        client.get("/api/face.png", params={"seed": -1}),
    ]
    with TestClient(make_app(policy={"token": TOKEN})) as public:
        answers.append(public.post("/api/gallery", json={"seed": 1}))
    for r in answers:
        assert 400 <= r.status_code < 500 and r.json()["limits"] == LIMITS, (r.status_code, r.text[:200])


def test_a_failed_browser_page_is_retried_and_shows_no_paths(make_app, monkeypatch, tmp_path, caplog):
    from starlette.responses import PlainTextResponse

    import ganime.web.app as web_app

    built = []

    def fake_site(gen):  # the first build fails (onnxruntime-web missing), the next one works
        built.append(gen)
        if len(built) == 1:
            return PlainTextResponse(f"the in-browser page is unavailable: {tmp_path}/cache/ort lacks it", 503)
        return PlainTextResponse("in-browser page")

    monkeypatch.setattr(web_app, "BrowserSite", fake_site)
    with TestClient(make_app()) as c, caplog.at_level(logging.WARNING):
        first = c.get("/browser/")
        assert first.status_code == 503 and "in-browser page is unavailable" in first.json()["error"]
        assert str(tmp_path) not in first.text and "/cache/ort" not in first.text
        assert int(first.headers["retry-after"]) >= 1 and str(tmp_path) in caplog.text  # the detail: in the log
        site = next(r.app for r in c.app.routes if getattr(r, "path", "") == "/browser")
        site.failed_at -= site.retry_s  # as if the retry time had passed
        again = c.get("/browser/")
        assert again.status_code == 200 and again.text == "in-browser page" and len(built) == 2


def test_search_by_picture_is_compute_not_a_write(make_app):
    """POST /api/invert changes nothing: a visitor without the token (and a read-only server) may search, but
    still not from another site; saving still needs the token."""
    from fastapi.testclient import TestClient

    from ganime.io import png_bytes

    picture = png_bytes(np.full((16, 16, 3), 200, np.uint8))
    for policy in ({"token": "a-long-admin-token-0123456789abc"}, {"read_only": True}):
        with TestClient(make_app(policy=policy)) as c:
            r = c.post("/api/invert", content=picture, headers={"Content-Type": "image/png"})
            assert r.status_code == 200, (policy, r.text)
            r = c.post("/api/invert", content=picture, headers={"Content-Type": "image/png", "Origin": "https://evil.example"})
            assert r.status_code == 403
            assert c.post("/api/gallery", json={"seed": 1, "tags": []}).status_code in (401, 403)
