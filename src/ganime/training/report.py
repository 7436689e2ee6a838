"""The run's human-readable record: metrics.csv rows and the tutorial-style loss/score plots."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ganime.io import atomic_path, atomic_write_json, atomic_write_text

BASE_COLUMNS = ["step", "epoch", "kimg", "seconds", "loss_d", "loss_g", "d_real", "d_fake", "img_per_s"]


class MetricsLog:
    """Append-only metrics.csv whose columns may grow (new metrics add columns; old rows stay blank)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.columns = list(BASE_COLUMNS)
        if self.path.is_file():
            with open(self.path, newline="") as f:
                header = next(csv.reader(f), None)
            if header:
                self.columns = header + [c for c in BASE_COLUMNS if c not in header]

    def rows(self) -> list[dict[str, str]]:
        """All rows as dicts of strings."""
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step` (written before a crash, past the checkpoint resumed from)."""
        rows = [r for r in self.rows() if r.get("step") and int(float(r["step"])) <= step]
        self._rewrite(rows)

    def append(self, row: dict[str, float | int | str]) -> None:
        """Add one row; new keys become new columns."""
        new = [k for k in row if k not in self.columns]
        if new:
            old = self.rows()
            self.columns += new
            self._rewrite(old)
        exists = self.path.is_file()
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, self.columns, extrasaction="ignore")
            if not exists:
                w.writeheader()
            w.writerow({k: _fmt(v) for k, v in row.items()})

    def _rewrite(self, rows: list[dict]) -> None:
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, self.columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(self.path, text.getvalue())


def _fmt(v: float | str) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def plot_run(run_dir: Path) -> list[Path]:
    """losses.png (D and G loss per step) and scores.png (D(x), D(G(z))) from metrics.csv, like the tutorial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = MetricsLog(Path(run_dir) / "metrics.csv").rows()
    rows = [r for r in rows if r.get("loss_d")]
    if not rows:
        return []
    step = [float(r["step"]) for r in rows]
    out = []
    for name, keys, title in (
        ("losses.png", (("loss_g", "G"), ("loss_d", "D")), "Generator and discriminator loss"),
        ("scores.png", (("d_real", "D(x)"), ("d_fake", "D(G(z))")), "Discriminator outputs"),
    ):
        fig, ax = plt.subplots(figsize=(8, 4))
        for key, label in keys:
            # a short run has a few rows (one for a 3-step run): markers keep them visible
            ax.plot(step, [float(r[key]) for r in rows], label=label, marker="o" if len(rows) < 20 else None)
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.legend()
        out.append(save_figure(fig, Path(run_dir) / name))
    return out


def save_figure(fig, path: Path) -> Path:
    """Lay out, write atomically (temp file + rename) and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path


SITTINGS_FILE = "sittings.json"


def record_sitting(run_dir: Path, part: dict) -> None:
    """RUN/sittings.json: one entry per `train` call on the run (a long training across several sittings), each
    with where it started and, once it stops, where it stopped. A `part` with the start of the last entry, which
    has not stopped, completes that entry; any other is appended (a killed sitting keeps no stop)."""
    path = run_dir / SITTINGS_FILE
    try:
        parts = json.loads(path.read_text()) if path.is_file() else []
    except (OSError, json.JSONDecodeError):
        parts = []  # an unreadable record is rewritten, never a reason to stop training
    key = ("started", "from_step")
    if parts and all(parts[-1].get(k) == part.get(k) for k in key) and "stopped" not in parts[-1]:
        parts[-1] = {**parts[-1], **part}
    else:
        parts.append(part)
    atomic_write_json(path, parts)


