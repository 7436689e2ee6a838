"""Hostile data: every broken or malicious file a scraped folder or archive can hold is used correctly or
skipped and counted with its reason; the summary is printed, training goes on, archives stay in memory and stop
at the configured size. The corpus is generated here (corpus.py)."""

from __future__ import annotations

import builtins
import errno
import io
import os
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

import ganime
from conftest import tiny_config
from ganime.cli import main
from ganime.data import sources
from ganime.data.dataset import load_dataset
from ganime.errors import DataError
from reliability import corpus

WHITE = (255, 255, 255)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile") / "imgs"
    corpus.good_images(root / "good")
    expected_bad = corpus.bad_files(root / "bad")
    corpus.good_images(root / "dir.jpg")  # a folder named like an image is walked, its images used
    return root, expected_bad


def load(path, tmp_path, **kw):
    return load_dataset(path, 16, cache_dir=tmp_path / "cache", **kw)


def test_folder_uses_every_valid_image_and_counts_every_bad_one(hostile, tmp_path):
    root, _ = hostile
    ds = load(root, tmp_path)
    s = ds.summary
    skipped, examples = s["skipped"], s["skipped_examples"]
    readable_unreadable = os.geteuid() == 0  # root reads a chmod 000 file: it is a valid PNG, so it is used
    assert len(ds) == 2 * len(corpus.GOOD_NAMES) + readable_unreadable
    # every bad file is accounted for under a reason naming what is wrong with it
    assert skipped["zero-byte file"] == 1
    assert skipped["truncated image"] == 2  # truncated PNG and JPEG
    assert skipped["image too large (decompression bomb guard)"] == 1
    assert skipped["not a regular file"] == 2  # a FIFO and /dev/zero: neither is ever opened
    assert skipped["unreadable file (Too many levels of symbolic links)"] == 2
    assert skipped["unreadable file (No such file or directory)"] == 1  # dangling link
    assert skipped["symlink loop"] == 1  # a folder linking to itself is walked once
    assert skipped["not an image"] == 3  # a text file named .png, a garbage header, a non-UTF-8-named text file
    assert skipped["not an image file name"] == 1
    assert sum(skipped.values()) == 14 + (not readable_unreadable)
    assert examples["zero-byte file"] == "bad/zero.png"
    assert examples["image too large (decompression bomb guard)"] == "bad/bomb.png"
    # names that are not UTF-8 are printable and JSON-safe in the summary
    assert all(isinstance(v, str) and v.encode("utf-8") for v in examples.values())


def test_unreadable_file_is_skipped_with_its_reason(tmp_path, monkeypatch):
    # chmod 000 does not stop root (these tests may run as root), so the permission error is raised for real
    # by the open() the folder reader uses, for that one file
    folder = tmp_path / "imgs"
    corpus.good_images(folder)
    real_open = builtins.open

    def guarded_open(file, *a, **k):
        if str(file).endswith("good_rgb.png"):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr(sources, "open", guarded_open, raising=False)
    ds = load(folder, tmp_path)
    assert len(ds) == len(corpus.GOOD_NAMES) - 1
    assert ds.summary["skipped"] == {"unreadable file (Permission denied)": 1}
    if os.geteuid() != 0:  # and without monkeypatching, as an ordinary user
        monkeypatch.undo()
        (folder / "good.jpg").chmod(0)
        ds = load(folder, tmp_path / "2")
        assert ds.summary["skipped"] == {"unreadable file (Permission denied)": 1}


def test_unusual_valid_images_decode_to_the_right_pixels(tmp_path):
    folder = tmp_path / "good"
    corpus.good_images(folder)

    def rgb(name):
        return np.asarray(sources.decode((folder / name).read_bytes(), WHITE)).astype(int)

    assert (rgb("anim.gif") == [255, 0, 0]).all(axis=-1).mean() > 0.95  # first frame of an animation
    assert (rgb("anim.webp")[..., 0] > 200).all() and (rgb("anim.webp")[..., 1:] < 50).all()
    assert (rgb("palette_trns.png") == WHITE).all()  # the transparent palette entry shows the background
    la = rgb("la.png")  # grey 128 at alpha 100 over white
    assert np.abs(la - round(128 * 100 / 255 + 255 * 155 / 255)).max() <= 1
    png16 = rgb("png16.png")[..., 0]
    assert png16.min() == 0 and png16.max() >= 250  # 16-bit range scaled to 8 bits, not clipped to white
    cmyk = rgb("cmyk.jpg")
    ref = np.asarray(Image.open(folder / "good_rgb.png").convert("RGB")).astype(int)
    assert cmyk.shape == ref.shape and cmyk.std() > 30  # CMYK converted to RGB, not a flat or inverted mess


