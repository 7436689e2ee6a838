"""`ganime` command line: a thin typer layer over the Python API.

Each sub-command lives in its own module and registers on `app` (or a sub-app) when imported here.
User mistakes raise `GanimeError`; `main` prints them on one line and exits with status 2.
"""

from __future__ import annotations

import errno
import logging
import sys

import typer

from ganime.errors import GanimeError

app = typer.Typer(
    name="ganime",
    help=(
        "Train GANs on small images (anime faces, emoji, font glyphs) on a CPU or GPU, then generate grids, "
        "videos, a web page and fonts.\n\n"
        "Start with: ganime train --minutes 5 --out runs/first && ganime generate runs/first  (writes grid.png)"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(help="Inspect, fetch and build image data sets.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app, name="data")


def _register() -> None:
    # Imported for their side effect: each module adds its commands to `app` / `data_app`.
    import importlib

    for name in (
        "data",
        "data_builders",
        "train",
        "generate",
        "directions",
        "invert",
        "eval",
        "serve",
        "publish",
        "export",
        "font",
    ):
        try:
            importlib.import_module(f"ganime.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"ganime.cli.{name}":
                raise


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ganime` console script."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _register()
    try:
        code = app(args=argv, standalone_mode=False)
        if code == 130:  # typer turns a KeyboardInterrupt (a second Ctrl-C while training) into Exit(130)
            typer.echo("interrupted", err=True)
        if isinstance(code, int) and not isinstance(code, bool) and code:
            return code
    except GanimeError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        # disk full outside a checkpoint write (which reports itself): one line, files already written stay
        typer.echo(f"error: no space left writing {e.filename or 'a file'}; free space or pick another folder", err=True)
        return 2
    except Exception as e:
        # click's usage errors (typer may vendor click, so match by shape rather than by class)
        kind = type(e).__name__
        if kind == "Abort":
            typer.echo("aborted", err=True)
            return 1
        if kind == "Exit":
            return int(getattr(e, "exit_code", 0))
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            e.show()
            return int(e.exit_code)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
