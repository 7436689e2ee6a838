"""The shipped cartoon-face data set: DiceBear "adventurer" faces with the options that drew each one.

`scripts/faces/render.mjs` (Node.js, pinned DiceBear + resvg) writes raw RGBA pixels and one record of
options per face; this module composites them on white, checks them and packs them into the `.npz` that
ganime ships. The options are attribute labels (hair style, hair colour, skin colour, eyes, eyebrows, mouth,
glasses, earrings, features) for the coverage metrics of `ganime.metrics.attributes`.

npz layout: `images` uint8 (N, H, W, 3); `attribute_names` unicode (K,); `attribute_values` unicode (K, V),
each row the values of one attribute padded with ""; `attributes` uint8 (N, K), indices into those rows;
`index` int32 (N,), the face's index in the renderer's stream (face i is the same whatever the count).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganime.data.builders_io import composite_white, npz_bytes
from ganime.errors import DataError, MissingDependencyError
from ganime.io import atomic_write_bytes

STYLE = "adventurer"
# what each face is drawn from; the renderer and the metrics both read this order
ATTRIBUTES = ("hair", "hairColor", "skinColor", "eyes", "eyebrows", "mouth", "glasses", "earrings", "features")


@dataclass(frozen=True)
class FaceSet:
    """Faces composited on white, with their attribute codes."""

    images: np.ndarray  # uint8 (N, H, W, 3)
    attributes: np.ndarray  # uint8 (N, K) indices into values[k]
    names: tuple[str, ...]  # K attribute names
    values: tuple[tuple[str, ...], ...]  # K lists of values
    index: np.ndarray  # int32 (N,) renderer index of each face

    def __len__(self) -> int:
        return len(self.images)

    def labels(self, i: int) -> dict[str, str]:
        """The options face i was drawn with."""
        return {n: self.values[k][self.attributes[i, k]] for k, n in enumerate(self.names)}


def encode_labels(records: list[dict[str, str]], names: tuple[str, ...]) -> tuple[np.ndarray, tuple]:
    """Attribute records -> (uint8 codes (N, K), per-attribute sorted value lists)."""
    values = tuple(tuple(sorted({r[n] for r in records})) for n in names)
    if any(len(v) > 255 for v in values):
        raise DataError("an attribute has more than 255 values; codes are uint8")
    lookup = [{v: i for i, v in enumerate(vs)} for vs in values]
    codes = np.array([[lookup[k][r[n]] for k, n in enumerate(names)] for r in records], np.uint8)
    return codes.reshape(len(records), len(names)), values


def check_faces(images: np.ndarray, records: list[dict[str, str]], size: int) -> list[str]:
    """What is wrong with a rendered set (empty list = fine): shape, blank faces, labels."""
    problems = []
    if images.dtype != np.uint8 or images.shape[1:] != (size, size, 3):
        problems.append(f"images are {images.dtype} {images.shape}, expected uint8 (N, {size}, {size}, 3)")
        return problems
    if len(records) != len(images):
        problems.append(f"{len(images)} images but {len(records)} label records")
    ink = (images < 250).any(axis=-1).mean(axis=(1, 2))  # share of non-white pixels
    blank = np.flatnonzero(ink < 0.05)
    if len(blank):
        problems.append(f"{len(blank)} faces are (almost) blank, e.g. #{int(blank[0])}")
    for i, r in enumerate(records):
        missing = [n for n in ATTRIBUTES if not isinstance(r.get(n), str) or not r.get(n)]
        if missing:
            problems.append(f"face #{i} has no {', '.join(missing)}")
            break
    return problems


def drop_duplicates(images: np.ndarray) -> np.ndarray:
    """Indices of the first of each distinct image, in order (different options can draw the same pixels)."""
    flat = images.reshape(len(images), -1)
    _, first = np.unique(flat, axis=0, return_index=True)
    return np.sort(first)


def render(count: int, size: int, renderer_dir: Path, first: int = 0, style: str = STYLE) -> FaceSet:
    """Run the Node.js renderer for faces first..first+count-1 and return them checked and de-duplicated.

    `style` names any DiceBear style (kebab- or camelCase); styles other than "adventurer" come without labels
    (a FaceSet with no attributes): they are test sets for recipes tuned on the shipped faces."""
    node = shutil.which("node")
    if node is None:
        raise MissingDependencyError("node is not installed; it is needed only to rebuild the faces set")
    if not (renderer_dir / "node_modules" / "@dicebear" / "core").is_dir():
        raise MissingDependencyError(f"run `npm ci` in {renderer_dir} first (pinned DiceBear and resvg)")
    with tempfile.TemporaryDirectory(prefix="ganime-faces-") as tmp:
        prefix = os.path.join(tmp, "faces")
        subprocess.run(
            [node, "render.mjs", str(count), str(size), prefix, str(first), style], cwd=renderer_dir, check=True
        )
        rgba = np.fromfile(prefix + ".rgba", np.uint8)
        meta = json.loads(Path(prefix + ".json").read_text())
    if rgba.size != count * size * size * 4:
        raise DataError(f"renderer wrote {rgba.size} bytes, expected {count} faces of {size}x{size} RGBA")
    images = composite_white(rgba.reshape(count, size, size, 4))
    labelled = style == STYLE
    records = meta["labels"] if labelled else [dict.fromkeys(ATTRIBUTES, "-") for _ in range(count)]
    problems = check_faces(images, records, size)
    if problems:
        raise DataError("faces set failed its checks: " + "; ".join(problems))
    keep = drop_duplicates(images)
    if not labelled:
        return FaceSet(images[keep], np.zeros((len(keep), 0), np.uint8), (), (), (first + keep).astype(np.int32))
    records = [records[i] for i in keep]
    codes, values = encode_labels(records, ATTRIBUTES)
    return FaceSet(images[keep], codes, ATTRIBUTES, values, (first + keep).astype(np.int32))


def save(faces: FaceSet, path: str | Path) -> Path:
    """Write the set as a byte-reproducible `.npz` (atomically)."""
    width = max((len(v) for v in faces.values), default=0)
    table = np.array([list(v) + [""] * (width - len(v)) for v in faces.values], dtype=str)
    arrays = {
        "images": faces.images,
        "attribute_names": np.array(faces.names, dtype=str),
        "attribute_values": table.reshape(len(faces.values), width),
        "attributes": faces.attributes,
        "index": faces.index,
    }
    path = Path(path)
    atomic_write_bytes(path, npz_bytes(arrays, compresslevel=9))
    return path


def load(path: str | Path) -> FaceSet:
    """Read a faces `.npz` with its attributes (for metrics and tests)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "attributes" not in z:
                raise DataError(f"{path} has no attribute labels; it is not a ganime faces set")
            names = tuple(str(n) for n in z["attribute_names"])
            values = tuple(tuple(str(v) for v in row if str(v)) for row in z["attribute_values"])
            return FaceSet(z["images"], z["attributes"], names, values, z["index"])
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"cannot read faces set {path}: {e}") from None