def test_zip_traversal_entries_are_never_used_and_nothing_is_written_outside(tmp_path):
    (tmp_path / "box").mkdir()
    z = corpus.hostile_zip(tmp_path / "box" / "data.zip", bomb_members=2, bomb_bytes=2 * 2**20)
    before = sorted(p for p in tmp_path.rglob("*"))
    ds = load(z, tmp_path)
    assert len(ds) == 1  # ok/good.png only
    s = ds.summary["skipped"]
    assert s["unsafe path in archive"] == 4  # ../evil.png, ../../etc/evil2.png, /abs/evil3.png, a/../../evil4.png
    after = sorted(p for p in tmp_path.rglob("*") if "cache" not in p.parts)
    assert after == [p for p in before if "cache" not in p.parts]  # archives are read in memory, never extracted
    assert not list(tmp_path.parent.rglob("evil*"))


def test_zip_bomb_stops_at_the_configured_size(tmp_path, monkeypatch):
    z = corpus.hostile_zip(tmp_path / "bomb.zip", bomb_members=4, bomb_bytes=2 * 2**20)
    ds = load(z, tmp_path, max_archive_bytes=2**20)  # 1 MiB of uncompressed data at most
    s = ds.summary["skipped"]
    assert s["archive size limit reached"] == 4 and len(ds) == 1
    # a member whose header lies about its size is cut at the limit while inflating, never held whole
    lying = tmp_path / "lying.zip"
    with zipfile.ZipFile(lying, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.png", b"\0" * (4 * 2**20))
    raw = bytearray(lying.read_bytes())
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed-size fields -> 100 bytes
        at = raw.index(sig)
        raw[at + off : at + off + 4] = (100).to_bytes(4, "little")
    lying.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"no usable image.*skipped 1: 1 (corrupt archive member|not an image)"):
        load(lying, tmp_path)
    # a member declared over the per-member cap is skipped without inflating it
    monkeypatch.setattr(sources, "MAX_MEMBER_BYTES", 2**20)  # (64 MiB by default)
    huge = tmp_path / "huge.zip"
    with zipfile.ZipFile(huge, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.png", corpus._png_bytes(corpus._rgb()))
        zf.writestr("huge.png", b"\0" * (sources.MAX_MEMBER_BYTES + 1))
    ds = load(huge, tmp_path)
    assert len(ds) == 1 and ds.summary["skipped"] == {"archive member too large": 1}


def test_tar_with_traversal_links_and_devices(tmp_path):
    good = corpus._png_bytes(corpus._rgb(seed=3))
    path = tmp_path / "data.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name in ("ok.png", "../up.png", "/abs.png"):
            info = tarfile.TarInfo(name)
            info.size = len(good)
            tf.addfile(info, io.BytesIO(good))
        link = tarfile.TarInfo("link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
        dev = tarfile.TarInfo("dev.png")
        dev.type = tarfile.CHRTYPE
        tf.addfile(dev)
    ds = load(path, tmp_path)
    assert len(ds) == 1
    assert ds.summary["skipped"] == {"unsafe path in archive": 2}  # links and devices are never read
    (tmp_path / "cut.tar.gz").write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match="cut.tar.gz"):
        load(tmp_path / "cut.tar.gz", tmp_path)


def test_training_on_the_hostile_folder_prints_the_summary_and_runs(hostile, tmp_path, capsys):
    root, _ = hostile
    code = main(["data", "info", str(root), "--size", "16", "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr()
    assert code == 0 and "Traceback" not in out.err + out.out
    assert "skipped:" in out.out and "zero-byte file  (e.g. bad/zero.png)" in out.out
    cfg = tiny_config(root, tmp_path / "cache", batch_size=8, max_steps=2)
    result = ganime.train(cfg, tmp_path / "run", progress=False)
    assert result.step == 2 and result.stopped == "done"
