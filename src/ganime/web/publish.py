"""`ganime publish`: a static "does not exist" site: seeds x truncations pre-rendered, a manifest, a page.

The layout is the site's public URL scheme, stable across runs and ganime versions:

    site/index.html  app.js  renderers.js  latent.js  style.css  manifest.json
    site/faces/psi-0.7/000123.webp         (seed zero-padded to 6 digits, more digits past 999999)
    site/faces/psi-0.7/e-hair-red/2/000123.webp   (a direction's edit: the seed moved 2 along hair-red)

The page is the one page of `ganime serve` and `ganime export --web` (web/static) with pre-rendered files as
its back end: where the generator has directions (ganime.directions), the first EDIT_SEEDS seeds are also
rendered along each direction at a few amounts, at the default truncation, and the sliders become strips of
those faces (hidden on other seeds).

Any static host serves it (an object store plus a CDN, nginx, `python -m http.server`): the page reads
manifest.json and picks a face in the browser. Re-running renders only the files that are missing; each
file is written to a temporary name and renamed, so an interrupted run leaves whole images or none, and
manifest.json is written last, naming only what is complete.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganime import __version__
from ganime.errors import ConfigError
from ganime.generate import LoadedGenerator
from ganime.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from ganime.web.encode import encode_png, encode_webp
from ganime.web.meta import MAX_SEED, model_id, page_text
from ganime.web.site import PAGE, PAGE_FILES, page_for

FORMATS: dict[str, Callable[[np.ndarray, int | None], bytes]] = {"webp": encode_webp, "png": encode_png}
MANIFEST = "manifest.json"
MAX_SITE_SEEDS = 10_000_000
EDIT_AMOUNTS = (-2.0, -1.0, 1.0, 2.0)  # where a site shows each direction (a strip: -2 -1 0 1 2)
# Seeds that get strips: each costs directions x amounts images (22 x 4 = 88 for the shipped generator), so a
# 1000-seed site would hold 30 times the faces; the page offers rounds and strips on these seeds
EDIT_SEEDS = 100


def psi_label(psi: float) -> str:
    """The URL form of a truncation: 0.7 -> '0.7', 1 -> '1.0', 0.333 -> '0.333'."""
    text = f"{psi:.1f}" if round(psi * 10) == psi * 10 else f"{psi:g}"
    if float(text) != psi:
        raise ConfigError(f"truncation {psi!r}: use at most 6 significant digits")
    return text


def face_path(psi: str, seed: int, fmt: str) -> str:
    """The site-relative URL of one face; web/static/renderers.js (FilesRenderer) builds the same string."""
    return f"faces/psi-{psi}/{seed:06d}.{fmt}"


def parse_truncations(text: str) -> list[float]:
    """'0.5,0.7,1.0' -> [0.5, 0.7, 1.0] (each in (0, 1], no repeats)."""
    out: list[float] = []
    for part in text.split(","):
        try:
            psi = float(part)
        except ValueError:
            raise ConfigError(f"--truncation {text!r}: give numbers in (0, 1] separated by commas") from None
        if not 0 < psi <= 1:
            raise ConfigError(f"--truncation {part.strip()}: each must be in (0, 1]")
        if psi not in out:
            out.append(psi)
    return out


@dataclass(frozen=True)
class PublishReport:
    """What one run did."""

    out: Path
    rendered: int  # images written by this run
    present: int  # images already there (skipped)
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.rendered / self.seconds if self.seconds > 0 else 0.0


def publish(
    gen: LoadedGenerator,
    out: str | Path,
    seeds: int,
    truncations: list[float],
    *,
    first_seed: int = 0,
    fmt: str = "webp",
    size: int | None = None,
    batch: int = 64,
    encoders: int | None = None,
    progress: Callable[[int, int], Any] | None = None,
    edit_amounts: tuple[float, ...] = EDIT_AMOUNTS,
    edit_seeds: int = EDIT_SEEDS,
) -> PublishReport:
    """Render seeds first_seed .. first_seed + seeds - 1 at each truncation into a static site at `out`.

    Args:
        fmt: 'webp' (lossless) or 'png'; size: pixels per side (None = the model's resolution).
        batch: faces per generator call; encoders: encoding threads (None = one per CPU).
        progress: called as progress(written, to_render): once before rendering, then after each write.
        edit_amounts: where each direction of the generator is rendered (at the default truncation); () = none.
        edit_seeds: how many seeds, from first_seed on, get those strips.
    """
    out = Path(out)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}: use webp or png")
    if not 1 <= seeds <= MAX_SITE_SEEDS or first_seed < 0 or first_seed + seeds - 1 > MAX_SEED:
        raise ConfigError(f"--seeds must be 1..{MAX_SITE_SEEDS} and seeds within 0..{MAX_SEED}")
    if not truncations or not all(0 < t <= 1 for t in truncations):
        raise ConfigError("give at least one truncation, each in (0, 1]")
    if size is not None and not 8 <= size <= 1024:
        raise ConfigError("--size must be in 8..1024")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file: give a folder for the site")
    mid = model_id(gen)
    side = size or gen.resolution
    labels = [psi_label(t) for t in truncations]
    old = _read_manifest(out)
    if old is not None and (old.get("model_id"), old.get("format"), old.get("size")) != (mid, fmt, side):
        raise ConfigError(
            f"{out} holds a site of model {old.get('model_id')} as {old.get('format')} at {old.get('size')} px; "
            f"this is model {mid} as {fmt} at {side} px: publish into another folder"
        )
    started = time.perf_counter()
    try:
        out.mkdir(parents=True, exist_ok=True)
        _remove_partial(out)
        jobs = [(out / "faces" / f"psi-{labels[i]}", psi, None) for i, psi in enumerate(truncations)]
        default = min(labels, key=lambda t: abs(float(t) - 0.7))
        edit_entries = []
        for d in gen.directions.entries if edit_amounts else ():
            amounts = [f"{a:g}" for a in edit_amounts]
            edit_entries.append({**d.to_dict(), "amounts": amounts})
            for a in edit_amounts:
                folder = out / "faces" / f"psi-{default}" / f"e-{d.name}" / f"{a:g}"
                jobs.append((folder, float(default), {d.name: a}))
        edited = min(seeds, edit_seeds)
        todo = [(folder, psi, edits, _missing(folder, first_seed, edited if edits else seeds, fmt))
                for folder, psi, edits in jobs]
        if progress is not None:
            progress(0, sum(len(v[3]) for v in todo))
        rendered = _render(gen, todo, fmt, size, batch, encoders, progress)
        _write_page(gen, out)
        # the manifest grows with the site: an earlier, larger run's seeds and truncations stay listed
        if old is not None and old.get("first_seed") == first_seed:
            seeds = max(seeds, int(old.get("seeds", 0)))
            labels = sorted(set(labels) | set(old.get("truncations", [])), key=float)
        title, subtitle = page_text(gen)
        atomic_write_json(
            out / MANIFEST,
            {
                "generator": "ganime",
                "version": __version__,
                "model_id": mid,
                "title": title,
                "subtitle": subtitle,
                "resolution": gen.resolution,
                "size": side,
                "format": fmt,
                "first_seed": first_seed,
                "seeds": seeds,
                "truncations": labels,
                "default_truncation": min(labels, key=lambda t: abs(float(t) - 0.7)),
                "path": "faces/psi-{truncation}/{seed}." + fmt,  # {seed}: zero-padded to 6 digits
                "edits": {
                    "truncation": default,
                    "path": "faces/psi-{truncation}/e-{name}/{amount}/{seed}." + fmt,
                    "first_seed": first_seed,
                    "seeds": edited,  # the first seeds only (EDIT_SEEDS)
                    "directions": edit_entries,
                },
            },
        )
    except OSError as e:
        raise ConfigError(f"cannot write the site in {out}: {e.strerror or e}") from None
    total = sum(len(v[3]) for v in todo)
    promised = len(truncations) * seeds + (len(todo) - len(truncations)) * edited
    return PublishReport(out, rendered, promised - total, time.perf_counter() - started)


def site_urls(manifest: dict[str, Any]) -> Iterator[str]:
    """Every face URL a manifest promises (a site of N seeds, T truncations, D directions at A amounts on its
    first E seeds has N x T + E x D x A)."""
    seeds = range(manifest["first_seed"], manifest["first_seed"] + manifest["seeds"])
    for psi in manifest["truncations"]:
        for seed in seeds:
            yield face_path(psi, seed, manifest["format"])
    edits = manifest.get("edits") or {"directions": []}
    edited = range(edits.get("first_seed", 0), edits.get("first_seed", 0) + edits.get("seeds", 0))
    for d in edits["directions"]:
        for amount in d["amounts"]:
            for seed in edited:
                yield (edits["path"].replace("{truncation}", edits["truncation"]).replace("{name}", d["name"])
                       .replace("{amount}", amount).replace("{seed}", f"{seed:06d}"))


def _read_manifest(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{out / MANIFEST} is unreadable ({e}): delete it to publish again") from None
    return data if isinstance(data, dict) else None


def _remove_partial(out: Path) -> None:
    # temporary files of an interrupted run: never served (dot names), removed before rendering again
    faces = out / "faces"
    if faces.is_dir():
        for tmp in [*faces.glob("psi-*/.*.tmp*"), *faces.glob("psi-*/e-*/*/.*.tmp*")]:
            tmp.unlink(missing_ok=True)


def _missing(folder: Path, first_seed: int, seeds: int, fmt: str) -> list[int]:
    present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return [s for s in range(first_seed, first_seed + seeds) if f"{s:06d}.{fmt}" not in present]


def _render(
    gen: LoadedGenerator,
    todo: list[tuple[Path, float, dict[str, float] | None, list[int]]],
    fmt: str,
    size: int | None,
    batch: int,
    encoders: int | None,
    progress: Callable[[int, int], Any] | None,
) -> int:
    """Generate batch after batch on this thread while a pool encodes and writes the previous ones.
    todo: (folder, truncation, edits or None, seeds to render there)."""
    encode = FORMATS[fmt]
    nc = gen.model.num_classes
    written, total = 0, sum(len(v[3]) for v in todo)
    pending: list[Future] = []

    def save(images: np.ndarray, seeds: list[int], folder: Path) -> int:
        for img, seed in zip(images, seeds):
            # thousands of files, any one made again by publishing again: not fsynced one by one
            atomic_write_bytes(folder / f"{seed:06d}.{fmt}", encode(img, size), fsync=False)
        return len(seeds)

    def collect(done: list[Future]) -> None:
        nonlocal written
        for f in done:
            n = f.result()  # an encoding or disk error surfaces here
            written += n
            if progress is not None:
                progress(written, total)

    threads = encoders or os.cpu_count() or 1
    with ThreadPoolExecutor(threads) as pool:
        for folder, psi, edits, seeds in todo:
            if not seeds:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(0, len(seeds), batch):
                chunk = seeds[i : i + batch]
                # as the server does: one latent per seed, its edits, the class from the seed, the library's truncation
                z = gen.edited_latents(chunk, edits)
                y = torch.tensor([s % nc for s in chunk]) if nc else None
                images = gen.images(z, y, psi)
                # each thread encodes a share of the batch; at most two batches wait, so memory stays flat
                share = -(-len(chunk) // threads)
                while len(pending) >= 2 * threads:
                    collect([pending.pop(0)])
                for j in range(0, len(chunk), share):
                    pending.append(pool.submit(save, images[j : j + share], chunk[j : j + share], folder))
        collect(pending)
    return written


def _write_page(gen: LoadedGenerator, out: Path) -> None:
    """The one page (web/static) with pre-rendered files as its back end; site.js of older sites is left."""
    atomic_write_text(out / "index.html", page_for(gen, "files"))
    for name in PAGE_FILES:
        if name != "index.html":
            atomic_write_bytes(out / name, (PAGE / name).read_bytes())
