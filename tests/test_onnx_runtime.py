"""ganime.onnx_runtime: exported generators run with numpy + onnxruntime + Pillow alone, torch unimportable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganime import generate as torch_path
from ganime.cli import main
from ganime.config import ModelConfig
from ganime.errors import CheckpointError, ConfigError
from ganime.export import export_onnx
from ganime.latent import PORTABLE, TORCH, portable_latents
from ganime.models import build_generator
from ganime.onnx_runtime import GRID_TILE, OnnxGenerator, make_grid, to_uint8, write_pngs

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

BLOCKED = "raise ImportError('{name} is blocked: ganime.onnx_runtime must work without it')\n"


def exported(folder: Path, num_classes: int) -> tuple[Path, torch_path.LoadedGenerator]:
    torch.manual_seed(num_classes)
    model = ModelConfig(resolution=16, g_width=8, z_dim=16, num_classes=num_classes)
    G = build_generator(model)
    for m in G.modules():  # outputs across [-1, 1] rather than DCGAN init's near-zero images
        if isinstance(m, torch.nn.ConvTranspose2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, torch.nn.Embedding):
            torch.nn.init.normal_(m.weight)
    gen = torch_path.LoadedGenerator(G.eval(), model, "test", torch.device("cpu"), {})
    return export_onnx(gen, folder / f"g{num_classes}.onnx"), gen


@pytest.fixture(scope="module")
def uncond(tmp_path_factory):
    return exported(tmp_path_factory.mktemp("onnx"), 0)


@pytest.fixture(scope="module")
def cond(tmp_path_factory):
    return exported(tmp_path_factory.mktemp("onnx"), 3)


def run_without(blocked: list[str], args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run python with `args` where importing any of `blocked` raises ImportError (shadowing packages)."""
    shim = tmp_path / "shim"
    for name in blocked:
        (shim / name).mkdir(parents=True, exist_ok=True)
        (shim / name / "__init__.py").write_text(BLOCKED.format(name=name))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_shim_really_blocks_torch(tmp_path):
    r = run_without(["torch"], ["-c", "import torch"], tmp_path)
    assert r.returncode != 0 and "torch is blocked" in r.stderr


API_SCRIPT = """
import sys
import numpy as np
from ganime.onnx_runtime import OnnxGenerator
gen = OnnxGenerator(sys.argv[1])
z = np.load(sys.argv[2])
labels = np.arange(len(z)) % gen.num_classes if gen.num_classes else None
np.save("forward.npy", gen.forward(z, labels))
np.save("seeds.npy", gen.from_seeds([0, 1, 2], labels=None if labels is None else labels[:3]))
assert "torch" not in sys.modules and "typer" not in sys.modules
"""


