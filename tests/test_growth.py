"""Growth schedules (training/growth.py): a run that grows twice, its plan, its exact resume; time-based
checkpoints; the adaptive augmentation probability (augment.AdaptiveP)."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

import ganime
from conftest import tiny_config, tiny_grow_config, write_images
from ganime.augment import AdaptiveP, diff_augment
from ganime.checkpoint import list_checkpoints, read_state
from ganime.config import TrainConfig, override, preset, resize, validate
from ganime.data.dataset import load_dataset
from ganime.errors import ConfigError
from ganime.training import growth
from ganime.training.trainer import Trainer


def grow_config(tmp_path, **changes) -> TrainConfig:
    write_images(tmp_path / "imgs", 10, size=32)
    return tiny_grow_config(tmp_path / "imgs", tmp_path / "cache", **changes)


def checkpoint(run, step, name):
    return load_file(str(run / f"ckpt-{step:09d}" / name))


def test_a_run_grows_twice_and_resumes_bit_for_bit_after_each_grow_and_mid_stage(tmp_path, caplog):
    # batch 4: grow to 16 px after 3 steps (12 images) and to 32 px after 6; ADA on, so its p is state too,
    # and the learning rates ramp up over 8 images (2 steps) after each grow: state a resume must restore too
    cfg = grow_config(tmp_path, **{"growth.kimg": (0.012, 0.024), "loss.ada_target": 0.01, "loss.ada_kimg": 0.05,
                                   "loss.ada_interval": 2, "growth.lr_rampup": 0.008})
    assert (cfg.model.levels, cfg.model.resolution) == (2, 32)
    with caplog.at_level(logging.INFO, logger="ganime"):
        ganime.train(override(cfg, max_steps=9), tmp_path / "straight", progress=False)
    grew = [r.getMessage() for r in caplog.records if r.getMessage().startswith("growth: training at")]
    assert [m.split(" from")[0] for m in grew] == ["growth: training at 16 px", "growth: training at 32 px"]
    # stops: right at the first grow point, mid-stage, right at the second, then to the end
    for stop in (3, 5, 6, 9):
        ganime.train(override(cfg, max_steps=stop), tmp_path / "resumed", resume=stop != 3, progress=False)
    for name in ("model.safetensors", "train.safetensors"):
        a, b = checkpoint(tmp_path / "straight", 9, name), checkpoint(tmp_path / "resumed", 9, name)
        assert a.keys() == b.keys()
        assert not [k for k in a if not torch.equal(a[k], b[k])]
    state = read_state(tmp_path / "straight" / "ckpt-000000009")
    assert state["ada"] == read_state(tmp_path / "resumed" / "ckpt-000000009")["ada"]
    logged = [float(r.split(",")[-2]) for r in (tmp_path / "straight" / "metrics.csv").read_text().splitlines()[1:]]
    header = (tmp_path / "straight" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[-2] == "ada_p" and max(logged) > 0  # the controller moved p
    # both blocks trained: their gains left 0 in G and D
    model = checkpoint(tmp_path / "straight", 9, "model.safetensors")
    gains = [k for k in model if k.endswith("gain") and k.startswith(("G.", "D."))]
    assert len(gains) == 4 and all(float(model[k]) != 0 for k in gains)


def test_before_its_first_grow_a_run_trains_only_the_innermost_network(tmp_path):
    cfg = grow_config(tmp_path, **{"growth.kimg": (0.04, 0.08)})
    ganime.train(override(cfg, max_steps=3), tmp_path / "run", progress=False)
    model = checkpoint(tmp_path / "run", 3, "model.safetensors")
    # the blocks have not joined: gains still 0 and the top blocks' weights untouched (their Adam state empty)
    assert all(float(model[k]) == 0 for k in model if k.endswith("gain"))
    train = checkpoint(tmp_path / "run", 3, "train.safetensors")
    assert any(k.startswith("opt_G.") for k in train)
    n_params = sum(1 for _ in ganime.models.build_generator(cfg.model).parameters())
    assert len({k.split(".")[1] for k in train if k.startswith("opt_G.")}) < n_params


def test_a_new_run_plans_its_grow_points_from_its_budget_and_keeps_them_on_resume(tmp_path, caplog):
    cfg = grow_config(tmp_path)  # no grow points: the planner times each stage
    with caplog.at_level(logging.INFO, logger="ganime"):
        ganime.train(override(cfg, max_steps=8), tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    points = saved["growth"]["kimg"]
    assert len(points) == 2 and 0 < points[0] < points[1] < 8 * 4 / 1000
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert [s["resolution"] for s in plan["stages"]] == [8, 16, 32]
    assert all(s["img_per_s"] > 0 for s in plan["stages"])
    assert any("growth plan (new)" in r.getMessage() and " 32 px" in r.getMessage() for r in caplog.records)
    # a resume keeps the plan; asking for other grow points is refused in one line
    ganime.train(override(cfg, max_steps=10), tmp_path / "run", resume=True, progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["growth"]["kimg"] == points
    with pytest.raises(ConfigError, match="growth.kimg"):
        ganime.train(override(cfg, max_steps=12, **{"growth.kimg": (0.001, 0.002)}), tmp_path / "run", resume=True,
                     progress=False)


def test_the_plan_splits_the_budget_in_time_by_the_measured_speeds():
    half = {"growth.final_share": 0.5}
    cfg = override(preset("grow"), epochs=0, minutes=10.0, **half)  # 16, 32, 64 px: 25 %, 25 %, 50 % of 600 s
    assert growth.plan_points(cfg, [400.0, 200.0, 100.0], 100) == (60.0, 90.0)  # 150 s x 400 img/s, + 150 s x 200
    # an image budget: the time that spends it at those shares, 100k = T (0.25 x 400 + 0.25 x 200 + 0.5 x 100)
    cfg = override(preset("grow"), epochs=0, kimg=100.0, **half)
    assert growth.plan_points(cfg, [400.0, 200.0, 100.0], 100) == (50.0, 75.0)
    cfg = override(preset("grow"), epochs=0, minutes=10.0, **{"growth.final_share": 1.0})
    # the whole time at full size: the grow points still rise, by the least a point can
    assert growth.plan_points(cfg, [400.0, 200.0, 100.0], 100) == (0.0, 0.001)
    # the default: 70 % at full size, 15 % in each earlier stage (90 s x 400, + 90 s x 200)
    assert growth.plan_points(override(preset("grow"), epochs=0, minutes=10.0), [400.0, 200.0, 100.0], 1) == (36.0, 54.0)
    # "images": every stage sees the same images, 100k / 3 each
    cfg = override(preset("grow"), epochs=0, kimg=100.0, **{"growth.split": "images"})
    assert growth.plan_points(cfg, [400.0, 200.0, 100.0], 100) == pytest.approx((33.333, 66.667), abs=1e-3)


def test_a_capped_last_stage_sees_at_most_its_kimg_and_gives_the_rest_of_the_budget_to_the_earlier_stages():
    cap = {"growth.final_kimg": 20.0}
    # 600 s, 70 % at full size would be 420 s x 100 img/s = 42 kimg; capped: its last 200 s see 20 kimg, the
    # other 400 s go 50/50 to 16 and 32 px (200 s x 400, + 200 s x 200)
    cfg = override(preset("grow"), epochs=0, minutes=10.0, **cap)
    assert growth.plan_points(cfg, [400.0, 200.0, 100.0], 1) == pytest.approx((80.0, 120.0), abs=1e-3)
    # an image budget of 200 kimg: 20 kimg at full size, the 180 before it split in time at 1:1 (T x 300 = 180k)
    cfg = override(preset("grow"), epochs=0, kimg=200.0, **cap)
    assert growth.plan_points(cfg, [400.0, 200.0, 100.0], 1) == pytest.approx((120.0, 180.0), abs=1e-3)
    # a budget whose last stage sees fewer images than the cap plans as without it
    cfg = override(preset("grow"), epochs=0, minutes=1.0)
    assert growth.plan_points(override(cfg, **cap), [400.0, 200.0, 100.0], 1) == growth.plan_points(
        cfg, [400.0, 200.0, 100.0], 1)
    # a re-plan 100 s into the first stage keeps the cap: the last stage still starts 200 s before the end
    cfg = override(preset("grow"), epochs=0, minutes=10.0, **cap)
    assert growth.plan_points(cfg, [400.0, 200.0, 100.0], 1, seen=50_000, elapsed=100.0) == pytest.approx(
        (90.0, 130.0), abs=1e-3)
    with pytest.raises(ConfigError, match="final_kimg"):
        validate(override(cfg, **{"growth.final_kimg": -1.0}))


def test_a_run_stops_when_its_capped_last_stage_has_had_its_kimg_and_says_so(tmp_path):
    write_images(tmp_path / "imgs", 64, size=32)
    # grow at 16 and 32 images, the 32 px stage capped at 48 images: the run ends at 80, where a budget of
    # minutes would let it run on
    cfg = tiny_grow_config(tmp_path / "imgs", tmp_path / "cache", epochs=0, minutes=5.0,
                           **{"growth.kimg": (0.016, 0.032), "growth.final_kimg": 0.048})
    result = ganime.train(cfg, tmp_path / "run", progress=False)
    assert (result.stopped, result.images_seen, result.step) == ("cap", 80, 80 // cfg.batch_size)
    assert json.loads((tmp_path / "run" / "sittings.json").read_text())[-1]["stopped"] == "cap"
    # a resume has nothing left to train, however many minutes it is given
    again = ganime.train(override(cfg, minutes=5.0), tmp_path / "run", resume=True, progress=False)
    assert (again.stopped, again.images_seen) == ("cap", 80)
    # a budget of images that ends where the cap does stopped at the cap too (the CLI offers no resume)
    exact = ganime.train(override(cfg, minutes=0.0, kimg=0.08), tmp_path / "exact", progress=False)
    assert (exact.stopped, exact.images_seen) == ("cap", 80)


def test_a_stage_far_off_its_probed_speed_gets_the_rest_of_the_run_planned_again():
    cfg = override(preset("grow"), epochs=0, minutes=10.0)  # planned at 400/200/100 img/s: grow at 36 and 54 kimg
    cfg = override(cfg, **{"growth.kimg": growth.plan_points(cfg, [400.0, 200.0, 100.0], 1)})
    clock = growth.StageClock([400.0, 200.0, 100.0])
    steps = [clock.add(cfg.model.levels, 0.64, 64) for _ in range(growth.REPLAN_STEPS + 1)]
    assert steps[:-1] == [None] * growth.REPLAN_STEPS and steps[-1] == pytest.approx(100.0)  # the first one warms up
    # 30 s in, 3k images seen at 100 img/s, a quarter of the probe: the 16 px stage still ends at 15 % of the
    # 600 s (60 s more at 100 img/s), then 90 s of 32 px at 50 img/s
    new, speeds = growth.replan(cfg, clock, 100.0, seen=3000, elapsed=30.0, steps_per_epoch=1)
    assert new.growth.kimg == (9.0, 13.5) and speeds == [100.0, 50.0, 25.0]
    assert clock.add(cfg.model.levels, 0.64, 64) is None  # one check per stage
    # 100 s in: the 16 px stage's 90 s are over, it grows now; a stage within 2x of its probe keeps the plan
    assert growth.replan(cfg, clock, 100.0, seen=9000, elapsed=100.0, steps_per_epoch=1)[0].growth.kimg == (9.0, 13.5)
    assert growth.replan(cfg, clock, 250.0, seen=3000, elapsed=30.0, steps_per_epoch=1) is None
    # an image budget: the rest is shared in time at the new speeds, to spend the same images
    cfg = override(preset("grow"), epochs=0, kimg=100.0, **{"growth.final_share": 0.5})
    new, _ = growth.replan(cfg, clock, 1600.0, seen=0, elapsed=0.0, steps_per_epoch=1)
    assert new.growth.kimg == (50.0, 75.0)


def test_a_run_timed_on_a_misleading_probe_plans_again_and_grows_within_its_minutes(tmp_path, monkeypatch, caplog):
    write_images(tmp_path / "imgs", 200, size=32)  # 50 steps an epoch: few grids and checkpoints in the 6 s
    cfg = tiny_grow_config(tmp_path / "imgs", tmp_path / "cache", epochs=0, minutes=0.1)
    # the probe says every stage is 10^6 img/s: the plan would keep 8 px for all of the 6 s
    monkeypatch.setattr(growth, "measure_speeds", lambda trainer: [1e6, 1e6, 1e6])
    with caplog.at_level(logging.INFO, logger="ganime"):
        ganime.train(cfg, tmp_path / "run", progress=False)
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("growth: 8 px trains at") and "planned again" in m for m in said)
    assert any(m.startswith("growth: training at 32 px") for m in said)  # it grew twice in its 6 s
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    first, *then = plan["replans"]  # 8 px, and 16 px too where it runs over 2x slower than 8 px
    assert first["resolution"] == 8 and first["planned_img_per_s"] == 1e6 and first["measured_img_per_s"] < 1e5
    assert first["kimg"][0] < first["kimg_before"][0] and [r["resolution"] for r in then] in ([], [16])
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["growth"]["kimg"]
    assert saved == plan["replans"][-1]["kimg"] == [s["end_kimg"] for s in plan["stages"][:2]]
    last = list_checkpoints(tmp_path / "run")[-1]
    assert read_state(last)["config"]["growth"]["kimg"] == saved  # a resume follows the new plan


def test_the_probe_weighs_the_lazily_regularised_step_as_training_runs_it(tmp_path, monkeypatch):
    # a real tiny trainer whose steps take 1 s on a fake clock, 9 s more when D is regularised (step % r1_every 0)
    cfg = grow_config(tmp_path, **{"loss.r1_gamma": 0.01, "loss.r1_every": 4})
    dataset = load_dataset(cfg.data.path, 32, 3, cache_dir=cfg.data.cache_dir)
    trainer = Trainer(cfg, dataset, torch.device("cpu"), tmp_path / "run")
    now, seen = [0.0], []
    real_step = trainer.train_step

    def timed_step(real, labels):
        seen.append(trainer.step)
        now[0] += 10.0 if trainer.step % 4 == 0 else 1.0
        return real_step(real, labels)

    monkeypatch.setattr(trainer, "train_step", timed_step)
    before = trainer.snapshot()
    speeds = growth.measure_speeds(trainer, steps=3, clock=lambda: now[0])
    # per stage: 4 steps of training take 10 + 3 x 1 s, so a batch every 13/4 s
    assert speeds == pytest.approx([cfg.batch_size * 4 / 13] * 3)
    assert seen == [0, 0, 1, 1, 1] * 3
    assert trainer.step == before["position"][0]


def test_a_capped_run_of_minutes_re_times_its_stage_by_the_wall_clock_and_plans_again_when_it_drifts():
    clock = growth.StageClock([400.0, 200.0, 100.0])
    # the stage's first step sets the origin; every PACE_STEPS steps after it, images per wall second since then
    paces = [clock.pace(2, 10.0 + i, 64 * (i + 1)) for i in range(2 * growth.PACE_STEPS + 1)]
    assert [i for i, p in enumerate(paces) if p is not None] == [growth.PACE_STEPS, 2 * growth.PACE_STEPS]
    assert paces[growth.PACE_STEPS] == pytest.approx(64.0)
    assert clock.pace(1, 500.0, 0) is None  # a new stage starts its own count
    cfg = override(preset("grow"), epochs=0, minutes=10.0, **{"growth.final_kimg": 10.0})
    cfg = override(cfg, **{"growth.kimg": growth.plan_points(cfg, [400.0, 200.0, 100.0], 1)})
    clock.depth = cfg.model.levels
    # 1.5x the probe: within REPLAN_FACTOR, past PACE_FACTOR; the faster stages keep the cap's 10 kimg for the last
    # and move the first grow point later, into the minutes the cap would have left unused
    new, speeds = growth.replan(cfg, clock, 600.0, seen=6000, elapsed=15.0, steps_per_epoch=1,
                                tolerance=growth.PACE_FACTOR)
    assert speeds == [600.0, 300.0, 150.0] and new.growth.kimg[0] > cfg.growth.kimg[0]
    assert growth.replan(cfg, clock, 600.0, seen=6000, elapsed=15.0, steps_per_epoch=1) is None
    assert growth.replan(cfg, clock, 420.0, seen=6000, elapsed=15.0, steps_per_epoch=1,
                         tolerance=growth.PACE_FACTOR) is None


@pytest.mark.parametrize("capped", [True, False])
def test_a_capped_run_that_trains_faster_than_its_probe_moves_its_grow_points_later(tmp_path, monkeypatch, capped):
    write_images(tmp_path / "imgs", 200, size=32)
    cap = {"growth.final_kimg": 0.4} if capped else {}
    cfg = tiny_grow_config(tmp_path / "imgs", tmp_path / "cache", epochs=0, minutes=0.1, **cap)
    # the probe says 40/20/10 img/s, far below what these tiny stages train at; only the wall-clock re-timing
    # (every 3 steps here) may notice it: the first-steps check is switched off
    monkeypatch.setattr(growth, "measure_speeds", lambda trainer: [40.0, 20.0, 10.0])
    monkeypatch.setattr(growth, "REPLAN_FACTOR", 1e9)
    monkeypatch.setattr(growth, "PACE_STEPS", 3)
    ganime.train(cfg, tmp_path / "run", progress=False)
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    if not capped:  # nothing to gain: the last stage runs to the end of the minutes anyway
        assert "replans" not in plan
        return
    first = plan["replans"][0]
    assert first["resolution"] == 8 and first["measured_img_per_s"] > growth.PACE_FACTOR * 40.0
    assert first["kimg"][0] > first["kimg_before"][0]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["growth"]["kimg"]
    assert saved == plan["replans"][-1]["kimg"]


def test_after_each_grow_the_learning_rates_ramp_up_and_the_optimizers_keep_their_full_rates(tmp_path):
    cfg = override(preset("grow"), **{"growth.kimg": (1.0, 2.0), "growth.lr_rampup": 0.64})  # batch 64: 10 steps
    ramp = [growth.lr_ramp(cfg, seen) for seen in (0, 960, 1000, 1320, 1576, 1640, 2000)]
    assert ramp == pytest.approx([1.0, 1.0, 0.1, 0.6, 1.0, 1.0, 0.1])
    assert growth.lr_ramp(override(cfg, **{"growth.lr_rampup": 0.0}), 1000) == 1.0  # off
    opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))], lr=2e-4)
    with growth.scaled_lr(opt, 0.25):
        assert opt.param_groups[0]["lr"] == pytest.approx(5e-5)
    assert opt.param_groups[0]["lr"] == 2e-4
    # in a run: the same steps as without the ramp up to the grow, other ones after it
    base = grow_config(tmp_path, max_steps=5, **{"growth.kimg": (0.012, 0.04)})
    ganime.train(base, tmp_path / "flat", progress=False)
    ganime.train(override(base, **{"growth.lr_rampup": 0.016}), tmp_path / "ramp", progress=False)
    ganime.train(override(base, max_steps=3), tmp_path / "flat3", progress=False)
    ganime.train(override(base, max_steps=3, **{"growth.lr_rampup": 0.016}), tmp_path / "ramp3", progress=False)
    same = checkpoint(tmp_path / "flat3", 3, "model.safetensors"), checkpoint(tmp_path / "ramp3", 3, "model.safetensors")
    assert all(torch.equal(same[0][k], same[1][k]) for k in same[0])
    flat, ramped = checkpoint(tmp_path / "flat", 5, "model.safetensors"), checkpoint(tmp_path / "ramp", 5, "model.safetensors")
    assert any(not torch.equal(flat[k], ramped[k]) for k in flat)
    with pytest.raises(ConfigError, match="lr_rampup"):
        validate(override(preset("grow"), **{"growth.lr_rampup": -1.0}))


def test_resolution_sets_the_blocks_and_bad_schedules_are_one_clear_error():
    cfg = validate(resize(preset("grow"), 128))
    assert (cfg.model.levels, cfg.model.g_width, cfg.growth.start) == (3, 16, 16)
    with pytest.raises(ConfigError, match="give a --resolution above it"):
        resize(preset("grow"), 16)
    with pytest.raises(ConfigError, match="increasing grow points"):
        validate(override(preset("grow"), **{"growth.kimg": (5.0, 2.0)}))
    with pytest.raises(ConfigError, match="needs the grown model"):
        validate(override(preset("grow"), **{"model.levels": 1}))


def test_a_checkpoint_is_written_when_its_minutes_are_due_and_not_when_off(tmp_path):
    write_images(tmp_path / "imgs", 40)  # 10 steps per epoch: no epoch ends within 6 steps
    cfg = tiny_config(tmp_path / "imgs", tmp_path / "cache", max_steps=6, keep_ckpts=10)
    ganime.train(override(cfg, ckpt_minutes=0.0), tmp_path / "off", progress=False)
    assert [c.name for c in list_checkpoints(tmp_path / "off")] == ["ckpt-000000006"]  # only the final one
    ganime.train(override(cfg, ckpt_minutes=1e-9), tmp_path / "due", progress=False)  # due after every step
    assert len(list_checkpoints(tmp_path / "due")) == 6
    assert TrainConfig().ckpt_minutes == 10.0  # the default: a crash loses at most ten minutes


def test_each_sitting_of_a_long_training_is_recorded_in_the_run(tmp_path):
    write_images(tmp_path / "imgs", 40)
    cfg = tiny_config(tmp_path / "imgs", tmp_path / "cache", max_steps=3)
    ganime.train(cfg, tmp_path / "run", progress=False)
    ganime.train(override(cfg, max_steps=5), tmp_path / "run", resume=True, progress=False)
    first, second = json.loads((tmp_path / "run" / "sittings.json").read_text())
    assert (first["from_step"], first["to_step"], second["from_step"], second["to_step"]) == (0, 3, 3, 5)
    assert first["stopped"] == second["stopped"] == "done" and first["started"] <= second["started"]
    assert second["to_kimg"] > second["from_kimg"] and second["train_seconds"] > 0 and second["cpu"] is not None


def test_adaptive_p_rises_while_d_overfits_and_falls_when_it_does_not():
    ada = AdaptiveP(target=0.6, kimg=0.1, interval=2)  # 100 images take p from 0 to 1
    for _ in range(2):
        ada.observe(torch.ones(10))  # D sure of every real: sign mean 1 > 0.6
    assert ada.p == pytest.approx(0.2)  # 20 images / 100
    for _ in range(4):
        ada.observe(-torch.ones(10))
    assert ada.p == 0.0  # clamped at 0
    state = ada.state()
    other = AdaptiveP(0.6, 0.1, 2)
    other.load(state)
    assert other.state() == state


def test_augmenting_with_probability_p_changes_about_p_of_the_images():
    x = torch.rand(400, 3, 8, 8) * 2 - 1
    g = torch.Generator().manual_seed(0)
    assert torch.equal(diff_augment(x, "color", g, p=0.0), x)
    out = diff_augment(x, "translation", torch.Generator().manual_seed(1), p=0.5)
    changed = (out != x).flatten(1).any(dim=1).float().mean().item()
    assert 0.3 < changed < 0.55  # p = 0.5 applied; some shifts are (0, 0)
    # p = 1 is the fixed policy, draw for draw
    a = diff_augment(x, "color,cutout", torch.Generator().manual_seed(2))
    b = diff_augment(x, "color,cutout", torch.Generator().manual_seed(2), p=1.0)
    assert torch.equal(a, b)


def test_the_model_card_of_a_grown_run_trained_in_two_sittings_loads_and_reads(tmp_path):
    import importlib.util
    from pathlib import Path

    from ganime.checkpoint import resolve_checkpoint
    from ganime.generate import load_generator, page_card, save_generator

    script = Path(__file__).resolve().parents[1] / "scripts" / "build_pretrained.py"
    spec = importlib.util.spec_from_file_location("build_pretrained", script)
    bp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bp)
    cfg = grow_config(tmp_path, max_steps=4, **{"growth.kimg": (0.004, 0.008)})
    ganime.train(cfg, tmp_path / "run", progress=False)  # the first sitting stops at the second grow point
    ganime.train(override(cfg, max_steps=6), tmp_path / "run", resume=True, progress=False)
    run = tmp_path / "run"
    training = bp.run_training(run, read_state(resolve_checkpoint(run)), {"cpu": "test CPU", "threads": 1})
    assert [(p["from_step"], p["to_step"]) for p in training["sittings"]] == [(0, 4), (4, 6)]
    assert [st["resolution"] for st in training["plan"]["stages"]] == [8, 16, 32]
    gen = load_generator(run)
    quality = {"swd": 50.0, "swd_real": 5.0, "n_fake": 8, "n_real": 8, "seed": 0}
    card = {"title": "This test does not exist", "subtitle": "a tiny grown model", "dataset": "noise", "licence": "MIT",
            "recipe": {"preset": "grow"}, "training": {"commands": ["ganime train ..."], **training},
            "quality": quality, "reproduce": "ganime eval ..."}
    gen.meta = {**gen.meta, "card": card}
    path = save_generator(gen, tmp_path / "shipped.safetensors")
    again = load_generator(path)  # the card's home: the nested network comes back from the sidecar
    assert again.model.levels == 2 and (again.from_seeds([3]) == gen.from_seeds([3])).all()
    assert page_card(again) == {"title": card["title"], "subtitle": card["subtitle"]}
    page = bp.card_markdown(json.loads(path.with_suffix(".json").read_text()), path)
    assert "| sittings | 1. " in page and "step 0 -> 4" in page and "2. " in page and "step 4 -> 6" in page
    assert "grew by the plan 8 px from 0 kimg, 16 px from 0.004 kimg, 32 px from 0.008 kimg" in page
    # --card-only: why it ships goes into the card and the page, nothing else is re-measured
    bp.DOC = tmp_path / "pretrained.md"
    bp.write_card(path, "it beats the old one on SWD")
    assert json.loads(path.with_suffix(".json").read_text())["card"]["comparison"] == "it beats the old one on SWD"
    assert "**Why this generator ships:** it beats the old one on SWD" in bp.DOC.read_text()
    assert load_generator(path).meta["card"]["quality"] == quality


def test_a_grown_generator_saves_loads_and_exports_like_any_other(tmp_path):
    from ganime.export import export_onnx
    from ganime.generate import load_generator, save_generator
    from ganime.onnx_runtime import OnnxGenerator

    cfg = grow_config(tmp_path, **{"growth.kimg": (0.004, 0.008)})
    ganime.train(override(cfg, max_steps=4), tmp_path / "run", progress=False)
    gen = load_generator(tmp_path / "run")
    assert (gen.resolution, gen.model.levels) == (32, 2)
    path = save_generator(gen, tmp_path / "g.safetensors")
    again = load_generator(path)  # the file's sidecar (a model card's home) rebuilds the nested network
    assert again.model == gen.model
    assert (again.from_seeds([1, 2]) == gen.from_seeds([1, 2])).all()
    onnx = export_onnx(gen, tmp_path / "g.onnx")
    diff = OnnxGenerator(onnx).images(gen.latents([1, 2]).numpy()).astype(int) - gen.from_seeds([1, 2]).astype(int)
    assert abs(diff).max() <= 1
