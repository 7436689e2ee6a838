"""Rebuild the shipped data set src/ganime/assets/noto-emoji-64.npz from Debian's Noto Color Emoji.

    apt-get install fonts-noto-color-emoji   # Debian 12: 2.042-0+deb12u1
    python scripts/build_emoji_dataset.py

The output is byte-reproducible for a given font file, Pillow and numpy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganime.data.builders_io import save_npz
from ganime.data.emoji import DEBIAN_NOTO_EMOJI, render_emoji
from ganime.errors import GanimeError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "src" / "ganime" / "assets" / "noto-emoji-64.npz"
MAX_BYTES = 6_000_000  # the asset ships inside the wheel: keep it a few MB


def font_version(path: Path) -> str:
    from fontTools.ttLib import TTFont

    with TTFont(str(path), lazy=True) as font:
        return font["name"].getDebugName(5) or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--font", type=Path, default=DEBIAN_NOTO_EMOJI)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        dataset, report = render_emoji(args.font, size=args.size)
    except GanimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    path = save_npz(dataset, args.out, compresslevel=9)
    n_bytes = path.stat().st_size
    print(f"font:     {args.font} ({font_version(args.font)})")
    print(
        f"rendered: {report.rendered} of {report.cmap_codepoints} cmap code points in {report.seconds:.1f} s"
    )
    print(f"wrote:    {path} {dataset.images.shape} uint8, {n_bytes / 1e6:.2f} MB")
    if n_bytes > MAX_BYTES:
        print(f"error: {path} is over {MAX_BYTES / 1e6:.0f} MB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
