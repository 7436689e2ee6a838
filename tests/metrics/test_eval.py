"""`ganime eval` end to end on a tiny run, and `--eval-every`: metric columns, eval.png, a `best` checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import ganime
from conftest import tiny_config, write_images
from ganime.checkpoint import read_state
from ganime.cli import main
from ganime.eval_report import evaluate
from ganime.metrics.features import FALLBACK_LABEL, INCEPTION_FILE


def test_public_name_is_the_eval_report_function():
    assert ganime.evaluate is evaluate  # ganime.evaluate stays the API name; the module is ganime.eval_report


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 epochs of a 16 px model, SWD of 64 generated vs 24 real images after each epoch."""
    root = tmp_path_factory.mktemp("eval")
    write_images(root / "imgs", 24, size=16)
    cfg = tiny_config(root / "imgs", root / "cache", epochs=3, eval_every=1, eval_n=64, keep_ckpts=1)
    ganime.train(cfg, root / "run", progress=False)
    return root / "run"


@pytest.fixture
def isolated(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GANIME_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GANIME_INCEPTION_WEIGHTS", raising=False)
    return tmp_path


def test_eval_every_adds_metric_columns_a_plot_and_keeps_the_best_checkpoint(run: Path) -> None:
    with open(run / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("swd")]
    assert [int(r["step"]) for r in rows] == [6, 12, 18]  # 24 images / batch 4 = 6 steps per epoch
    values = {int(r["step"]): float(r["swd"]) for r in rows}
    assert all(np.isfinite(v) and v > 0 for v in values.values()) and all(r["swd_16"] for r in rows)
    assert (run / "eval.png").stat().st_size > 0
    best = json.loads((run / "best.json").read_text())
    assert best["metric"] == "swd" and best["step"] == min(values, key=values.get)
    assert best["value"] == pytest.approx(values[best["step"]], rel=1e-5)
    # best/ is that checkpoint, kept although --keep 1 pruned the ckpt-* dir it came from
    assert read_state(run / "best")["step"] == best["step"]
    assert [p.name for p in run.glob("ckpt-*")] == ["ckpt-000000018"]
    assert ganime.load_generator(run / "best").meta.get("step") == best["step"]


def test_best_moves_only_when_the_metric_improves(run: Path, tmp_path, monkeypatch) -> None:
    import shutil

    import torch

    from ganime.config import TrainConfig
    from ganime.training import periodic_eval
    from ganime.training.report import MetricsLog

    shutil.copytree(run, tmp_path / "run")
    run_dir = tmp_path / "run"
    (run_dir / "best.json").unlink()
    cfg = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    images = np.zeros((8, 16, 16, 3), np.uint8)
    scripted = iter([5.0, 3.0, 4.0])
    monkeypatch.setattr(periodic_eval, "compute", lambda *a, **k: {"swd": next(scripted)})
    evaluator = periodic_eval.TrainingEval(cfg, images, run_dir, torch.device("cpu"))
    G = ganime.load_generator(run_dir).G
    log = MetricsLog(run_dir / "metrics.csv")
    ckpt = run_dir / "ckpt-000000018"
    for step in (20, 21, 22):
        evaluator.run(G, {"step": step, "epoch": step / 6}, log, ckpt)
        if step == 20:
            assert periodic_eval.read_best(run_dir)["step"] == 20
    assert periodic_eval.read_best(run_dir) == {**periodic_eval.read_best(run_dir), "step": 21, "value": 3.0}
    assert [r["swd"] for r in log.rows() if int(r["step"]) >= 20] == ["5", "3", "4"]


def test_ganime_eval_prints_a_table_and_writes_json_next_to_the_checkpoint(run: Path, isolated, capsys) -> None:
    assert main(["eval", str(run), "--metrics", "swd,pr,nn", "--n", "40"]) == 0
    table = capsys.readouterr().out
    report_path = run / "eval" / "ckpt-000000018.json"
    report = json.loads(report_path.read_text())
    assert report["n_fake"] == 40 and report["n_real"] == 24 and report["step"] == 18
    assert set(report["metrics"]) >= {"swd", "swd_16", "precision", "recall", "nn_copy_fraction", "nn_ratio_median"}
    assert report["metrics"]["pr_features"] == FALLBACK_LABEL
    # every P/R figure has its real-vs-real floor: 12 held-back reals vs the other 12, as many fakes
    assert report["metrics"]["pr_n"] == 12 and 0 <= report["metrics"]["recall_real"] <= 1
    assert "real vs real" in table and f"{report['metrics']['recall_real']:.4f}" in table
    assert "weights-free fallback, not comparable to papers" in report["feature_spaces"]["pr"]
    assert Path(report["extras"]["nearest_pairs"]).is_file()
    for key in ("swd", "precision", "nn_copy_fraction"):
        assert f"{key} " in table and f"{report['metrics'][key]:.4f}" in table
    assert "weights-free fallback" in table and str(report_path) in table
    # --json prints the report; the same seed gives the same numbers
    assert main(["eval", str(run), "--metrics", "swd", "--n", "40", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"]["swd"] == pytest.approx(report["metrics"]["swd"])


def test_eval_numbers_track_the_generator(run: Path, isolated) -> None:
    # against a data set of the generator's own samples SWD is far lower than against its training images
    from ganime.eval_report import sample_generator

    own_samples = isolated / "own.npz"
    np.savez(own_samples, images=sample_generator(ganime.load_generator(run), 48, seed=1000))
    own = evaluate(run, data=own_samples, n=48, write=False).metrics["swd"]
    training = evaluate(run, n=48, write=False).metrics["swd"]
    assert own < 0.5 * training


def test_missing_inception_weights_is_one_line_and_writes_nothing(run: Path, isolated, capsys) -> None:
    before = sorted(p.name for p in (run / "eval").glob("*")) if (run / "eval").exists() else []
    assert main(["eval", str(run), "--metrics", "swd,fid", "--n", "8", "--out", str(isolated / "r.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert INCEPTION_FILE in err and str(isolated / "cache" / INCEPTION_FILE) in err
    assert not (isolated / "r.json").exists()
    assert (sorted(p.name for p in (run / "eval").glob("*")) if (run / "eval").exists() else []) == before


def test_bad_arguments_are_one_line_errors(run: Path, isolated, capsys) -> None:
    assert main(["eval", str(run), "--metrics", "swd,bogus"]) == 2
    assert "unknown metric(s) bogus" in capsys.readouterr().err
    assert main(["eval", str(isolated / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", str(run), "--n", "1"]) == 2
    assert "--n must be at least 2" in capsys.readouterr().err


def test_eval_of_the_shipped_generator_writes_to_the_user_cache_not_the_cwd(isolated, monkeypatch) -> None:
    work = isolated / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    report = evaluate("pretrained", metrics="swd", n=16)
    assert report.json_path == str(isolated / "cache" / "eval" / "pretrained.json")
    assert json.loads(Path(report.json_path).read_text())["metrics"]["swd"] == pytest.approx(report.metrics["swd"])
    assert not any(work.iterdir())  # nothing written where the command ran


def test_attrs_on_data_that_is_not_the_faces_set_is_one_line_before_sampling(run: Path, isolated, capsys) -> None:
    assert main(["eval", str(run), "--metrics", "attrs", "--n", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "only on the DiceBear faces set" in err
    # a 16 px generator on the faces set: the classifier needs 64 px
    assert main(["eval", str(run), "--metrics", "attrs", "--data", "faces", "--n", "8"]) == 2
    assert "64 px" in capsys.readouterr().err


def test_attrs_of_a_64px_generator_against_the_faces_set(isolated) -> None:
    # the shipped generator draws faces of many kinds, yet measurably not the real distribution
    report = evaluate("pretrained", data="faces", metrics="attrs", n=400, write=False)
    got = report.metrics
    assert got["attrs_n"] == 200 and report.feature_spaces["attrs"].startswith("faces-attributes")
    assert got["attrs_count_hair"] >= 15 and got["attrs_count_skinColor"] == 4
    assert got["fcd"] > got["fcd_real"] and got["attrs_tv"] > got["attrs_tv_real"]
