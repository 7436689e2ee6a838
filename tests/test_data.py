"""Finding, decoding, skipping, cropping and caching images; batches in a reproducible order."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_images
from ganime.data.dataset import load_dataset
from ganime.data.loader import BatchLoader
from ganime.errors import DataError


def make_mixed_folder(root: Path) -> dict[str, int]:
    """Good images in nested folders plus every kind of bad file the issue lists."""
    write_images(root / "a" / "b", 5, size=20)
    write_images(root / "c", 3, size=30, seed=1)
    # truncated PNG
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    (root / "c" / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "zero.png").write_bytes(b"")
    (root / "notes.jpg").write_text("this is not a jpeg")
    # CMYK JPEG: usable
    Image.new("CMYK", (24, 24), (0, 255, 255, 0)).save(root / "cmyk.jpg")
    # palette PNG with a transparent index: usable, transparency composited on the background
    pal = Image.new("P", (24, 24), 0)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(1, (0, 0, 12, 24))
    pal.save(root / "palette.png", transparency=0)
    (root / "README.txt").write_text("readme")
    return {"used": 5 + 3 + 2, "bad": 3}


def test_mixed_folder_counts_used_and_skipped(tmp_path):
    counts = make_mixed_folder(tmp_path / "mixed")
    ds = load_dataset(tmp_path / "mixed", 16, cache_dir=tmp_path / "cache")
    assert len(ds) == counts["used"]
    assert ds.images.shape == (counts["used"], 16, 16, 3) and ds.images.dtype == np.uint8
    skipped = ds.summary["skipped"]
    assert skipped["zero-byte file"] == 1
    assert skipped["not an image"] == 1
    assert skipped["truncated image"] == 1
    assert skipped["not an image file name"] == 1


def test_cmyk_and_palette_transparency_are_converted(tmp_path):
    make_mixed_folder(tmp_path / "mixed")
    ds = load_dataset(tmp_path / "mixed", 16, background=(0, 0, 255), cache_dir=tmp_path / "cache")
    # stored in walk order: a folder's files (sorted) before its subfolders -> cmyk.jpg, palette.png, a/b/*, c/*
    cmyk, palette = ds.images[0], ds.images[1]
    assert cmyk[..., 0].mean() > 200 and cmyk[..., 1:].mean() < 60  # CMYK (0,255,255,0) is red
    left, right = palette[:, :4], palette[:, -4:]
    assert left[..., 1].mean() > 200  # opaque green half
    assert right[..., 2].mean() > 200 and right[..., :2].mean() < 20  # transparent half shows the background


def test_resize_shorter_side_then_centre_crop(tmp_path):
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = 255  # white centre band, black sides
    (tmp_path / "d").mkdir()
    Image.fromarray(img).save(tmp_path / "d" / "wide.png")
    ds = load_dataset(tmp_path / "d", 16, cache_dir=tmp_path / "cache")
    out = ds.images[0]
    assert out.shape == (16, 16, 3)
    assert out[:, 2:-2].min() > 240  # the central square of a 2:1 image is the white band


def test_zip_and_tar_match_folder(tmp_path):
    write_images(tmp_path / "f" / "data" / "data", 6)  # Kaggle anime-faces layout: images under data/
    ds_dir = load_dataset(tmp_path / "f", 16, cache_dir=tmp_path / "cache")
    with zipfile.ZipFile(tmp_path / "f.zip", "w") as z:
        for p in sorted((tmp_path / "f").rglob("*.png")):
            z.write(p, p.relative_to(tmp_path / "f"))
    with tarfile.open(tmp_path / "f.tar.gz", "w:gz") as t:
        t.add(tmp_path / "f", arcname="f")
    for archive in ("f.zip", "f.tar.gz"):
        ds = load_dataset(tmp_path / archive, 16, cache_dir=tmp_path / "cache")
        assert np.array_equal(np.asarray(ds.images), np.asarray(ds_dir.images)), archive


def test_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    write_images(tmp_path / "f", 4)
    load_dataset(tmp_path / "f", 16, cache_dir=tmp_path / "cache")
    from ganime.data import dataset

    calls = []
    monkeypatch.setattr(dataset, "_from_files", lambda *a: calls.append(a) or (_ for _ in ()).throw(AssertionError))
    again = load_dataset(tmp_path / "f", 16, cache_dir=tmp_path / "cache")
    assert len(again) == 4 and not calls  # served from the cache, nothing decoded
    monkeypatch.undo()
    write_images(tmp_path / "f" / "more", 2, seed=5)
    assert len(load_dataset(tmp_path / "f", 16, cache_dir=tmp_path / "cache")) == 6


def test_empty_dataset_is_a_clear_error(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match="no usable image.*accepted formats"):
        load_dataset(tmp_path / "bad", 16, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "missing", 16, cache_dir=tmp_path / "cache")


def test_npz_dataset_with_alpha_and_labels(tmp_path):
    imgs = np.zeros((4, 32, 32, 4), np.uint8)
    imgs[..., 0] = 255
    imgs[:2, ..., 3] = 255  # two opaque red, two fully transparent
    np.savez(tmp_path / "set.npz", images=imgs, labels=np.array(["b", "a", "b", "c"]))
    ds = load_dataset(tmp_path / "set.npz", 16, background=(0, 255, 0), cache_dir=tmp_path / "cache")
    assert ds.images.shape == (4, 16, 16, 3)
    assert tuple(ds.images[0, 0, 0]) == (255, 0, 0) and tuple(ds.images[3, 0, 0]) == (0, 255, 0)
    assert ds.classes == ["a", "b", "c"] and list(ds.labels) == [1, 0, 1, 2]


def test_loader_order_is_seeded_resumable_and_sharded(tmp_path):
    write_images(tmp_path / "f", 10)
    ds = load_dataset(tmp_path / "f", 16, cache_dir=tmp_path / "cache")
    a, b = BatchLoader(ds, 4, seed=1), BatchLoader(ds, 4, seed=1)
    assert a.steps_per_epoch == 2
    assert np.array_equal(a.indices(3, 1), b.indices(3, 1))  # any position rebuilt from (epoch, step)
    assert not np.array_equal(a.order(0), a.order(1))  # reshuffled each epoch
    assert sorted(a.order(0)) == list(range(10))
    x, labels = a.batch(0, 0)
    assert x.shape == (4, 3, 16, 16) and -1 <= x.min() and x.max() <= 1 and labels is None
    expected = np.asarray(ds.images)[a.indices(0, 0)].astype(np.float32) / 127.5 - 1
    assert np.allclose(x.permute(0, 2, 3, 1).numpy(), expected)
    r0, r1 = BatchLoader(ds, 4, seed=1, rank=0, world_size=2), BatchLoader(ds, 4, seed=1, rank=1, world_size=2)
    assert np.array_equal(np.concatenate([r0.indices(0, 1), r1.indices(0, 1)]), a.indices(0, 1))


def test_hflip_mirrors_about_half_the_images_the_same_way_on_every_resume_and_rank(tmp_path):
    write_images(tmp_path / "f", 64)
    ds = load_dataset(tmp_path / "f", 16, cache_dir=tmp_path / "cache")
    plain, flip = BatchLoader(ds, 32, seed=1), BatchLoader(ds, 32, seed=1, hflip=True)
    x, _ = plain.batch(1, 1)
    y, _ = flip.batch(1, 1)
    mirrored = flip.flips(1, 1)
    assert 4 < mirrored.sum() < 28 and not plain.flips(1, 1).any()  # about half, none without hflip
    assert torch.equal(y[mirrored], x[mirrored].flip(-1)) and torch.equal(y[~mirrored], x[~mirrored])
    assert not torch.equal(x[mirrored], x[mirrored].flip(-1))  # the test images are not symmetric
    assert not np.array_equal(flip.flips(1, 0), mirrored)  # drawn anew for each batch
    again = BatchLoader(ds, 32, seed=1, hflip=True)  # a resumed run rebuilds the same flips from the position
    assert torch.equal(again.batch(1, 1)[0], y)
    halves = [BatchLoader(ds, 32, seed=1, rank=r, world_size=2, hflip=True).batch(1, 1)[0] for r in (0, 1)]
    assert torch.equal(torch.cat(halves), y)  # ranks flip their slices as one process would


def test_batch_larger_than_dataset_is_a_clear_error(tmp_path):
    write_images(tmp_path / "f", 3)
    ds = load_dataset(tmp_path / "f", 16, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="fewer than the batch size"):
        BatchLoader(ds, 8, seed=0)
