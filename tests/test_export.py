"""ONNX export: a trained run exports from the CLI, and the graph computes what the PyTorch generator computes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ganime
from conftest import tiny_config, write_images
from ganime.cli import main
from ganime.config import ModelConfig
from ganime.errors import ConfigError
from ganime.export import export_onnx
from ganime.generate import LoadedGenerator, load_generator, save_generator, to_uint8
from ganime.latent import PORTABLE, TORCH
from ganime.models import build_generator
from ganime.onnx_runtime import OnnxGenerator, read_sidecar

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def random_generator(num_classes: int = 0, seed: int = 0) -> LoadedGenerator:
    """A tiny G whose outputs span much of [-1, 1] (DCGAN's N(0, 0.02) init gives near-zero images) and whose
    BatchNorm statistics are not the identity, so the exported (folded) BN is really exercised."""
    torch.manual_seed(seed)
    model = ModelConfig(resolution=16, g_width=8, z_dim=16, num_classes=num_classes)
    G = build_generator(model)
    for m in G.modules():
        if isinstance(m, torch.nn.ConvTranspose2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, torch.nn.Embedding):
            torch.nn.init.normal_(m.weight)
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    G.eval().requires_grad_(False)
    return LoadedGenerator(G, model, "random", torch.device("cpu"), {})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A 2-step run with an EMA generator (so G and G_ema differ)."""
    root = tmp_path_factory.mktemp("run")
    write_images(root / "imgs", 8, size=16)
    cfg = tiny_config(root / "imgs", root / "cache", **{"max_steps": 2, "loss.ema_beta": 0.9})
    ganime.train(cfg, root / "run", progress=False)
    return root / "run"


def onnx_forward(path: Path, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    return OnnxGenerator(path).forward(z, labels)


@pytest.mark.parametrize("num_classes", [0, 3])
def test_onnx_matches_pytorch_on_the_same_latents(tmp_path, num_classes):
    gen = random_generator(num_classes)
    path = export_onnx(gen, tmp_path / "g.onnx")
    z = np.random.default_rng(1).standard_normal((9, 16)).astype(np.float32)
    labels = np.arange(9) % num_classes if num_classes else None
    with torch.no_grad():
        args = (torch.from_numpy(z),) + ((torch.from_numpy(labels),) if num_classes else ())
        want = gen.G(*args).numpy()
    got = onnx_forward(path, z, labels)
    assert got.shape == want.shape == (9, 3, 16, 16)
    assert np.abs(got - want).max() < 1e-4
    assert want.std() > 0.2  # not a degenerate, near-constant image
    # the uint8 images agree too, up to a rare rounding flip at a level boundary
    diff = np.abs(to_uint8(torch.from_numpy(got)).astype(int) - to_uint8(torch.from_numpy(want)).astype(int))
    assert diff.max() <= 1
    if num_classes:
        # labels reach the graph: another class, another image
        other = onnx_forward(path, z, (labels + 1) % num_classes)
        assert np.abs(other - got).max() > 0.1


def test_batch_axis_is_dynamic(tmp_path):
    gen = random_generator()
    path = export_onnx(gen, tmp_path / "g.onnx")
    sess = OnnxGenerator(path).session
    assert sess.get_inputs()[0].shape == ["batch", 16]
    z = np.random.default_rng(2).standard_normal((70, 16)).astype(np.float32)
    full = onnx_forward(path, z)
    for n in (1, 2, 64):
        np.testing.assert_allclose(onnx_forward(path, z[:n]), full[:n], atol=1e-6)


def test_cli_exports_the_ema_generator_of_a_run(run_dir, tmp_path, capsys):
    out = tmp_path / "ship" / "generator.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta == read_sidecar(out)
    assert (meta["z_dim"], meta["resolution"], meta["channels"], meta["num_classes"]) == (16, 16, 3, 0)
    assert meta["value_range"] == [-1, 1] and meta["arch"] == "dcgan" and meta["opset"] == 17
    assert meta["ganime_version"] == ganime.__version__ and meta["step"] == 2
    assert meta["latents"]["scheme"] == PORTABLE and meta["latents"]["same_faces_everywhere"] is True
    assert meta["weights"] == "fp32" and meta["truncation"]["mean"]["shape"] == [1, 16, 4, 4]
    assert meta["verified_max_abs_diff"] < 1e-4
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "generator.json",
        "generator.onnx",
    ]  # no temp files

    z = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
    ema = load_generator(run_dir)
    raw = load_generator(run_dir, use_ema=False)
    with torch.no_grad():
        want_ema, want_raw = ema.G(torch.from_numpy(z)).numpy(), raw.G(torch.from_numpy(z)).numpy()
    assert np.abs(want_ema - want_raw).max() > 1e-4  # the two really differ after 2 steps
    assert np.abs(onnx_forward(out, z) - want_ema).max() < 1e-4

    # --no-ema exports the raw G, overwriting the earlier export in place
    assert main(["export", str(run_dir), "--out", str(out), "--no-ema"]) == 0
    assert np.abs(onnx_forward(out, z) - want_raw).max() < 1e-4


def test_cli_export_mistakes_are_one_line_errors(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "--format", "tflite", "--out", str(tmp_path / "g.onnx")]) == 2
    assert "unknown export format 'tflite'" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--out", str(tmp_path / "g.bin")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "g.onnx")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["export", str(run_dir), "--out", str(tmp_path / "g.onnx"), "--opset", "5"]) == 2
    assert "opset 5" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_export_refuses_a_non_onnx_name(tmp_path):
    with pytest.raises(ConfigError):
        export_onnx(random_generator(), tmp_path / "g.onnx.tmp")


