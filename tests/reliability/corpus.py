"""A hostile image corpus built on the fly: every way a scraped folder or archive can be broken or malicious."""

from __future__ import annotations

import io
import os
import random
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

GOOD_NAMES = ("good_rgb.png", "good.jpg", "cmyk.jpg", "png16.png", "la.png", "palette_trns.png", "anim.gif",
              "anim.webp", "gray.png", "one_by_one.png", "bmp.bmp", "unicode_名前_é.png", "latin1_good_\udce9.png")


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _rgb(size: int = 24, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but which holds a single tiny IDAT: a decompression-bomb header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def good_images(folder: Path) -> dict[str, str]:
    """Valid but unusual images (each must be used): name -> what it exercises."""
    folder.mkdir(parents=True, exist_ok=True)
    _rgb(seed=1).save(folder / "good_rgb.png")
    _rgb(seed=2).save(folder / "good.jpg", quality=90)
    _rgb(seed=3).convert("CMYK").save(folder / "cmyk.jpg")
    arr16 = (np.arange(24 * 24, dtype=np.uint16).reshape(24, 24) * 113)
    Image.fromarray(arr16).save(folder / "png16.png")  # mode I;16
    Image.new("LA", (20, 20), (128, 100)).save(folder / "la.png")
    pal = Image.new("P", (20, 20), 1)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.save(folder / "palette_trns.png", transparency=1)
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    frames[0].save(folder / "anim.webp", save_all=True, append_images=frames[1:], duration=50)
    Image.new("L", (18, 30), 77).save(folder / "gray.png")
    Image.new("RGB", (1, 1), (10, 200, 30)).save(folder / "one_by_one.png")
    _rgb(seed=4).save(folder / "bmp.bmp")
    _rgb(seed=5).save(folder / "unicode_名前_é.png")
    with open(os.fsencode(folder) + b"/latin1_good_\xe9.png", "wb") as f:  # a valid image, non-UTF-8 name
        f.write(_png_bytes(_rgb(seed=9)))
    return {n: n for n in GOOD_NAMES}


def bad_files(folder: Path) -> dict[str, str]:
    """Files that must be skipped: name -> the reason family expected in the skip summary."""
    folder.mkdir(parents=True, exist_ok=True)
    good_png, good_jpg = _png_bytes(_rgb(seed=6)), io.BytesIO()
    _rgb(seed=7).save(good_jpg, format="JPEG")
    good_jpg = good_jpg.getvalue()
    (folder / "zero.png").write_bytes(b"")
    (folder / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    (folder / "truncated.jpg").write_bytes(good_jpg[: len(good_jpg) // 3])
    # fixed garbage: some random tails read as a truncated PNG rather than as no image at all
    (folder / "corrupt_header.png").write_bytes(b"\x89PNG\r\n\x1a\nGARBAGE" + random.Random(0).randbytes(200))
    (folder / "text.png").write_text("this is not an image\n")
    (folder / "bomb.png").write_bytes(png_header_only(20_000, 20_000))
    (folder / "dir.jpg").mkdir()
    (folder / "notes.txt").write_text("readme")
    (folder / "loop_a.png").symlink_to(folder / "loop_b.png")
    (folder / "loop_b.png").symlink_to(folder / "loop_a.png")
    (folder / "dirloop").mkdir()
    (folder / "dirloop" / "up").symlink_to(folder / "dirloop", target_is_directory=True)
    (folder / "dangling.png").symlink_to(folder / "nowhere.png")
    os.mkfifo(folder / "fifo.png")  # a named pipe: reading it would block forever
    (folder / "device.png").symlink_to("/dev/zero")  # an endless character device
    bad_name = os.fsencode(folder) + b"/latin1_\xe9\xff.png"  # not valid UTF-8
    with open(bad_name, "wb") as f:
        f.write(b"not an image either")
    unreadable = folder / "unreadable.png"
    unreadable.write_bytes(good_png)
    unreadable.chmod(0)
    return {
        "zero.png": "zero-byte",
        "truncated.png": "truncated",
        "truncated.jpg": "truncated",
        "corrupt_header.png": "not an image",
        "text.png": "not an image",
        "bomb.png": "too large",
        "notes.txt": "not an image file name",
        "loop_a.png": "unreadable",
        "loop_b.png": "unreadable",
        "dangling.png": "unreadable",
        "fifo.png": "not a regular file",
        "device.png": "not a regular file",
        "latin1": "not an image",
        "unreadable.png": "unreadable",
    }


def hostile_zip(path: Path, bomb_members: int = 4, bomb_bytes: int = 48 * 2**20) -> Path:
    """A zip with traversal and absolute names, a zip bomb (highly compressible members) and one good image."""
    good = _png_bytes(_rgb(seed=8))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok/good.png", good)
        zf.writestr("../evil.png", good)
        zf.writestr("../../etc/evil2.png", good)
        zf.writestr("/abs/evil3.png", good)
        zf.writestr("a/../../evil4.png", good)
        for i in range(bomb_members):  # each ~48 MiB of zeros, ~50 KiB compressed
            zf.writestr(zipfile.ZipInfo(f"bomb/zeros{i}.png"), b"\0" * bomb_bytes, zipfile.ZIP_DEFLATED)
        zf.writestr("truncated.png", good[:40])
    return path
