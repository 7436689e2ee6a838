"""`ganime serve` (web page + HTTP API) and `ganime gallery list|export` (saved faces)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import typer

from ganime.cli import app
from ganime.errors import ConfigError, MissingDependencyError

gallery_app = typer.Typer(help="List and export faces saved from the web page.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(gallery_app, name="gallery")

STORE_HELP = "Gallery: a .sqlite file, a directory (DIR/gallery.sqlite) or mongodb://HOST/DB (default: user data dir)."


def _check_port_free(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"cannot resolve --host {host!r}: {e}") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port") from None


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
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 exposes it to your network)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    store: str = typer.Option(None, help=STORE_HELP),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N, mps or auto."),
    max_batch: int = typer.Option(32, help="Most faces per generator call (1 turns micro-batching off)."),
    batch_wait_ms: float = typer.Option(2.0, help="How long a request waits for others to batch with."),
    workers: int = typer.Option(1, help="Generator calls that may run at once."),
    threads: int = typer.Option(
        0, help="CPU threads per generator call (0 = (physical cores - 1) / workers, at least 1)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Load the generator and store, print, do not serve."),
) -> None:
    """Serve a page that shows a new face on every load, an image API (/docs) and a tagged gallery."""
    try:
        import uvicorn

        from ganime.web.app import create_app
    except ImportError as e:
        raise MissingDependencyError(
            f"ganime serve needs the web extra ({e.name}): pip install 'ganime[web]'"
        ) from None
    from ganime.training.device import physical_cores, resolve_device, set_threads

    if not 0 < port < 65536:
        raise ConfigError("--port must be in 1..65535")
    if max_batch < 1 or workers < 1 or batch_wait_ms < 0 or threads < 0:
        raise ConfigError("--max-batch and --workers must be >= 1, --batch-wait-ms and --threads >= 0")
    n_threads = set_threads(threads or default_threads(physical_cores(), workers))
    web_app = create_app(
        source,
        store,
        device=resolve_device(device),
        max_batch=max_batch,
        max_wait_ms=batch_wait_ms,
        workers=workers,
    )
    gen = web_app.state.generator
    typer.echo(
        f"generator {gen.source} ({gen.resolution} px, model {web_app.state.model_id}); "
        f"gallery {web_app.state.store.location}; batches of up to {max_batch}, {workers} worker(s) "
        f"x {n_threads} thread(s)"
    )
    if dry_run:
        web_app.state.store.close()
        web_app.state.batcher.shutdown()
        return
    _check_port_free(host, port)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"open http://{shown}:{port}/  (API docs: /docs; Ctrl+C stops)")
    uvicorn.run(web_app, host=host, port=port, log_level="warning")


@gallery_app.command("list")
def gallery_list(
    tag: str = typer.Option(None, help="Only faces with this tag."),
    store: str = typer.Option(None, help=STORE_HELP),
    limit: int = typer.Option(100, help="Most items to show (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """List saved faces, newest first."""
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
            f"{item.id}  {item.created[:19].replace('T', ' ')}  seed {item.seed:<12d} psi {item.truncation:<5g} "
            f"model {item.model_id}  {' '.join(item.tags)}"
        )


@gallery_app.command("export")
def gallery_export(
    out: Path = typer.Argument(..., help="Folder to write PNGs and gallery.json into."),
    tag: str = typer.Option(None, help="Only faces with this tag."),
    store: str = typer.Option(None, help=STORE_HELP),
) -> None:
    """Write saved faces as PNGs (seed and id in the name) plus gallery.json with their metadata."""
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
                _write_atomic(out / name, png)
                records.append({**item.to_dict(), "file": name})
            if len(page) < MAX_LIST:
                break
            offset += MAX_LIST
    _write_atomic(out / "gallery.json", (json.dumps(records, indent=1) + "\n").encode())
    typer.echo(f"wrote {len(records)} PNG(s) and gallery.json to {out}")


def _write_atomic(path: Path, data: bytes) -> None:
    # an interrupted export leaves whole files or none, never a truncated PNG or JSON
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {e.strerror}") from None
