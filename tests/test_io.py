"""ganime.io: whole files or none, OSError on failure, the same PNG and JSON bytes as before, one grid tiler."""

from __future__ import annotations

import errno
import io as stdlib_io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganime.io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    make_grid,
    png_bytes,
    save_png,
)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_writes_replace_whole_files_and_leave_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "a.bin"  # the folder is made
    assert atomic_write_bytes(path, b"one") == path
    atomic_write_bytes(path, b"two", fsync=False)
    assert path.read_bytes() == b"two" and leftovers(path.parent) == []
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)  # an ordinary file, not mkstemp's 0600
    atomic_write_text(tmp_path / "t.csv", "a,b\r\n1,2\r\n")
    assert (tmp_path / "t.csv").read_bytes() == b"a,b\r\n1,2\r\n"  # newlines as given


def test_json_bytes_are_the_run_files_formats(tmp_path):
    obj = {"b": [1, 2], "a": "é"}
    atomic_write_json(tmp_path / "x.json", obj)
    assert (tmp_path / "x.json").read_text() == json.dumps(obj, indent=1, sort_keys=True)
    atomic_write_json(tmp_path / "y.json", obj, sort_keys=False, newline=True)
    assert (tmp_path / "y.json").read_text() == json.dumps(obj, indent=1) + "\n"
    atomic_write_json(tmp_path / "z.json", obj, indent=None, sort_keys=False)
    assert (tmp_path / "z.json").read_text() == json.dumps(obj)


def test_a_failed_write_keeps_the_old_file_and_raises_oserror(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    atomic_write_json(path, {"v": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1} and leftovers(tmp_path) == []


def test_atomic_path_keeps_the_suffix_and_removes_the_file_on_error(tmp_path):
    with atomic_path(tmp_path / "a.npy") as tmp:
        assert tmp.suffix == ".npy" and tmp.parent == tmp_path and tmp.name.startswith(".a.npy.")
        np.save(tmp, np.arange(3))  # np.save would append .npy to another suffix
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2]
    with pytest.raises(ValueError), atomic_path(tmp_path / "b.png") as tmp:
        tmp.write_bytes(b"half")
        raise ValueError("the writer failed")
    assert not (tmp_path / "b.png").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_save_png_writes_what_pillow_writes(tmp_path, channels):
    image = np.random.default_rng(channels).integers(0, 256, (5, 7, channels), dtype=np.uint8)
    save_png(image, tmp_path / "x.png")
    buf = stdlib_io.BytesIO()
    Image.fromarray(image[..., 0] if channels == 1 else image).save(buf, format="PNG")
    assert (tmp_path / "x.png").read_bytes() == buf.getvalue() == png_bytes(image)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png")).reshape(image.shape), image)


def test_make_grid_places_images_row_by_row_with_padding():
    images = np.stack([np.full((2, 3, 1), i, np.uint8) for i in range(5)])
    grid = make_grid(images, nrow=2, padding=1, pad_value=9)
    assert grid.shape == (3 * (2 + 1) + 1, 2 * (3 + 1) + 1, 1)
    assert grid[1, 1, 0] == 0 and grid[1, 5, 0] == 1 and grid[4, 1, 0] == 2 and grid[7, 1, 0] == 4
    assert grid[0, 0, 0] == 9 and grid[7, 5, 0] == 9  # border, and the empty sixth cell
    assert make_grid(images).shape == (2 * 4 + 2, 3 * 5 + 2, 1)  # default: ceil(sqrt(5)) = 3 per row
    assert make_grid(images, padding=0).shape == (4, 9, 1)



def test_grids_of_small_images_are_enlarged_to_a_visible_tile_pixel_for_pixel():
    from ganime.io import make_grid

    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    grid = make_grid(images, nrow=2, padding=0, min_tile=40)  # 16 px -> x3 = 48 px tiles
    assert grid.shape == (96, 96, 3)
    assert np.array_equal(grid[:48:3, :48:3], images[0]) and np.array_equal(grid[1:48:3, 2:48:3], images[0])
    assert make_grid(images, nrow=2, padding=0).shape == (32, 32, 3)  # no minimum: as drawn
