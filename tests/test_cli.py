"""The `ganime` command end to end, in a subprocess as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import tiny_config, write_images


def ganime(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "GANIME_CACHE": str(cwd / "cache"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "ganime", *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=300, check=False)


def test_train_generate_video_end_to_end(tmp_path):
    write_images(tmp_path / "faces" / "data" / "data", 12)
    cfg = tiny_config(tmp_path / "faces", tmp_path / "cache")
    (tmp_path / "tiny.json").write_text(cfg.to_json())
    r = ganime("train", "--config", "tiny.json", "--epochs", "2", "--out", "runs/t", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "finished: step 6, epoch 2" in r.stdout
    run = tmp_path / "runs" / "t"
    assert (run / "samples" / "epoch_0002.png").is_file()

    r = ganime("generate", "runs/t", "--n", "9", "--seed", "5", "--grid", "g.png", "--outdir", "pngs", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    grid = np.asarray(Image.open(tmp_path / "g.png"))
    assert grid.shape == (3 * 66 + 2, 3 * 66 + 2, 3)  # 16 px faces enlarged 4x to GRID_TILE (64) in the grid
    singles = sorted((tmp_path / "pngs").glob("*.png"))
    assert [p.name for p in singles][:2] == ["seed000005.png", "seed000006.png"] and len(singles) == 9
    # the same seed gives the same image in a fresh process
    r = ganime("generate", "runs/t", "--n", "1", "--seed", "6", "--outdir", "again", cwd=tmp_path)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again" / "seed000006.png")), np.asarray(Image.open(singles[1])))

    r = ganime("generate", "runs/t", "--interpolate", "1", "2", "--frames", "6", "--out", "walk.gif", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    walk = Image.open(tmp_path / "walk.gif")
    assert walk.n_frames == 6

    r = ganime("video", "runs/t", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (run / "timelapse.mp4").stat().st_size > 0 and Image.open(run / "timelapse.gif").n_frames == 2

    r = ganime("train", "--resume", "runs/t", "--epochs", "3", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "step 9, epoch 3" in r.stdout


def test_dry_run_shows_the_resolved_config(tmp_path):
    r = ganime("train", "--preset", "keras-readme", "--resolution", "32", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)["config"]
    assert cfg["model"]["resolution"] == 32 and cfg["batch_size"] == 25 and cfg["model"]["d_dropout"] == 0.6
    assert not (tmp_path / "runs").exists()


def test_the_default_grows_to_128_px_only_on_large_data_with_a_long_budget(tmp_path):
    write_images(tmp_path / "big", 3, size=160)
    np.savez(tmp_path / "small.npz", images=np.zeros((3, 64, 64, 3), np.uint8))

    def size(*args: str) -> tuple[int, str]:
        r = ganime("train", *args, "--dry-run", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["config"]["model"]["resolution"], r.stderr

    res, said = size("--data", "big", "--minutes", "90")
    assert res == 128 and "data is 160 px" in said and "--resolution 64 keeps 64 px" in said
    assert size("--data", "big", "--kimg", "2000")[0] == 128
    assert size("--data", "big", "--minutes", "10") == (64, "")  # too short a budget for a 128 px stage
    assert size("--data", "small.npz", "--minutes", "90")[0] == 64  # 64 px data is not upscaled
    assert size("--data", "big", "--minutes", "90", "--resolution", "64")[0] == 64  # the user's size wins
    assert size("--data", "big", "--minutes", "90", "--preset", "modern")[0] == 64  # fixed presets stay fixed


def test_the_default_starts_at_64_px_on_a_long_budget_and_grows_from_16_px_on_a_short_one(tmp_path):
    from ganime.config import preset

    write_images(tmp_path / "big", 3, size=160)

    def resolved(*args: str) -> tuple[dict, str]:
        r = ganime("train", *args, "--dry-run", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["config"], r.stderr

    short, said = resolved("--minutes", "5")
    assert (short["model"]["arch"], short["growth"]["start"], said) == ("grown", 16, "")
    modern = json.loads(json.dumps(preset("modern").to_dict()))
    for args in (("--minutes", "30"), ("--kimg", "300")):
        cfg, said = resolved(*args)
        # the fixed 64 px network with every other choice of the default: modern's recipe exactly
        assert cfg["model"] == modern["model"] and cfg["growth"]["start"] == 0, args
        assert {k: cfg[k] for k in ("loss", "optim", "batch_size")} == {k: modern[k] for k in ("loss", "optim", "batch_size")}
        assert "training the fixed 64 px network" in said and "--grow-at" in said
    grown, _ = resolved("--minutes", "30", "--grow-at", "50,100")  # the user's grow points keep the 16 px start
    assert (grown["model"]["arch"], grown["growth"]["start"], grown["growth"]["kimg"]) == ("grown", 16, [50.0, 100.0])
    big, said = resolved("--data", "big", "--minutes", "90")  # 128 px: the 64 px network, then one block
    assert (big["model"]["resolution"], big["model"]["levels"], big["growth"]["start"]) == (128, 1, 64)
    assert big["growth"]["final_kimg"] > 0 and short["growth"]["final_kimg"] == 0  # the 128 px stage is capped
    assert big["model"]["g_width"] == preset("modern-128").model.g_width and "growing from 64 px to 128 px" in said


def test_the_next_command_continues_a_stopped_run_to_its_budget_and_extends_a_finished_one_in_its_unit():
    from ganime.cli.train import _more
    from ganime.config import override, preset
    from ganime.training.loop import TrainResult

    def result(stopped: str) -> TrainResult:
        return TrainResult(Path("r"), Path("r/ckpt"), step=100, epoch=3, images_seen=6400, stopped=stopped, seconds=9.0)

    kimg_run = override(preset("grow"), epochs=0, kimg=12.8)
    assert _more(kimg_run, result("signal")) == " --kimg 12.8"  # Ctrl-C before the budget: the same budget again
    assert _more(kimg_run, result("done")) == " --kimg 9.6"  # not --epochs, which a kimg budget would not use
    assert _more(override(preset("grow"), epochs=0, max_steps=100), result("done")) == " --steps 150"
    assert _more(override(preset("tutorial"), epochs=3), result("done")) == " --epochs 8"
    assert _more(override(preset("tutorial"), epochs=10), result("signal")) == " --epochs 10"


def test_user_mistakes_give_one_line_and_nonzero_exit(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    cases = [
        (("train", "--data", "nowhere"), "does not exist"),
        (("train", "--data", "empty", "--steps", "1"), "no usable image"),
        (("train", "--preset", "nope"), "unknown preset"),
        (("train", "--resolution", "48", "--dry-run"), "not supported"),
        (("generate", "missing-run"), "does not exist"),
        (("generate", "weights.pt"), "pickle"),
        (("video", "empty"), "no sample grids"),
    ]
    (tmp_path / "weights.pt").write_bytes(b"\x80\x04")
    for args, message in cases:
        r = ganime(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr, args
        lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], (args, r.stderr)


def test_fetch_without_credentials_explains_what_to_do(tmp_path):
    env = {"HOME": str(tmp_path), "KAGGLE_CONFIG_DIR": str(tmp_path / "nokaggle"), "KAGGLE_USERNAME": "", "KAGGLE_KEY": ""}
    r = ganime("data", "fetch", "anime-faces", "out", cwd=tmp_path, env=env)
    assert r.returncode == 2
    assert "kaggle.json" in r.stderr and "--data" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_data_info_reports_counts(tmp_path):
    write_images(tmp_path / "d", 5)
    (tmp_path / "d" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    r = ganime("data", "info", "d", "--size", "32", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "5 usable of 6 files" in r.stdout and "broken.png" in r.stdout


def test_help_is_useful():
    r = subprocess.run([sys.executable, "-m", "ganime", "--help"], capture_output=True, text=True, check=False)
    for cmd in ("train", "generate", "video", "data"):
        assert cmd in r.stdout
    r = subprocess.run([sys.executable, "-m", "ganime", "train", "--help"], capture_output=True, text=True, check=False)
    for flag in ("--data", "--preset", "--resume", "--epochs", "--kimg", "--minutes"):
        assert flag in r.stdout
