"""Search by picture: `invert` finds a latent whose face is near a picture; latents travel as base64url text."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganime.cli import main
from ganime.errors import ConfigError, DataError
from ganime.generate import load_generator, save_generator
from ganime.invert import fit_picture, invert, load_picture, picture_array
from ganime.latent import decode_latent, encode_latent, portable_latents
from test_directions import random_generator


def test_latent_text_round_trips_exactly_and_refuses_bad_text():
    z = portable_latents([1, 2], 128)[1]
    z[0], z[1] = np.float32(1e-38), np.float32(-0.0)
    text = encode_latent(z)
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(text) == -(-128 * 4 * 4 // 3) and set(text) <= alphabet  # 683 characters, no padding
    back = decode_latent(text, 128)
    assert back.dtype == np.float32 and np.array_equal(back.view(np.uint32), z.view(np.uint32))
    assert encode_latent(np.array([1.0], np.float32)) == "AACAPw"  # little-endian 0x3f800000
    short = "holds 125 values; the generator takes 128"
    for bad, message in [(text[:-4], "509 bytes, not 512"), (encode_latent(z[:125]), short),
                         (text + "!", "base64url"), ("", "base64url")]:
        with pytest.raises(ConfigError, match=message):
            decode_latent(bad, 128)
    nan = np.full(128, np.nan, np.float32)
    with pytest.raises(ConfigError, match="not finite"):
        decode_latent(base64.urlsafe_b64encode(nan.tobytes()).decode().rstrip("="), 128)


def test_pictures_are_read_as_rgb_squares(tmp_path):
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :30, 3] = 255  # left half opaque red, right half transparent -> white
    Image.fromarray(rgba).save(tmp_path / "a.png")
    pic = load_picture(tmp_path / "a.png")
    assert pic.shape == (40, 60, 3) and tuple(pic[0, 0]) == (200, 0, 0) and tuple(pic[0, -1]) == (255, 255, 255)
    assert fit_picture(pic, 16).shape == (16, 16, 3)
    assert picture_array(np.zeros((20, 20), np.uint8)).shape == (20, 20, 3)
    for bad in (np.zeros((20, 20, 3), np.float32), np.zeros((4, 4, 3), np.uint8)):
        with pytest.raises(DataError):
            picture_array(bad)
    (tmp_path / "not.png").write_text("hello")
    with pytest.raises(DataError, match="cannot read picture"):
        load_picture(tmp_path / "not.png")
    with pytest.raises(DataError, match="does not exist"):
        load_picture(tmp_path / "missing.png")


def test_threads_are_narrowed_for_one_search_only():
    gen = random_generator(resolution=16, z_dim=16, seed=3)
    target = gen.from_seeds([9])[0]
    seen: list[int] = []
    gen.G.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        invert(gen, target, steps=2, seeds=4, starts=1, threads=1)
        assert seen and set(seen) == {1}  # every forward pass of the search ran on one thread
        assert torch.get_num_threads() == 2  # and the setting is back as it was
    finally:
        torch.set_num_threads(before)


def test_inverting_a_generated_face_gets_closer_than_the_best_seed():
    torch.set_num_threads(1)
    gen = random_generator(resolution=32, z_dim=32, seed=3)
    z_true = gen.latents([123_456])  # not among the searched seeds 0..63
    target = gen.images(z_true)[0]
    result = invert(gen, target, steps=80, seeds=64, starts=2)
    assert result.z.shape == (32,) and result.image.shape == (32, 32, 3) and result.steps == 80
    assert 0 <= result.seed < 64
    assert result.loss < 0.7 * result.start_loss
    start = gen.from_seeds([result.seed])[0].astype(float)
    err_start = np.abs(start - target).mean()
    err_result = np.abs(result.image.astype(float) - target).mean()
    assert err_result < 0.8 * err_start, (err_start, err_result)
    assert np.array_equal(result.image, gen.images(result.z[None])[0])  # the reported face is the latent's face
    assert abs(float(result.z.norm()) / 32**0.5 - 1) < 0.3  # stays near the N(0, I) shell


def test_cli_invert_writes_face_latent_and_permalink(tmp_path: Path, capsys):
    gen = random_generator(resolution=16, z_dim=16, seed=4)
    path = save_generator(gen, tmp_path / "g.safetensors")
    Image.fromarray(gen.from_seeds([999])[0]).resize((48, 48)).save(tmp_path / "face.png")
    assert main(["invert", str(path), str(tmp_path / "face.png"), "--out", str(tmp_path / "out"),
                 "--steps", "10", "--seeds", "16"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("#z=") and lines[-1].endswith("&t=1")
    z = np.load(tmp_path / "out" / "latent.npy")
    assert z.shape == (16,) and np.array_equal(decode_latent(lines[-1][3:-4], 16), z)
    face = np.asarray(Image.open(tmp_path / "out" / "face.png"))
    assert np.array_equal(face, load_generator(path).images(torch.from_numpy(z)[None])[0])
    assert (tmp_path / "out" / "permalink.txt").read_text().strip() == lines[-1]
    for args, message in [([str(tmp_path / "nope.png")], "does not exist"), ([str(tmp_path / "g.json")], "cannot read")]:
        assert main(["invert", str(path), *args, "--out", str(tmp_path / "o2")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not (tmp_path / "o2").exists()
