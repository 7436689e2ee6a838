"""Directions: SeFa and named directions in z, stored beside the weights, applied by `generate --edit` and in ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganime.cli import main
from ganime.config import ModelConfig
from ganime.direction_fit import (
    Labelled,
    conditional,
    effective,
    fit_boundary,
    labelled_directions,
    preview_sheet,
    sefa,
    tag_directions,
    z_weight,
)
from ganime.directions import Direction, Directions, directions_path, load_directions, parse_edits, save_directions
from ganime.errors import CheckpointError, ConfigError
from ganime.generate import LoadedGenerator, load_generator, save_generator
from ganime.latent import portable_latents
from ganime.models import build_generator


def random_generator(resolution: int = 16, z_dim: int = 16, seed: int = 0) -> LoadedGenerator:
    """A tiny untrained G whose images vary with z (kaiming init instead of DCGAN's near-zero N(0, 0.02))."""
    torch.manual_seed(seed)
    model = ModelConfig(resolution=resolution, g_width=8, z_dim=z_dim)
    G = build_generator(model)
    for m in G.modules():
        if isinstance(m, torch.nn.ConvTranspose2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    G.eval().requires_grad_(False)
    return LoadedGenerator(G, model, "random", torch.device("cpu"), {})


@pytest.fixture
def gen_file(tmp_path: Path) -> Path:
    return save_generator(random_generator(), tmp_path / "g.safetensors")


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_sefa_directions_are_orthonormal_and_move_the_first_layer_most():
    gen = random_generator()
    d = sefa(gen, 4)
    assert d.names == ["sefa-0", "sefa-1", "sefa-2", "sefa-3"] and d.groups == ["shape"] * 4
    assert torch.allclose(d.matrix @ d.matrix.T, torch.eye(4), atol=1e-5)
    W = z_weight(gen.G, gen.z_dim)  # the first layer's output moves by W^T d for a unit move d of z
    moved = (d.matrix @ W).norm(dim=1)
    assert torch.all(moved[:-1] >= moved[1:] - 1e-6)  # largest first
    rand = torch.nn.functional.normalize(torch.randn(64, gen.z_dim, generator=torch.Generator().manual_seed(0)), dim=1)
    assert float(moved[0]) > float((rand @ W).norm(dim=1).max())  # SeFa's top beats any of 64 random unit moves
    z = gen.latents([7])
    before = gen.images(z).astype(int)
    for name in d.names:
        after = gen.images(d.apply(z, {name: 3.0})).astype(int)
        assert np.abs(after - before).mean() > 2, name  # each direction visibly changes the face


def test_named_direction_is_recovered_from_labels_defined_by_a_known_direction():
    rng = np.random.default_rng(0)
    truth = unit(rng.standard_normal(16))
    z = torch.from_numpy(portable_latents(range(3000), 16))
    labels = (z.numpy() @ truth) > 0.8  # a rare label (~21 %), as hair colours are
    fitted = fit_boundary(z, labels).numpy()
    assert abs(np.linalg.norm(fitted) - 1) < 1e-5
    assert fitted @ truth > 0.9


def test_conditional_directions_do_not_move_the_other_attributes():
    rng = np.random.default_rng(1)
    hair = unit(rng.standard_normal(16))
    skin = unit(0.7 * hair + 0.7 * unit(rng.standard_normal(16)))  # correlated, as in real data
    z = torch.from_numpy(portable_latents(range(4000), 16))
    zn = z.numpy()
    labels = [
        Labelled(Direction("hair-red", "Red hair", "named", "colours"), "hairColor", zn @ hair > 0.5),
        Labelled(Direction("hair-pink", "Pink hair", "named", "colours"), "hairColor", zn @ hair < -0.5),
        Labelled(Direction("skin-dark", "Dark skin", "named", "colours"), "skinColor", zn @ skin > 0.5),
    ]
    raw = labelled_directions(z, labels, condition=False)
    cond = labelled_directions(z, labels, condition=True)
    red, pink, dark = (raw.vector(n) for n in ("hair-red", "hair-pink", "skin-dark"))
    assert abs(float(red @ dark)) > 0.4  # unconditioned, "red hair" also darkens the skin
    red_c = cond.vector("hair-red")
    assert abs(float(red_c @ dark)) < 1e-5 and abs(float(red_c @ pink)) > 0.5  # siblings are not projected out
    assert float(red_c @ torch.from_numpy(hair).float()) > 0.5  # still moves the hair
    assert torch.allclose(cond.matrix.norm(dim=1), torch.ones(3), atol=1e-5)
    q = conditional(torch.eye(3), ["a", "a", "b"])
    assert torch.allclose(q, torch.eye(3))  # already orthogonal: unchanged


def test_directions_that_do_not_raise_their_own_label_are_left_out_with_the_reason():
    rng = np.random.default_rng(3)
    truth = unit(rng.standard_normal(16))
    x = rng.standard_normal(16)
    other = unit(x - (x @ truth) * truth)  # orthogonal to the label's boundary: moves it not at all
    weak = unit(0.05 * truth + other)  # mostly beside the boundary: +3 raises the label by a few faces only
    entries = tuple(Direction(n, n, "named", "colours") for n in ("works", "beside", "weak", "sefa-0"))
    matrix = torch.from_numpy(np.stack([truth, other, weak, other])).float()
    found = Directions(entries, matrix)

    def label(z: torch.Tensor) -> dict[str, np.ndarray]:
        red = z.numpy() @ truth > 0.8
        return {"works": red, "beside": red, "weak": red}  # "sefa-0" has no label: kept unchecked

    z = torch.from_numpy(portable_latents(range(500), 16))
    kept, dropped = effective(found, z, label)
    assert kept.names == ["works", "sefa-0"] and torch.equal(kept.vector("works"), found.vector("works"))
    assert set(dropped) == {"beside", "weak"}
    assert "rises only from 2" in dropped["beside"] and "needs +10%" in dropped["beside"]
    kept, dropped = effective(found, z, label, min_gain=0.0)  # a bar of no gain keeps all but a loss
    assert "weak" in kept.names


def test_tag_directions_need_enough_examples():
    gen = random_generator()
    truth = unit(np.random.default_rng(2).standard_normal(16))
    z = gen.latents(list(range(600))).numpy()
    items = [(s, ["Smiling"] if z[s] @ truth > 0.3 else []) for s in range(600)]
    items += [(600, ["rare"])]
    found = tag_directions(gen, items, min_examples=20)
    assert found.names == ["tag-smiling"] and found.entries[0].kind == "tag"
    assert float(found.vector("tag-smiling") @ torch.from_numpy(truth).float()) > 0.9


def test_edits_parse_and_refuse_mistakes_with_clear_messages():
    d = sefa(random_generator(), 2)
    assert parse_edits(["sefa-0=1.5", "sefa-1=-2", "sefa-0=0.5"], d) == {"sefa-0": 2.0, "sefa-1": -2.0}
    for bad, message in [
        (["nope=1"], "unknown direction 'nope'"), (["sefa-0"], "NAME=AMOUNT"), (["sefa-0=abc"], "not a number"),
        (["sefa-0=11"], "between -10 and 10"), (["sefa-0=nan"], "between"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_edits(bad, d)
    z = torch.zeros(2, 16)
    moved = d.apply(z, {"sefa-0": 2.0, "sefa-1": -1.0})
    assert torch.allclose(moved[0], 2 * d.matrix[0] - d.matrix[1], atol=1e-6)
    assert d.apply(z, {}) is z


def test_directions_are_stored_beside_the_weights_and_round_trip(tmp_path, gen_file):
    assert directions_path(gen_file) == tmp_path / "g.directions.safetensors"
    assert directions_path(tmp_path / "run") == tmp_path / "run" / "directions.safetensors"
    assert directions_path(tmp_path / "run" / "ckpt-000000002") == tmp_path / "run" / "directions.safetensors"
    gen = load_generator(gen_file)
    assert len(gen.directions) == 0  # none yet: an empty set, not an error
    with pytest.raises(ConfigError, match="has no directions"):
        load_directions(gen)
    d = sefa(gen, 3)
    path = save_directions(d, directions_path(gen_file))
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["version"] == 1 and meta["z_dim"] == 16
    assert [e["name"] for e in meta["directions"]] == d.names
    assert set(meta["directions"][0]) == {"name", "label", "kind", "group", "step", "range"}
    again = load_generator(gen_file)
    assert again.directions.names == d.names and torch.equal(again.directions.matrix, d.matrix)
    assert torch.equal(load_directions(path).matrix, d.matrix) and torch.equal(load_directions(gen_file).matrix, d.matrix)
    assert torch.equal(again.edited_latents([3], {"sefa-1": 1.0})[0], again.latents([3])[0] + d.matrix[1])
    path.with_suffix(".json").write_text("{}")
    with pytest.raises(CheckpointError, match="not a ganime directions file"):
        _ = load_generator(gen_file).directions


def test_preview_sheet_has_a_row_per_direction():
    gen = random_generator()
    d = sefa(gen, 3)
    sheet = preview_sheet(gen, d, seed=7)
    assert sheet.shape[0] > 3 * 16 and sheet.dtype == np.uint8
    rows = [sheet[20 + i * 18 : 20 + i * 18 + 16, 150:] for i in range(3)]
    assert all(np.abs(r[:, :16].astype(int) - r[:, -16:].astype(int)).mean() > 1 for r in rows)  # -3 differs from +3


def test_cli_directions_then_generate_with_edits(tmp_path, gen_file, capsys):
    assert main(["directions", str(gen_file), "--sefa", "4", "--no-attributes", "--samples", "100"]) == 0
    out = capsys.readouterr().out
    assert "4 directions" in out and (tmp_path / "g.directions.safetensors").is_file()
    sheet = Image.open(tmp_path / "g.directions-preview.png")
    assert sheet.height > 4 * 16
    assert main(["generate", str(gen_file), "--seed", "7", "--n", "1", "--outdir", str(tmp_path / "plain")]) == 0
    assert main(["generate", str(gen_file), "--seed", "7", "--n", "1", "--outdir", str(tmp_path / "edited"),
                 "--edit", "sefa-0=3", "--edit", "sefa-2=-1.5"]) == 0
    plain = np.asarray(Image.open(tmp_path / "plain" / "seed000007.png"))
    edited = np.asarray(Image.open(tmp_path / "edited" / "seed000007.png"))
    gen = load_generator(gen_file)
    want = gen.images(gen.edited_latents([7], {"sefa-0": 3.0, "sefa-2": -1.5}))[0]
    assert np.array_equal(edited, want) and np.abs(edited.astype(int) - plain.astype(int)).mean() > 2
    capsys.readouterr()
    for bad, message in [("nope=1", "unknown direction 'nope'"), ("sefa-0=99", "between -10 and 10"),
                         ("sefa-0", "NAME=AMOUNT")]:
        assert main(["generate", str(gen_file), "--n", "1", "--edit", bad, "--grid", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err


def test_onnx_sidecar_carries_directions_and_the_runtime_applies_edits(tmp_path, gen_file, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from ganime.export import export_onnx
    from ganime.onnx_runtime import OnnxGenerator

    gen = load_generator(gen_file)
    d = sefa(gen, 3)
    save_directions(d, directions_path(gen_file))
    gen = load_generator(gen_file)
    onnx_path = export_onnx(gen, tmp_path / "g.onnx")
    meta = json.loads(onnx_path.with_suffix(".json").read_text())
    entries = meta["directions"]["directions"]
    assert [e["name"] for e in entries] == d.names and len(entries[0]["vector"]) == 16
    assert np.array_equal(np.asarray([e["vector"] for e in entries], np.float32), d.matrix.numpy())  # exact
    runner = OnnxGenerator(onnx_path)
    edits = {"sefa-0": 2.5, "sefa-2": -1.0}
    for psi in (1.0, 0.6):
        want = gen.images(gen.edited_latents([5, 6], edits), truncation=psi).astype(int)
        got = runner.images(runner.edit(runner.latents([5, 6]), edits), truncation=psi).astype(int)
        assert np.abs(got - want).max() <= 2
    assert np.array_equal(runner.edit(runner.latents([5]), ["sefa-0=2.5", "sefa-2=-1"]),
                          gen.edited_latents([5], edits).numpy())
    assert main(["generate", str(onnx_path), "--n", "1", "--seed", "5", "--edit", "sefa-0=2.5", "--edit", "sefa-2=-1",
                 "--outdir", str(tmp_path / "onnx")]) == 0
    got = np.asarray(Image.open(tmp_path / "onnx" / "seed000005.png")).astype(int)
    assert np.abs(got - gen.images(gen.edited_latents([5], edits))[0].astype(int)).max() <= 2
    capsys.readouterr()
    assert main(["generate", str(onnx_path), "--n", "1", "--edit", "smile=1", "--grid", str(tmp_path / "y.png")]) == 2
    assert "unknown direction 'smile'" in capsys.readouterr().err


def test_shipped_generator_has_its_directions():
    gen = load_generator("pretrained")
    d = gen.directions
    assert len(d) >= 8 and d.z_dim == gen.z_dim == 128
    assert torch.allclose(d.matrix.norm(dim=1), torch.ones(len(d)), atol=1e-5)
    assert {e.group for e in d.entries} <= {"colours", "details", "shape"}
    assert "directions" in gen.meta.get("card", {})  # named in the model card
    names = set(d.names)
    assert {"hair-red", "skin-dark"} <= names and all(isinstance(x, Directions) for x in [d])


def test_cli_directions_from_gallery_tags(tmp_path, gen_file, capsys):
    from ganime.io import png_bytes
    from ganime.web.store import open_store

    gen = load_generator(gen_file)
    truth = unit(np.random.default_rng(5).standard_normal(16))
    z = gen.latents(list(range(160))).numpy()
    png = png_bytes(np.zeros((4, 4, 3), np.uint8))
    with open_store(tmp_path / "gallery.sqlite") as store:
        for s in range(160):
            store.add(model_id="m", seed=s, truncation=1.0, png=png, tags=["happy"] if z[s] @ truth > 0 else ["calm"])
    assert main(["directions", str(gen_file), "--sefa", "0", "--no-attributes", "--gallery", str(tmp_path / "gallery.sqlite"),
                 "--out", str(tmp_path / "tags.safetensors")]) == 0
    found = load_directions(tmp_path / "tags.safetensors")
    assert found.names == ["tag-calm", "tag-happy"] and {e.kind for e in found.entries} == {"tag"}
    assert float(found.vector("tag-happy") @ torch.from_numpy(truth).float()) > 0.8
    capsys.readouterr()
    assert main(["directions", str(gen_file), "--sefa", "0", "--no-attributes", "--gallery", str(tmp_path / "none.sqlite")]) == 2
    assert "no gallery at" in capsys.readouterr().err
