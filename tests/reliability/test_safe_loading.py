"""Safe loading: safetensors + validated JSON only; pickles refused; tampered files give one clear error."""

from __future__ import annotations

import json
import pickle
import random
import shutil
import struct

import numpy as np
import pytest
import torch

import ganime
from conftest import tiny_config, write_images
from ganime.errors import CheckpointError, GanimeError
from ganime.generate import load_generator, save_generator


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step run and its exported generator file, shared by the tests (each works on copies)."""
    d = tmp_path_factory.mktemp("safe")
    write_images(d / "imgs", 8)
    cfg = tiny_config(d / "imgs", d / "cache", batch_size=4, max_steps=2)
    result = ganime.train(cfg, d / "run", progress=False)
    gen_file = save_generator(load_generator(d / "run"), d / "export" / "g")
    return cfg, result.checkpoint, gen_file


def copy_ckpt(trained, tmp_path):
    dst = tmp_path / "ckpt-000000002"
    shutil.copytree(trained[1], dst)
    return dst


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".ckpt"])
def test_pickle_files_are_refused_without_being_opened(tmp_path, suffix, monkeypatch):
    evil = tmp_path / f"weights{suffix}"

    class Boom:
        def __reduce__(self):
            return (exec, ("open('PWNED', 'w').write('x')",))

    evil.write_bytes(pickle.dumps(Boom()))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_generator(evil)
    assert not (tmp_path / "PWNED").exists()


def test_no_pickle_or_torch_load_on_any_user_file(trained, tmp_path, monkeypatch):
    cfg, ckpt, gen_file = trained

    def forbidden(*a, **k):
        raise AssertionError("an unpickler was called")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    assert load_generator(ckpt).from_seeds([3]).shape == (1, 16, 16, 3)
    assert load_generator(gen_file).from_seeds([3]).shape == (1, 16, 16, 3)
    shutil.copytree(ckpt.parent, tmp_path / "run")
    result = ganime.train(ganime.config.override(cfg, max_steps=3), tmp_path / "run", resume=True, progress=False)
    assert result.step == 3
    np.savez(tmp_path / "set.npz", images=np.zeros((4, 16, 16, 3), np.uint8))
    assert len(ganime.data.dataset.load_dataset(tmp_path / "set.npz", 16, cache_dir=tmp_path / "c")) == 4


def test_object_arrays_in_a_data_npz_are_refused(tmp_path):
    np.savez(tmp_path / "evil.npz", images=np.array([{"a": 1}], dtype=object))
    with pytest.raises(GanimeError, match="evil.npz"):
        ganime.data.dataset.load_dataset(tmp_path / "evil.npz", 16, cache_dir=tmp_path / "c")


@pytest.mark.parametrize(
    "tamper, message",
    [
        ("truncate", "corrupt or not a safetensors"),
        ("huge_header", "corrupt or not a safetensors"),
        ("missing_file", "missing"),
        ("json_other_model", "does not match its model config"),
        ("json_bad_type", "must be int"),
        ("json_negative", "cannot be built"),
        ("json_garbage", "cannot read"),
        ("wrong_shapes", "does not match its model config"),
    ],
)
def test_tampered_checkpoints_give_one_clear_error(trained, tmp_path, tamper, message):
    ckpt = copy_ckpt(trained, tmp_path)
    model = ckpt / "model.safetensors"
    state = json.loads((ckpt / "state.json").read_text())
    if tamper == "truncate":
        model.write_bytes(model.read_bytes()[:-50])
    elif tamper == "huge_header":
        data = model.read_bytes()
        model.write_bytes(struct.pack("<Q", 2**62) + data[8:])
    elif tamper == "missing_file":
        model.unlink()
    elif tamper == "json_other_model":
        state["config"]["model"]["g_width"] = 10**7  # would be a 12 PB allocation if built before checking
    elif tamper == "json_bad_type":
        state["config"]["model"]["resolution"] = "16"
    elif tamper == "json_negative":
        state["config"]["model"]["z_dim"] = -5
    elif tamper == "wrong_shapes":
        from safetensors.torch import load_file, save_file

        t = load_file(str(model))
        first = next(k for k in t if k.startswith("G."))
        t[first] = torch.zeros(3, 3)
        save_file(t, str(model))
    if tamper.startswith("json_"):
        (ckpt / "state.json").write_text("{garbage" if tamper == "json_garbage" else json.dumps(state))
    with pytest.raises(GanimeError, match=message) as e:
        load_generator(ckpt)
    assert "\n" not in str(e.value)
    assert str(ckpt) in str(e.value) or "ModelConfig" in str(e.value)


@pytest.mark.parametrize("target", ["state.json", "model.safetensors", "gen.safetensors", "gen.json"])
def test_random_byte_flips_never_crash_the_loader(trained, tmp_path, target):
    _, ckpt, gen_file = trained
    rng = random.Random(target)
    outcomes = {"loaded": 0, "clear error": 0}
    for i in range(40):
        work = tmp_path / f"w{i}"
        shutil.copytree(ckpt, work / "ckpt")
        shutil.copy(gen_file, work / "gen.safetensors")
        shutil.copy(gen_file.with_suffix(".json"), work / "gen.json")
        victim = work / "ckpt" / target if target in ("state.json", "model.safetensors") else work / target
        data = bytearray(victim.read_bytes())
        for _ in range(rng.randint(1, 4)):  # mostly in the headers, where flips change structure
            pos = rng.randrange(min(len(data), 800)) if rng.random() < 0.8 else rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
        victim.write_bytes(bytes(data))
        try:
            load_generator(work / ("ckpt" if victim.parent.name == "ckpt" else "gen.safetensors")).from_seeds([1])
            outcomes["loaded"] += 1  # a flip inside tensor data is a valid (different) model
        except GanimeError:
            outcomes["clear error"] += 1
        shutil.rmtree(work)
    assert outcomes["clear error"] > 0
