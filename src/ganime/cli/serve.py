"""`ganime serve` (web page + HTTP API) and `ganime gallery list|export` (saved faces)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ganime.cli import app
from ganime.errors import ConfigError, MissingDependencyError
from ganime.web.security import (
    LOOPBACK_HOSTS,
    TOKEN_ENV,
    ServePolicy,
    check_token,
    exposed,
    is_loopback,
    local_names,
    new_token,
)

gallery_app = typer.Typer(help="List and export faces saved from the web page.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(gallery_app, name="gallery")

STORE_HELP = "Gallery: a .sqlite file, a directory (DIR/gallery.sqlite) or mongodb://HOST/DB (default: user data dir)."


def default_threads(cores: int, workers: int) -> int:
    """Generator threads per worker: one core stays free for the event loop (HTTP, JSON, the gallery).

    On 2 cores, 1 generator thread served ~2x the faces/s of 2 (docs/benchmarks.md, "Web serving"): with 2,
    the generator's threads and the event loop fight over the cores and the threads spin-wait.
    """
    return max(1, (cores - 1) // workers)


@app.command("serve")
def serve(
    source: Path = typer.Argument(
        None,
        help="Run dir, checkpoint dir (ckpt-*), generator .safetensors, or 'pretrained' (the default: the "
        "generator shipped with ganime).",
    ),
    host: str = typer.Option(
        "127.0.0.1",
        help="Address to listen on (0.0.0.0 or :: exposes it to your network: writes then need a token; :: takes "
        "IPv6 and IPv4).",
    ),
    port: int = typer.Option(8000, help="Port to listen on."),
    store: str = typer.Option(None, help=STORE_HELP),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N, mps or auto."),
    max_batch: int = typer.Option(32, help="Most faces per generator call (1 turns micro-batching off)."),
    batch_wait_ms: float = typer.Option(2.0, help="How long a request waits for others to batch with."),
    workers: int = typer.Option(1, help="Generator calls that may run at once."),
    threads: int = typer.Option(
        0, help="CPU threads per generator call (0 = (physical cores - 1) / workers, at least 1)."
    ),
    token: str = typer.Option(
        None,
        envvar=TOKEN_ENV,
        show_envvar=True,
        help="Admin token that saving and deleting need (at least 24 characters; default: none when only this "
        "machine can reach the server, else a new one, printed once).",
    ),
    read_only: bool = typer.Option(False, "--read-only", help="Nobody may save or delete (the gallery stays visible)."),
    allowed_host: list[str] = typer.Option(
        [],
        "--allowed-host",
        help="A Host name the server answers to, besides loopback names and the bound "
        "address (repeat it; '*' = any, when a proxy in front checks). A name that is not loopback means "
        "requests from other machines: writes then need a token (made and printed unless --token).",
    ),
    rate_limit: float = typer.Option(
        10.0,
        help="Cost units per second per client (a request costs 1, plus 1 per 256x256 pixels it renders); "
        "0 turns the limit off.",
    ),
    burst: float = typer.Option(200.0, help="Cost units a client may spend at once."),
    max_items: int = typer.Option(10_000, help="Gallery quota: most saved faces (0 = no limit)."),
    renders_per_client: int = typer.Option(
        2, help="Renders (faces, grids, walks) one client may have in flight; more wait their turn (0 = no cap)."
    ),
    max_connections: int = typer.Option(256, help="Open connections at once; more get a 503."),
    access_log: str = typer.Option("-", help="Access log in common log format: '-' (stderr), 'off' or a file."),
    forwarded_allow_ips: str = typer.Option(
        "127.0.0.1", help="Proxies whose X-Forwarded-For names the client (rate limits, log); '*' trusts any."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Load the generator and store, print, do not serve."),
) -> None:
    """Serve a page that shows a new face on every load, an image API (/docs) and a tagged gallery."""
    try:
        import uvicorn  # noqa: F401 - the web extra is installed

        from ganime.web.app import create_app
    except ImportError as e:
        raise MissingDependencyError(
            f"ganime serve needs the web extra ({e.name}): pip install 'ganime[web]'"
        ) from None
    from ganime.device import physical_cores, resolve_device, set_threads

    if not 0 < port < 65536:
        raise ConfigError("--port must be in 1..65535")
    if max_batch < 1 or workers < 1 or batch_wait_ms < 0 or threads < 0:
        raise ConfigError("--max-batch and --workers must be >= 1, --batch-wait-ms and --threads >= 0")
    if rate_limit < 0 or burst < 1 or max_items < 0 or renders_per_client < 0 or max_connections < 1:
        raise ConfigError(
            "--rate-limit, --max-items and --renders-per-client must be >= 0, --burst and --max-connections >= 1"
        )
    for name in allowed_host:
        if not name or "/" in name or " " in name:
            raise ConfigError(f"--allowed-host {name!r}: give a host name or address, without scheme or path")
    public = not is_loopback(host)
    # other machines' requests: a public bind, or a proxy forwarding a public name (or any: '*')
    reachable = exposed(host, allowed_host)
    if token is not None:
        check_token(token)
    new = token is None and reachable and not read_only
    if new:
        token = new_token()
    names = local_names(host)
    policy = ServePolicy(
        token=token,
        read_only=read_only,
        allowed_hosts=(*LOOPBACK_HOSTS, *names, *(h.lower() for h in allowed_host)),
        rate=rate_limit,
        burst=burst,
        max_items=max_items,
        renders_per_client=renders_per_client,
    )
    from ganime.web import listen
    from ganime.web.served import LIMITS

    # the port first: a busy one is said before the model loads or a gallery file is made
    sock = None if dry_run else listen.bind(host, port)
    try:
        _setup_access_log(access_log)
        n_threads = set_threads(threads or default_threads(physical_cores(), workers))
        web_app = create_app(
            source,
            store,
            device=resolve_device(device),
            max_batch=max_batch,
            max_wait_ms=batch_wait_ms,
            workers=workers,
            policy=policy,
        )
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    gen = web_app.state.generator
    typer.echo(
        f"generator {gen.source} ({gen.resolution} px, model {web_app.state.model_id}); "
        f"gallery {web_app.state.store.location}; batches of up to {max_batch}, {workers} worker(s) "
        f"x {n_threads} thread(s)"
    )
    typer.echo(
        f"writes: {policy.writes}; allowed hosts: {', '.join(policy.allowed_hosts)}; rate limit: "
        + (f"{rate_limit:g}/s per client (burst {burst:g})" if rate_limit else "off")
    )
    if sock is None:
        web_app.state.store.close()
        web_app.state.batcher.shutdown()
        return
    writes = {"off": "read-only", "open": "anyone on this machine may save and delete"}.get(policy.writes)
    if public:
        typer.echo(
            f"warning: listening on {host}: anyone who can reach this machine sees the page and the API; "
            "put a TLS reverse proxy in front for the internet (README, 'Public server')",
            err=True,
        )
    # a wildcard address is no URL: this machine's names, else loopback (the server answers there too)
    loopback = "127.0.0.1" if sock.family == socket.AF_INET or listen.dual_stack(sock) else "::1"
    urls = [_url(n, port) for n in (names if public else [host])] or [_url(loopback, port)]
    typer.echo("open " + "  ".join(urls) + "  (API: /docs; Ctrl+C stops)")
    if new:
        # printed once, here: the page keeps it in the browser after the #token link is opened
        typer.echo(f"admin token (saving and deleting need it): {token}")
        typer.echo(f"  admin page: {urls[0]}#token={token}")
        if not public:
            typer.echo(
                f"  (a token because --allowed-host {' '.join(allowed_host)} lets other machines in through a "
                f"proxy; several processes: give them one with ${TOKEN_ENV})"
            )
    elif writes:
        typer.echo(f"gallery: {writes}")
    limits = listen.ServerLimits(max_connections=max_connections)
    listen.serve(web_app, sock, limits, forwarded_allow_ips=forwarded_allow_ips, error_limits=LIMITS)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _setup_access_log(where: str) -> None:
    """ganime.access: to stderr (through the CLI's logging set-up), off, or appended to a file."""
    import logging

    log = logging.getLogger("ganime.access")
    if where == "off":
        log.setLevel(logging.WARNING)
        return
    log.setLevel(logging.INFO)
    if where != "-":
        try:
            handler = logging.FileHandler(where, encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot open --access-log {where}: {e.strerror}") from None
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False


@gallery_app.command("list")
def gallery_list(
    tag: str = typer.Option(None, help="Only faces with this tag."),
    store: str = typer.Option(None, help=STORE_HELP),
    limit: int = typer.Option(100, help="Most items to show (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """List saved faces, newest first (times in UTC, marked Z)."""
    from ganime.web.store import MAX_LIST, open_store

    if not 1 <= limit <= MAX_LIST:
        raise ConfigError(f"--limit must be in 1..{MAX_LIST}")
    with open_store(store, create=False) as gallery:
        items = gallery.list(tag, limit=limit)
        total = gallery.count(tag)
        location = gallery.location
    if as_json:
        for item in items:
            typer.echo(json.dumps(item.to_dict()))
        return
    what = f"tagged {tag!r}" if tag else "saved"
    typer.echo(f"{total} face(s) {what} in {location}" + (f" (showing {len(items)})" if len(items) < total else ""))
    for item in items:
        typer.echo(
            f"{item.id}  {item.created[:19].replace('T', ' ')}Z  seed {item.seed:<12d} psi {item.truncation:<5g} "
            f"model {item.model_id}  {' '.join(item.tags)}"
        )


@gallery_app.command("export")
def gallery_export(
    out: Path = typer.Argument(..., help="Folder to write PNGs and gallery.json into."),
    tag: str = typer.Option(None, help="Only faces with this tag."),
    store: str = typer.Option(None, help=STORE_HELP),
) -> None:
    """Write saved faces as PNGs (seed and id in the name) plus gallery.json with their metadata.

    Exporting again into the same folder brings it up to date: PNGs that the previous gallery.json listed
    and that are no longer in the gallery (deleted since) are removed; other files are left alone."""
    from ganime.io import atomic_write_bytes, atomic_write_json
    from ganime.web.store import MAX_LIST, open_store

    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file: give a folder to export into")
    records = []
    with open_store(store, create=False) as gallery:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create {out}: {e.strerror}") from None
        offset = 0
        while True:
            page = gallery.list(tag, limit=MAX_LIST, offset=offset)
            for item in page:
                png = gallery.image(item.id)
                if png is None:  # deleted meanwhile
                    continue
                name = f"seed{item.seed}-{item.id}.png"
                # atomic: an interrupted export leaves whole files or none, never a truncated PNG or JSON
                _write_file(atomic_write_bytes, out / name, png)
                records.append({**item.to_dict(), "file": name})
            if len(page) < MAX_LIST:
                break
            offset += MAX_LIST
    previous = _exported_files(out / "gallery.json")
    _write_file(atomic_write_json, out / "gallery.json", records, sort_keys=False, newline=True)
    stale = previous - {r["file"] for r in records}
    for name in stale:
        (out / name).unlink(missing_ok=True)
    gone = f"; removed {len(stale)} no longer in the gallery" if stale else ""
    typer.echo(f"wrote {len(records)} PNG(s) and gallery.json to {out}{gone}")


def _exported_files(manifest: Path) -> set[str]:
    """The PNG names an earlier export listed (only plain names ending .png: never a path out of the folder)."""
    try:
        records = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    names = {r.get("file") for r in records if isinstance(r, dict)} if isinstance(records, list) else set()
    return {n for n in names if isinstance(n, str) and n.endswith(".png") and n == Path(n).name and n[0] != "."}


def _write_file(write: Callable[..., Path], path: Path, *args: Any, **kwargs: Any) -> Path:
    """`write(path, ...)`, with a full disk or a read-only folder as a one-line ConfigError."""
    try:
        return write(path, *args, **kwargs)
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}") from None