@pytest.mark.parametrize("kind", ["uncond", "cond"])
def test_runtime_api_without_torch_matches_pytorch(kind, request, tmp_path):
    path, gen = request.getfixturevalue(kind)
    z = np.random.default_rng(5).standard_normal((6, 16)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    r = run_without(["torch", "typer", "onnx"], ["-c", API_SCRIPT, str(path), "z.npy"], tmp_path)
    assert r.returncode == 0, r.stderr

    labels = torch.arange(6) % 3 if gen.model.num_classes else None
    with torch.no_grad():
        want = gen.G(torch.from_numpy(z), labels) if labels is not None else gen.G(torch.from_numpy(z))
    assert np.abs(np.load(tmp_path / "forward.npy") - want.numpy()).max() < 1e-4
    # seeds: portable latents, so the torch path draws the same images from the same seeds
    want_seeds = gen.from_seeds([0, 1, 2], labels=None if labels is None else labels[:3])
    assert np.abs(np.load(tmp_path / "seeds.npy").astype(int) - want_seeds.astype(int)).max() <= 1


def test_python_m_ganime_runtime_without_torch(uncond, tmp_path):
    path, _ = uncond
    args = [
        "-m",
        "ganime.onnx_runtime",
        str(path),
        "--n",
        "5",
        "--seed",
        "7",
        "--grid",
        "g.png",
        "--outdir",
        "pngs",
    ]
    r = run_without(["torch", "typer", "onnx"], args, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "wrote g.png (5 images, seeds 7..11)\n" in r.stdout
    names = sorted(p.name for p in (tmp_path / "pngs").iterdir())
    assert names == [f"seed{s:06d}.png" for s in range(7, 12)]
    want = OnnxGenerator(path).from_seeds(range(7, 12))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "pngs" / "seed000009.png")), want[2])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.png")), make_grid(want, min_tile=GRID_TILE))

    # explicit latents give the torch path's images
    np.save(tmp_path / "z.npy", OnnxGenerator(path).latents([7, 8]))
    r = run_without(["torch", "typer"], ["-m", "ganime.onnx_runtime", str(path), "--latents", "z.npy"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "grid.png")), make_grid(want[:2], min_tile=GRID_TILE))

    r = run_without(["torch", "typer"], ["-m", "ganime.onnx_runtime", "missing.onnx"], tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1


def test_ganime_generate_backend_onnxruntime_without_torch(cond, tmp_path):
    path, _ = cond
    args = ["-m", "ganime", "generate", str(path), "--backend", "onnxruntime", "-n", "6", "--grid", "g.png"]
    r = run_without(["torch", "onnx"], args, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "wrote g.png (6 images, seeds 0..5)\n" in r.stdout
    # labels cycle 0, 1, 2 as on the torch backend
    gen = OnnxGenerator(path)
    want = gen.from_seeds(range(6), labels=np.arange(6) % 3)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.png")), make_grid(want, min_tile=GRID_TILE))


def test_cli_picks_onnxruntime_for_onnx_files_and_checks_flags(uncond, tmp_path, capsys, monkeypatch):
    path, _ = uncond
    monkeypatch.chdir(tmp_path)
    assert main(["generate", str(path), "-n", "2", "--outdir", "out"]) == 0
    assert "wrote 2 PNGs to out" in capsys.readouterr().out
    assert main(["generate", str(path), "--interpolate", "0", "1", "--out", "w.gif"]) == 2
    assert "--interpolate needs --backend torch" in capsys.readouterr().err
    assert main(["generate", str(path), "--backend", "tensorrt"]) == 2
    assert "unknown backend" in capsys.readouterr().err
    assert main(["generate", str(path), "--backend", "onnxruntime", "--truncation", "0"]) == 2


def test_seeds_are_the_torch_paths_and_reproducible(uncond):
    path, loaded = uncond
    gen = OnnxGenerator(path)
    assert gen.latent_scheme == PORTABLE == loaded.latent_scheme
    z = gen.latents([3, 4])
    assert np.array_equal(z, loaded.latents([3, 4]).numpy()) and np.array_equal(z, portable_latents([3, 4], 16))
    assert np.array_equal(gen.from_seeds([3, 4]), gen.from_seeds([3, 4]))
    assert not np.array_equal(gen.from_seeds([3])[0], gen.from_seeds([4])[0])
    with pytest.raises(ConfigError, match="out of range"):
        gen.latents([-1])


def test_exports_without_a_latent_scheme_keep_numpys_seeds(uncond, tmp_path):
    # a sidecar written before latent schemes: seeds stay numpy's default_rng, so its saved seeds keep their faces
    for name in ("g0.onnx", "g0.json"):
        shutil.copy(uncond[0].parent / name, tmp_path / name)
    meta = json.loads((tmp_path / "g0.json").read_text())
    meta["latents"] = {k: v for k, v in meta["latents"].items() if k != "scheme"}
    (tmp_path / "g0.json").write_text(json.dumps(meta))
    old = OnnxGenerator(tmp_path / "g0.onnx")
    assert old.latent_scheme == TORCH
    assert np.array_equal(old.latents([3])[0], np.random.default_rng(3).standard_normal(16).astype(np.float32))
    assert not np.array_equal(old.latents([3]), OnnxGenerator(uncond[0]).latents([3]))
    assert "drawn with numpy" in write_pngs(tmp_path / "g0.onnx", 2, grid=tmp_path / "g.png")[0]
    meta["latents"]["scheme"] = "mersenne"
    (tmp_path / "g0.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown latent scheme 'mersenne'"):
        OnnxGenerator(tmp_path / "g0.onnx")


@pytest.mark.parametrize("kind", ["uncond", "cond"])
def test_truncation_in_the_graph_matches_the_torch_path(kind, request):
    path, loaded = request.getfixturevalue(kind)
    gen = OnnxGenerator(path)
    z = gen.latents(range(8))
    labels = np.arange(8) % 3 if gen.num_classes else None
    tl = None if labels is None else torch.from_numpy(labels)
    for psi in (1.0, 0.7, 0.2):
        torch_images = loaded.images(torch.from_numpy(z), tl, truncation=psi)
        assert np.abs(gen.images(z, labels, truncation=psi).astype(int) - torch_images.astype(int)).max() <= 1
    # psi pulls every image toward one mean image: the spread across latents shrinks with psi
    spread = [gen.images(z, labels, truncation=psi).astype(float).std(axis=0).mean() for psi in (1.0, 0.5, 0.05)]
    assert spread[0] > spread[1] > spread[2]
    with pytest.raises(ConfigError, match="truncation"):
        gen.images(z, labels, truncation=0.0)


def test_bad_inputs_are_clear_errors(uncond, cond):
    gen, cgen = OnnxGenerator(uncond[0]), OnnxGenerator(cond[0])
    z = np.zeros((2, 16), np.float32)
    with pytest.raises(ConfigError, match=r"shape \(N, 16\)"):
        gen.images(np.zeros((2, 8), np.float32))
    with pytest.raises(ConfigError, match="not class-conditional"):
        gen.images(z, labels=np.array([0, 1]))
    with pytest.raises(ConfigError, match="pass labels"):
        cgen.images(z)
    with pytest.raises(ConfigError, match=r"0\.\.2"):
        cgen.images(z, labels=np.array([0, 3]))
    assert cgen.images(z[:0], labels=np.zeros(0, np.int64)).shape == (0, 16, 16, 3)


def test_sidecar_is_required_and_must_match_the_file(uncond, tmp_path):
    path = shutil.copy(uncond[0], tmp_path / "g.onnx")
    with pytest.raises(CheckpointError, match="g.json is missing"):
        OnnxGenerator(path)
    meta = json.loads(uncond[0].with_suffix(".json").read_text())
    (tmp_path / "g.json").write_text(json.dumps({**meta, "sha256": "0" * 64}))
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        OnnxGenerator(path)
    (tmp_path / "g.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CheckpointError, match="newer ganime"):
        OnnxGenerator(path)


def test_helpers_match_the_torch_path_exactly():
    x = torch.rand(3, 3, 5, 5) * 2.4 - 1.2
    x[0, 0, 0, :3] = torch.tensor([-1.0, 1.0, 0.0])
    assert np.array_equal(to_uint8(x.numpy()), torch_path.to_uint8(x))
    from ganime import io

    assert make_grid is io.make_grid  # one tiler (ganime.io) for the torch and torch-free paths
