"""Training progress as a user sees it: a bar on a terminal; in a log file, plain lines a person can tail."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from conftest import tiny_config, write_images
from ganime.training.progress import Progress, format_eta

ROW = {"loss_d": 1.25, "loss_g": 0.75, "d_real": 0.61, "d_fake": 0.35, "img_per_s": 38.2, "loader_share": 0.01}


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def simulate(stream, steps: int = 100, seconds_per_step: float = 1.0, every_s: float = 30.0, **kw) -> Progress:
    """A run of `steps` steps at a steady pace, logging a row every 10 steps, like the training loop."""
    clock = FakeClock()
    p = Progress(steps, 0, stream=stream, every_s=every_s, clock=clock, **kw)
    for step in range(1, steps + 1):
        clock.t += seconds_per_step
        if step % 10 == 0:
            p.set_stats(step, 1 + step // 50, ROW)
        else:
            p.update(step)
    p.close()
    return p


def test_a_log_gets_one_plain_line_every_n_seconds():
    log = io.StringIO()
    simulate(log)
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    # the first logged row, then every 30 s of a 100 s run (the last one falls on the end)
    assert [line.split()[1] for line in lines] == ["10/100", "40/100", "70/100", "100/100"]
    assert lines[1] == "step 40/100 (40%)  epoch 1  38 img/s  D 1.250  G 0.750  D(x) 0.61  D(G(z)) 0.35  ETA 1m00s"
    assert lines[-1].endswith("epoch 3  38 img/s  D 1.250  G 0.750  D(x) 0.61  D(G(z)) 0.35  ETA 0s")


def test_eta_is_the_sooner_of_the_steps_left_and_the_time_budget():
    log = io.StringIO()
    clock = FakeClock()
    p = Progress(1000, 0, stream=log, clock=clock, deadline=clock.t + 120)
    clock.t += 10
    p.set_stats(10, 1, ROW)  # 1 s/step: 990 s of steps left, but only 110 s of the --minutes budget
    assert p.eta() == 110 and log.getvalue().rstrip().endswith("ETA 1m50s")
    only_time = Progress(None, 0, stream=io.StringIO(), clock=clock, deadline=clock.t + 7200)
    assert only_time.line() == "step 0  ETA 2h00m"
    assert format_eta(59.6) == "1m00s" and format_eta(-3) == "0s"


def test_a_terminal_gets_the_redrawn_bar_and_no_lines():
    term = Terminal()
    simulate(term)
    text = term.getvalue()
    assert "\r" in text and "100/100" in text and "D=1.250" in text
    assert "ETA" not in text  # no plain lines in between


def test_no_progress_writes_nothing():
    for stream in (io.StringIO(), Terminal()):
        simulate(stream, enabled=False)
        assert stream.getvalue() == ""


def test_a_training_run_logged_to_a_file_reads_line_by_line(tmp_path):
    write_images(tmp_path / "data", 12)
    (tmp_path / "tiny.json").write_text(tiny_config(tmp_path / "data", tmp_path / "cache").to_json())
    with open(tmp_path / "train.log", "w") as log:  # `ganime train ... > train.log 2>&1`
        r = subprocess.run(
            [sys.executable, "-m", "ganime", "train", "--config", "tiny.json", "--epochs", "4", "--out", "run"],
            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GANIME_CACHE": str(tmp_path)},
            timeout=300, check=False,
        )
    text = Path(tmp_path / "train.log").read_text()
    assert r.returncode == 0, text
    assert "\r" not in text
    progress = [line for line in text.splitlines() if line.startswith("step ")]
    assert progress[0].startswith("step 3/12 (25%)  epoch 1  ") and progress[-1].startswith("step 12/12 (100%)  epoch 4")
    for field in ("img/s", "D ", "G ", "ETA"):
        assert all(field in line for line in progress), progress
