"""`ganime publish`: pre-render a static "does not exist" site (images, manifest, page) for any static host."""

from __future__ import annotations

from pathlib import Path

import typer

from ganime.cli import app
from ganime.errors import MissingDependencyError


@app.command("publish")
def publish(
    source: Path = typer.Argument(
        None, help="Run dir, checkpoint dir (ckpt-*), generator .safetensors, or 'pretrained' (the default)."
    ),
    seeds: int = typer.Option(1000, help="How many seeds: first-seed .. first-seed + seeds - 1."),
    truncation: str = typer.Option("0.5,0.7,1.0", help="Truncations to render, comma-separated, each in (0, 1]."),
    out: Path = typer.Option(Path("site"), help="Folder of the site (created; re-running fills in what is missing)."),
    first_seed: int = typer.Option(0, help="The first seed."),
    image_format: str = typer.Option("webp", "--format", help="webp (lossless) or png."),
    size: int = typer.Option(None, help="Pixels per side (default: the model's resolution; nearest for multiples)."),
    batch: int = typer.Option(64, help="Faces per generator call."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:N, mps or auto."),
    threads: int = typer.Option(
        0, help="Generator CPU threads (0 = physical cores - 1, at least 1); encoding runs on one thread per core."
    ),
) -> None:
    """Render seeds x truncations to SITE/faces/psi-T/SEED.webp, with manifest.json and a static page."""
    from ganime.device import physical_cores, resolve_device, set_threads
    from ganime.web.meta import resolve_generator
    from ganime.web.publish import parse_truncations
    from ganime.web.publish import publish as render_site

    try:
        from tqdm import tqdm
    except ImportError:
        raise MissingDependencyError("ganime publish shows progress with tqdm: pip install tqdm") from None
    from ganime.errors import ConfigError
    from ganime.generate import load_generator

    if batch < 1 or threads < 0:
        raise ConfigError("--batch must be >= 1 and --threads >= 0")
    psis = parse_truncations(truncation)
    # one core fewer for the generator: its OpenMP threads spin-wait when the encoders take a core from them
    # (2-core machine: 1 generator thread rendered 4-6x the images/s of 2; docs/benchmarks.md)
    n_threads = set_threads(threads or max(1, physical_cores() - 1))
    gen = load_generator(resolve_generator(source), device=resolve_device(device))
    with tqdm(total=seeds * len(psis), unit="img", desc="publish", dynamic_ncols=True) as bar:

        def show(written: int, to_render: int) -> None:
            bar.total = to_render  # what is already there is not counted (nor in images/s)
            bar.update(written - bar.n)

        report = render_site(
            gen,
            out,
            seeds,
            psis,
            first_seed=first_seed,
            fmt=image_format,
            size=size,
            batch=batch,
            progress=show,
        )
    typer.echo(
        f"{out}: rendered {report.rendered} image(s) in {report.seconds:.1f} s ({report.images_per_s:.0f} images/s, "
        f"{n_threads} generator thread(s)); {report.present} were already there. Try it: "
        f"python -m http.server -d {out} -b 127.0.0.1 8080"
    )
