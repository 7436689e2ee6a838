"""--precision / --channels-last: `auto` times the candidates, records and caches its choice; bf16 trains."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import ganime
from conftest import tiny_config, write_images
from ganime.checkpoint import read_state, read_tensors, resolve_checkpoint
from ganime.cli import main
from ganime.config import override
from ganime.errors import ConfigError
from ganime.models import build_generator
from ganime.training import precision
from ganime.training.precision import Runtime

CPU = torch.device("cpu")


@pytest.fixture
def runtime_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANIME_CACHE", str(tmp_path / "ganime-cache"))
    return tmp_path / "ganime-cache" / "runtime.json"


def test_candidates_on_cpu():
    auto = precision.candidates("auto", "auto", CPU)
    assert {c.label() for c in auto} == {
        "fp32/channels_last", "fp32/contiguous", "bf16/channels_last", "bf16/contiguous"
    }
    assert precision.candidates("bf16", "off", CPU) == [Runtime("bf16", False)]
    with pytest.raises(ConfigError, match="precision 'fp8' unknown"):
        precision.candidates("fp8", "auto", CPU)
    with pytest.raises(ConfigError, match="channels-last 'yes' unknown"):
        precision.candidates("fp32", "yes", CPU)


def test_pick_fastest_probes_small_then_times_the_close_ones_at_full_batch():
    """A candidate 8x slower at the probe batch is not timed again; the close ones are, twice each, alternating."""
    speed = {"fp32/channels_last": 1.0, "fp32/contiguous": 1.6, "bf16/channels_last": 8.0, "bf16/contiguous": 9.0}
    calls = []

    def seconds_per_image(rt: Runtime, batch: int, steps: int) -> float:
        calls.append((rt.label(), batch))
        # at the full batch contiguous wins: the second round decides, not the probe
        return speed[rt.label()] * (0.5 if batch == 64 and not rt.channels_last else 1.0)

    winner, timings = precision.pick_fastest(precision.candidates("auto", "auto", CPU), seconds_per_image, 64)
    assert winner == Runtime("fp32", False)
    assert [b for _, b in calls] == [16, 16, 16, 16, 64, 64, 64, 64]
    full = [lbl for lbl, b in calls if b == 64]
    assert full == ["fp32/channels_last", "fp32/contiguous", "fp32/contiguous", "fp32/channels_last"]
    assert timings["bf16/contiguous@16"] == pytest.approx(1 / 9.0, rel=0.01)
    assert timings["fp32/contiguous@64"] == pytest.approx(1 / 0.8, rel=0.01)


def test_pick_fastest_keeps_each_candidates_best_full_batch_time():
    """One slow (noisy) full-batch timing does not decide: each candidate keeps its best of two."""
    noise = {("fp32/channels_last", 0): 3.0}  # the first full-batch timing of channels_last hit a busy moment
    seen: dict[str, int] = {}

    def seconds_per_image(rt: Runtime, batch: int, steps: int) -> float:
        if batch < 64:
            return 1.0
        k = seen.get(rt.label(), 0)
        seen[rt.label()] = k + 1
        base = 1.0 if rt.channels_last else 1.2
        return base * noise.get((rt.label(), k), 1.0)

    winner, _ = precision.pick_fastest(precision.candidates("fp32", "auto", CPU), seconds_per_image, 64)
    assert winner == Runtime("fp32", True)


def test_slow_precisions_are_screened_out_by_one_convolution():
    cands = precision.candidates("auto", "auto", CPU)
    kept, ms = precision.drop_slow_precisions(cands, {"fp32": 0.010, "bf16": 0.070}.get)
    assert {c.precision for c in kept} == {"fp32"} and len(kept) == 2
    assert ms == {"bf16": 70.0, "fp32": 10.0}
    kept, _ = precision.drop_slow_precisions(cands, {"fp32": 0.010, "bf16": 0.005}.get)
    assert kept == cands  # a precision faster than fp32 stays, and so does fp32 (within 3x)
    # the real measurement: positive and finite for every precision this CPU can run
    for p in ("fp32", "bf16"):
        assert 0 < precision.conv_seconds(p, CPU, batch=2) < 10


def test_auto_picks_a_candidate_records_it_and_caches_it(tmp_path, runtime_cache):
    write_images(tmp_path / "imgs", 16, size=16)
    cfg = tiny_config(
        tmp_path / "imgs", tmp_path / "cache", "modern", max_steps=1, precision="auto", channels_last="auto"
    )
    ganime.train(cfg, tmp_path / "a", progress=False)
    rec = json.loads((tmp_path / "a" / "runtime.json").read_text())
    labels = {c.label() for c in precision.candidates("auto", "auto", CPU)}
    assert rec["source"] == "timed" and Runtime.from_dict(rec).label() in labels
    # every candidate was timed, or its precision was screened out by a convolution > 3x the fastest one's
    timed = {k.split("@")[0] for k in rec["timings_img_per_s"]}
    conv_ms = rec["conv_ms"]
    assert timed <= labels and all(v > 0 for v in rec["timings_img_per_s"].values())
    assert all(conv_ms[lbl.split("/")[0]] > 3 * min(conv_ms.values()) for lbl in labels - timed)
    # the precision with the fastest convolution is always timed (fp32 on AVX2; on an AMX CPU it can be bf16,
    # and fp32 is then screened out when over 3x slower)
    assert any(lbl.startswith(min(conv_ms, key=conv_ms.get) + "/") for lbl in timed)
    # the checkpoint records the choice next to the config, so generate/resume know how the run ran
    state = read_state(resolve_checkpoint(tmp_path / "a"))
    assert state["runtime"] == Runtime.from_dict(rec).to_dict() and state["config"]["precision"] == "auto"
    assert len(json.loads(runtime_cache.read_text())["entries"]) == 1
    # a second run on this machine reads the cache instead of timing again, and gets the same choice
    ganime.train(cfg, tmp_path / "b", progress=False)
    rec_b = json.loads((tmp_path / "b" / "runtime.json").read_text())
    assert rec_b["source"] == "cache" and Runtime.from_dict(rec_b) == Runtime.from_dict(rec)
    # a resumed run keeps the choice it started with (re-timing could change it and break exact resume)
    ganime.train(override(cfg, max_steps=2), tmp_path / "b", resume=True, progress=False)
    rec_c = json.loads((tmp_path / "b" / "runtime.json").read_text())
    assert rec_c["source"] == "recorded" and Runtime.from_dict(rec_c) == Runtime.from_dict(rec)


def test_forced_bf16_run_trains(tmp_path, runtime_cache):
    write_images(tmp_path / "imgs", 16, size=16)
    cfg = tiny_config(tmp_path / "imgs", tmp_path / "cache", "modern", max_steps=6, precision="bf16",
                      channels_last="off")
    ganime.train(cfg, tmp_path / "run", progress=False)
    rec = json.loads((tmp_path / "run" / "runtime.json").read_text())
    assert rec["precision"] == "bf16" and rec["source"] == "config"
    assert not runtime_cache.exists()  # nothing was timed
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    assert rows and all(np.isfinite(float(r[k])) for r in rows for k in ("loss_d", "loss_g"))
    # the weights stay fp32 (autocast computes in bf16) and they moved away from the seeded init
    torch.manual_seed(cfg.seed)
    init = build_generator(cfg.model).state_dict()
    trained = read_tensors(resolve_checkpoint(tmp_path / "run") / "model.safetensors")
    weights = [k for k in init if k.endswith("weight")]
    assert all(trained[f"G.{k}"].dtype == torch.float32 for k in weights)
    assert all(torch.isfinite(trained[f"G.{k}"]).all() for k in weights)
    assert max((trained[f"G.{k}"] - init[k]).abs().max().item() for k in weights) > 2e-4  # > 2 Adam steps of lr_g 1e-4
    assert ganime.load_generator(tmp_path / "run").from_seeds([0, 1]).std() > 0


def test_cli_rejects_an_unknown_precision(tmp_path, capsys):
    write_images(tmp_path / "imgs", 4, size=16)
    code = main(["train", "--data", str(tmp_path / "imgs"), "--out", str(tmp_path / "run"), "--precision", "fp8",
                 "--steps", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "error: precision 'fp8' unknown" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_faster_alternative_uses_autos_one_convolution_screen():
    slow_bf16 = {"fp32": 0.001, "bf16": 0.020}.get  # AVX2: bf16 emulated
    assert precision.faster_alternative("bf16", ["fp32", "bf16"], slow_bf16) == ("fp32", {"fp32": 1.0, "bf16": 20.0})
    assert precision.faster_alternative("fp32", ["fp32", "bf16"], slow_bf16) is None
    assert precision.faster_alternative("bf16", ["fp32", "bf16"], {"fp32": 0.001, "bf16": 0.0025}.get) is None  # < 3x
    amx = {"fp32": 0.010, "bf16": 0.002}.get  # the other way round: fp32 kept on a CPU where bf16 is 5x faster
    assert precision.faster_alternative("fp32", ["fp32", "bf16"], amx)[0] == "bf16"

    def never(p):
        raise AssertionError("nothing to compare: no timing")

    assert precision.faster_alternative("fp32", ["fp32"], never) is None


def test_resume_says_when_the_recorded_precision_is_much_slower_here(tmp_path, runtime_cache, monkeypatch, caplog):
    """The convolution timings are faked (this machine's real speed varies): bf16 20x slower than fp32, as on an
    AVX2-only CPU. Keeping bf16 warns in one line with the override; `--precision fp32` switches, and the run
    records from which step it is no longer bit-exact."""
    write_images(tmp_path / "imgs", 8, size=16)
    cfg = tiny_config(tmp_path / "imgs", tmp_path / "cache", max_steps=2, precision="bf16", channels_last="off")
    run = tmp_path / "run"
    ganime.train(cfg, run, progress=False)
    speed = {"fp32": 0.001, "bf16": 0.020}
    monkeypatch.setattr(precision, "conv_seconds", lambda p, device, batch=16: speed[p])

    def resume(steps, *flags):
        caplog.clear()
        code = main(["train", "--resume", str(run), "--steps", str(steps), "--no-progress", *flags])
        assert code == 0
        return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    warnings = resume(3)
    advice = [w for w in warnings if "to stay bit-exact" in w]
    assert len(advice) == 1 and "\n" not in advice[0], warnings
    assert "keeps bf16" in advice[0] and "20x slower" in advice[0] and "--precision fp32" in advice[0]
    assert "no longer bit-exact from step 2 on" in advice[0]
    assert json.loads((run / "runtime.json").read_text())["changes"] == []

    warnings = resume(5, "--precision", "fp32")
    assert any("running fp32/contiguous instead of the run's bf16/contiguous from step 3 on" in w for w in warnings)
    assert not any("to stay bit-exact" in w for w in warnings)
    rec = json.loads((run / "runtime.json").read_text())
    assert rec["precision"] == "fp32" and rec["changes"] == [{"step": 3, "from": "bf16/contiguous", "to": "fp32/contiguous"}]
    assert read_state(resolve_checkpoint(run))["runtime"]["precision"] == "fp32"

    warnings = resume(6)  # the run now records fp32, fast here: nothing to say, and the record stays
    assert not any("bit-exact" in w for w in warnings), warnings
    assert json.loads((run / "runtime.json").read_text())["changes"] == rec["changes"]
    speed["bf16"] = 0.0002  # bf16 much faster here (AMX): fp32 was asked for by name, so no advice
    assert not any("bit-exact" in w for w in resume(7))


def test_resume_of_an_auto_run_advises_the_faster_precision(tmp_path, runtime_cache, monkeypatch, caplog):
    """`auto` picked fp32 on the first machine; here (faked timings, as on an AMX CPU) bf16 is 5x faster."""
    write_images(tmp_path / "imgs", 8, size=16)
    cfg = tiny_config(tmp_path / "imgs", tmp_path / "cache", max_steps=1, precision="auto", channels_last="off")
    monkeypatch.setattr(precision, "conv_seconds", lambda p, device, batch=16: {"fp32": 0.001, "bf16": 0.020}[p])
    ganime.train(cfg, tmp_path / "run", progress=False)  # bf16 screened out: the one candidate left is fp32
    assert json.loads((tmp_path / "run" / "runtime.json").read_text())["precision"] == "fp32"
    monkeypatch.setattr(precision, "conv_seconds", lambda p, device, batch=16: {"fp32": 0.010, "bf16": 0.002}[p])
    caplog.clear()
    ganime.train(override(cfg, max_steps=2), tmp_path / "run", resume=True, progress=False)
    advice = [r.getMessage() for r in caplog.records if "to stay bit-exact" in r.getMessage()]
    assert len(advice) == 1 and "keeps fp32" in advice[0] and "--precision bf16" in advice[0], advice
    assert json.loads((tmp_path / "run" / "runtime.json").read_text())["precision"] == "fp32"  # kept, only advised


def test_pick_fastest_does_not_time_a_slower_precision_again_at_full_batch():
    """A precision 30 % slower at the probe batch is not timed at the full batch (modern-128's bf16 vs fp32 on AMX);
    both layouts of the fastest precision are."""
    speed = {"fp32/channels_last": 1.3, "fp32/contiguous": 1.35, "bf16/channels_last": 1.0, "bf16/contiguous": 1.05}
    calls = []

    def seconds_per_image(rt: Runtime, batch: int, steps: int) -> float:
        calls.append((rt.label(), batch))
        return speed[rt.label()]

    winner, _ = precision.pick_fastest(precision.candidates("auto", "auto", CPU), seconds_per_image, 64)
    assert winner == Runtime("bf16", True)
    assert sorted({lbl for lbl, b in calls if b == 64}) == ["bf16/channels_last", "bf16/contiguous"]