def test_same_seeds_same_images_in_torch_and_onnxruntime(tmp_path):
    # a new generator's seeds are portable: `from_seeds` on both backends, no latents passed around
    gen = random_generator(num_classes=3)
    seeds = [0, 1, 2, 3, 42, 123, 1000, 65535, 2**31 - 1, 2**32, 2**53 - 1, 2**53, 2**62, 2**63 - 1, 77, 5]
    labels = np.arange(16) % 3
    runtime = OnnxGenerator(export_onnx(gen, tmp_path / "g.onnx"))
    assert np.array_equal(runtime.latents(seeds), gen.latents(seeds).numpy())
    for psi in (1.0, 0.6):
        want = gen.from_seeds(seeds, psi, torch.from_numpy(labels)).astype(int)
        assert np.abs(runtime.from_seeds(seeds, psi, labels).astype(int) - want).max() <= 1  # 1/255


def test_fp16_weights_halve_the_file_and_keep_images_within_one_level(tmp_path):
    gen = random_generator()
    full = export_onnx(gen, tmp_path / "full.onnx")
    half = export_onnx(gen, tmp_path / "half.onnx", weights="auto")
    meta = read_sidecar(half)
    assert meta["weights"] == "fp16" and read_sidecar(full)["weights"] == "fp32"
    assert half.stat().st_size < 0.6 * full.stat().st_size
    seeds = list(range(16))
    want = gen.from_seeds(seeds, 0.7).astype(int)
    assert np.abs(OnnxGenerator(half).from_seeds(seeds, 0.7).astype(int) - want).max() <= 1
    assert meta["verified_max_abs_diff"] <= 2 / 255


def test_fp16_is_refused_or_skipped_when_it_breaks_the_bound(tmp_path, monkeypatch):
    import ganime.export as export_module

    monkeypatch.setattr(export_module, "FP16_LEVELS", -1)  # no difference allowed: fp16 cannot keep it
    gen = random_generator()
    with pytest.raises(ConfigError, match="fp16 weights move images"):
        export_onnx(gen, tmp_path / "g.onnx", weights="fp16")
    assert not list(tmp_path.iterdir())
    assert read_sidecar(export_onnx(gen, tmp_path / "g.onnx", weights="auto"))["weights"] == "fp32"
    with pytest.raises(ConfigError, match="weights 'int8' unknown"):
        export_onnx(gen, tmp_path / "g.onnx", weights="int8")


def test_old_generators_export_with_torchs_scheme_and_say_so(tmp_path, capsys):
    gen = random_generator()
    old = LoadedGenerator(gen.G, dataclasses.replace(gen.model, latents=TORCH), "old", gen.device, {})
    path = save_generator(old, tmp_path / "old")
    out = tmp_path / "old.onnx"
    assert main(["export", str(path), "--out", str(out)]) == 0
    assert "note: this generator was saved before portable latents" in capsys.readouterr().out
    meta = read_sidecar(out)
    assert meta["latents"]["scheme"] == TORCH and meta["latents"]["same_faces_everywhere"] is False
    assert OnnxGenerator(out).latent_scheme == TORCH
