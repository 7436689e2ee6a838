"""Portable latents: one seed, one latent in NumPy, the torch path, onnxruntime and JavaScript; old files keep torch's."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from ganime.config import ModelConfig, TrainConfig, preset, validate
from ganime.errors import CheckpointError, ConfigError
from ganime.generate import LoadedGenerator, default_generator_path, load_generator, save_generator
from ganime.latent import MAX_SEED, PORTABLE, TORCH, format_edits, parse_edit_text, portable_latents
from ganime.models import build_generator

LATENT_JS = Path(__file__).resolve().parents[1] / "src" / "ganime" / "web" / "static" / "latent.js"
# 16 seeds: small, sequential, around 2**32 and 2**53 (where JavaScript numbers stop being exact) and the top
SEEDS = [0, 1, 2, 3, 42, 123, 1000, 65535, 2**31 - 1, 2**32 - 1, 2**32, 2**53 - 1, 2**53, 2**53 + 1, 2**62 + 12345, MAX_SEED]
Z_DIM = 129  # odd: the last Box-Muller pair keeps only its cosine


def reference_latent(seed: int, z_dim: int) -> list[float]:
    """The scheme as written in ganime.latent's docstring, with Python ints and the math module (no NumPy)."""
    mask = 2**64 - 1

    def mix(x: int) -> int:
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    key, out = mix(seed), []
    for k in range((z_dim + 1) // 2):
        a = mix((key + (2 * k + 1) * 0x9E3779B97F4A7C15) & mask) >> 11
        b = mix((key + (2 * k + 2) * 0x9E3779B97F4A7C15) & mask) >> 11
        r, theta = math.sqrt(-2.0 * math.log((a + 1) * 2.0**-53)), 2.0 * math.pi * (b * 2.0**-53)
        out += [r * math.cos(theta), r * math.sin(theta)]
    return out[:z_dim]


def tiny(latents: str = PORTABLE) -> LoadedGenerator:
    model = ModelConfig(resolution=16, g_width=4, d_width=4, z_dim=Z_DIM, latents=latents)
    torch.manual_seed(0)
    return LoadedGenerator(build_generator(model).eval(), model, "tiny", torch.device("cpu"), {})


def test_numpy_follows_the_written_scheme():
    got = portable_latents(SEEDS, Z_DIM)
    want = np.array([reference_latent(s, Z_DIM) for s in SEEDS])
    assert got.dtype == np.float32 and got.shape == (16, Z_DIM)
    # float32 rounding of the same float64 values; libm's log/cos/sin may differ in their last float64 bit
    assert np.abs(got - want).max() <= 1e-6
    assert (got == want.astype(np.float32)).mean() > 0.99


def test_torch_path_draws_the_portable_latents_for_new_generators():
    gen = tiny()
    z = gen.latents(SEEDS)
    assert z.dtype == torch.float32 and np.array_equal(z.numpy(), portable_latents(SEEDS, Z_DIM))
    assert not np.array_equal(gen.latents([5]).numpy(), gen.latents([123]).numpy())
    assert np.array_equal(gen.latents([123])[0].numpy(), z[SEEDS.index(123)].numpy())  # no batch dependence


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (node) to run latent.js: apt-get install nodejs")
def test_javascript_gives_the_same_latents(tmp_path):
    script = tmp_path / "latents.mjs"
    script.write_text(
        f"import {{ seedLatent }} from {json.dumps(LATENT_JS.as_uri())};\n"
        f"const seeds = {json.dumps([str(s) for s in SEEDS])}.map(BigInt);\n"
        f"console.log(JSON.stringify(seeds.map((s) => Array.from(seedLatent(s, {Z_DIM})))));\n"
        # Numbers work too, where exact; out-of-range seeds are an error, as in Python
        f"console.log(JSON.stringify(Array.from(seedLatent(123, {Z_DIM}))));\n"
        "for (const bad of [-1, 2 ** 63, 1.5, 2n ** 63n]) {\n"
        "  try { seedLatent(bad, 4); console.log('accepted', String(bad)); } catch (e) { console.log(e.name); }\n"
        "}\n"
    )
    r = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    js = np.array(json.loads(lines[0]), dtype=np.float32)
    py = portable_latents(SEEDS, Z_DIM)
    assert js.shape == py.shape and np.abs(js - py).max() <= 1e-6
    assert (js == py).mean() > 0.99  # bitwise but for a rare last-bit difference of a maths library
    assert np.array_equal(np.array(json.loads(lines[1]), dtype=np.float32), js[SEEDS.index(123)])
    assert lines[2:] == ["RangeError"] * 4


def test_latents_look_standard_normal_and_independent():
    z = portable_latents(range(20_000), 64).astype(np.float64)
    assert abs(z.mean()) < 0.005 and abs(z.std() - 1) < 0.005
    assert abs(((z - z.mean()) ** 4).mean() / z.var() ** 2 - 3) < 0.05  # kurtosis of a normal
    assert np.isfinite(z).all() and np.abs(z).max() < 8.6  # sqrt(-2 log 2**-53) bounds Box-Muller
    # neighbouring seeds and neighbouring dimensions (cos/sin of one pair) are uncorrelated
    assert abs(np.corrcoef(z[:-1, 0], z[1:, 0])[0, 1]) < 0.03
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.03 and abs(np.corrcoef(z[:, 0] ** 2, z[:, 1] ** 2)[0, 1]) < 0.03


def test_permalink_edits_read_as_the_page_reads_them():
    names = ["hair-red", "sefa-0"]
    edits = parse_edit_text(" hair-red:1.5,sefa-0:0,hair-red:0.25", names)
    assert edits == {"hair-red": 0.25}  # a later amount replaces an earlier one; a zero is no edit
    assert parse_edit_text("sefa-0:1e-05,hair-red:-3", names) == {"sefa-0": 1e-05, "hair-red": -3.0}
    assert format_edits({"sefa-0": 1e-05, "hair-red": -3.0, "x": 0.0}) == "sefa-0:1e-05,hair-red:-3.0"
    assert parse_edit_text(format_edits({"sefa-0": 0.1 + 0.2}), names) == {"sefa-0": 0.1 + 0.2}  # exact round trip
    assert parse_edit_text("", names) == {} and parse_edit_text(None, names) == {}
    for text, message in [("nope:1", "no direction 'nope' for this generator (it has: hair-red, sefa-0)"),
                          ("hair-red", "write name:amount, e.g. hair-red:1.5"), ("sefa-0:x", "'x' is not a number"),
                          ("sefa-0:inf", "within -10..10"), ("sefa-0:10.5", "within -10..10"),
                          ("a:1", "(it has: none)")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_edit_text(text, [] if text == "a:1" else names)
    many = [f"d{i}" for i in range(17)]
    with pytest.raises(ConfigError, match="at most 16 edits"):
        parse_edit_text(",".join(f"{n}:1" for n in many), many)


def test_bad_seeds_are_clear_errors():
    for bad in (-1, MAX_SEED + 1):
        with pytest.raises(ConfigError, match="out of range"):
            portable_latents([bad], 8)
        with pytest.raises(ConfigError, match="out of range"):
            tiny().latents([bad])
    assert portable_latents([], 8).shape == (0, 8)


def test_new_runs_record_the_portable_scheme_and_old_configs_keep_torchs():
    assert TrainConfig().model.latents == PORTABLE and preset("modern").model.latents == PORTABLE
    saved = TrainConfig().to_dict()
    assert TrainConfig.from_dict(saved).model.latents == PORTABLE  # round trip
    del saved["model"]["latents"]  # a config.json written before the field existed
    assert TrainConfig.from_dict(saved).model.latents == TORCH
    bad = TrainConfig.from_dict({**saved, "model": {**saved["model"], "latents": "xorshift"}})
    with pytest.raises(ConfigError, match="latent scheme 'xorshift' unknown"):
        validate(bad)


def test_torch_scheme_is_todays_mapping():
    gen = tiny(TORCH)
    want = torch.stack([torch.randn(Z_DIM, generator=torch.Generator().manual_seed(s)) for s in (0, 7)])
    assert torch.equal(gen.latents([0, 7]), want)


def test_generator_files_keep_their_scheme(tmp_path):
    path = save_generator(tiny(), tmp_path / "new")
    assert json.loads(path.with_suffix(".json").read_text())["model"]["latents"] == PORTABLE
    assert load_generator(path).latent_scheme == PORTABLE
    meta = json.loads(path.with_suffix(".json").read_text())
    del meta["model"]["latents"]  # a sidecar written before latent schemes
    path.with_suffix(".json").write_text(json.dumps(meta))
    old = load_generator(path)
    assert old.latent_scheme == TORCH
    assert torch.equal(old.latents([3])[0], torch.randn(Z_DIM, generator=torch.Generator().manual_seed(3)))
    meta["model"]["latents"] = "xorshift"
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown latent scheme 'xorshift'"):
        load_generator(path)


@pytest.mark.skipif(default_generator_path() is None, reason="the pretrained generator is not installed")
def test_the_shipped_generator_says_which_scheme_it_uses():
    meta = json.loads(default_generator_path().with_suffix(".json").read_text())
    gen = load_generator("pretrained")
    # until the lead ships a generator trained with portable latents, the shipped one keeps torch's seeds
    assert gen.latent_scheme == meta["model"].get("latents", TORCH)
