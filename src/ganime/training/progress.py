"""Training progress for people: a tqdm bar on a terminal; in a log file or a pipe, one plain line every
`every_s` seconds (a redrawn bar would put thousands of carriage-return updates on one line of the log)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

PLAIN_EVERY_S = 30.0  # `ganime train --help` says so


def is_interactive(stream: TextIO) -> bool:
    """True where a redrawn bar reads well: a terminal, or a Jupyter kernel (tqdm.auto draws a widget there)."""
    if "ipykernel" in sys.modules:
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def format_eta(seconds: float) -> str:
    """12s, 4m05s, 2h03m."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Step counter with losses and images/s: a bar where one is drawn in place, plain lines elsewhere."""

    def __init__(
        self,
        total: int | None,
        initial: int,
        *,
        enabled: bool = True,
        deadline: float = math.inf,
        stream: TextIO | None = None,
        every_s: float = PLAIN_EVERY_S,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """`deadline` is a `clock()` time (a --minutes budget); `total` is None when only time bounds the run."""
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.step = total, initial
        self.deadline, self.every_s, self.clock = deadline, every_s, clock
        self.stats: dict[str, float] = {}
        self._bar = None
        self._plain = enabled and not is_interactive(self.stream)
        if enabled and not self._plain:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=self.stream)
        self._start_t, self._start_step = clock(), initial
        self._last_line_t: float | None = None
        self._last_line_step = -1

    def update(self, step: int) -> None:
        """The run is at `step`."""
        if self._bar is not None:
            self._bar.update(step - self.step)
        self.step = step
        if self._plain and self.stats and (self._last_line_t is None or self.clock() - self._last_line_t >= self.every_s):
            self._write_line()

    def set_stats(self, step: int, epoch: int, row: dict[str, float]) -> None:
        """The latest logged losses, D outputs and speed (a metrics.csv row) at `step`; the first prints a line."""
        self.stats = {"epoch": epoch, **row}
        if self._bar is not None:
            self._bar.set_postfix(
                ep=epoch, D=f"{row['loss_d']:.3f}", G=f"{row['loss_g']:.3f}", Dx=f"{row['d_real']:.2f}",
                DGz=f"{row['d_fake']:.2f}", ips=f"{row['img_per_s']:.0f}", load=f"{row['loader_share']:.1%}",
                refresh=False,
            )
        self.update(step)

    def restart(self, step: int) -> None:
        """Rolled back to `step` (a non-finite loss): count from there again."""
        if self._bar is not None:
            self._bar.reset(total=self.total)
            self._bar.update(step)
        self.step, self._start_t, self._start_step = step, self.clock(), step

    def close(self) -> None:
        """Final line (plain) or close the bar."""
        if self._bar is not None:
            self._bar.close()
        elif self._plain and self.stats and self._last_line_step != self.step:
            self._write_line()

    def line(self) -> str:
        """step 120/2000 (6%)  epoch 2  38 img/s  D 1.234  G 0.987  D(x) 0.61  D(G(z)) 0.35  ETA 4m05s"""
        parts = [f"step {self.step}/{self.total} ({self.step / max(self.total, 1):.0%})" if self.total else f"step {self.step}"]
        s = self.stats
        if s:
            parts += [
                f"epoch {s['epoch']}", f"{s['img_per_s']:.0f} img/s", f"D {s['loss_d']:.3f}", f"G {s['loss_g']:.3f}",
                f"D(x) {s['d_real']:.2f}", f"D(G(z)) {s['d_fake']:.2f}",
            ]
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {format_eta(eta)}")
        return "  ".join(parts)

    def eta(self) -> float | None:
        """Seconds left: the steps still to go at this session's wall-clock pace (grids and checkpoints
        included), or the time budget left, whichever ends first; None while unknown."""
        now = self.clock()
        left = []
        done, elapsed = self.step - self._start_step, now - self._start_t
        if self.total is not None and done > 0 and elapsed > 0:
            left.append(max(0, self.total - self.step) * elapsed / done)
        if math.isfinite(self.deadline):
            left.append(max(0.0, self.deadline - now))
        return min(left) if left else None

    def _write_line(self) -> None:
        self._last_line_t, self._last_line_step = self.clock(), self.step
        try:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) must not stop the training
            self._plain = False
