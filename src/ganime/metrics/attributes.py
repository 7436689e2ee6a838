"""Attribute coverage of generated faces (`attrs`): what the shipped classifier sees in them vs in real faces.

Like StackedMNIST's mode count: the classifier names each image's hair style, hair colour, skin colour, eyes,
... (`ganime.metrics.attribute_net`), and the metric counts how many values and hair x hairColor x skinColor
combinations the generator draws, how far its attribute histograms are from the real ones, and a Frechet
distance in the classifier's 128-d feature space (`fcd`). Every number comes with
its real-vs-real floor: a held-back half of the real images scored the same way, at the same count.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ganime.errors import DataError
from ganime.metrics.attribute_net import RESOLUTION, AttributeClassifier, load_classifier, predict
from ganime.metrics.fid import frechet_distance_features
from ganime.metrics.registry import MetricContext, MetricResult, register_metric

log = logging.getLogger(__name__)

COMBO = ("hair", "hairColor", "skinColor")  # what a person sees first; 45 x 14 x 4 = 2,520 combinations
ATTRS_LABEL = "faces-attributes-cnn (penultimate 128-d)"


def value_counts(pred: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Per attribute, how many images were given each value."""
    return [np.bincount(pred[:, k], minlength=n) for k, n in enumerate(sizes)]


def total_variation(p_counts: list[np.ndarray], q_counts: list[np.ndarray]) -> float:
    """Total variation distance between two sets' value histograms, averaged over the attributes (0..1)."""
    tvs = [0.5 * np.abs(p / p.sum() - q / q.sum()).sum() for p, q in zip(p_counts, q_counts)]
    return float(np.mean(tvs))


def combinations(pred: np.ndarray, columns: list[int]) -> int:
    """How many distinct value combinations of the given attributes occur."""
    return len(np.unique(pred[:, columns], axis=0))


def coverage(
    clf: AttributeClassifier, reference: np.ndarray, probes: dict[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """Every coverage number of each probe set (e.g. "fake", "real") against the reference images."""
    sizes = [len(v) for v in clf.values]
    columns = [clf.names.index(n) for n in COMBO]
    ref_feats, ref_pred = predict(clf, reference)
    ref_counts = value_counts(ref_pred, sizes)
    out = {}
    for name, images in probes.items():
        feats, pred = predict(clf, images)
        counts = value_counts(pred, sizes)
        out[name] = {
            "values": float(sum(int((c > 0).sum()) for c in counts)),
            "combos": float(combinations(pred, columns)),
            "tv": total_variation(counts, ref_counts),
            "fcd": frechet_distance_features(ref_feats, feats),
            **{f"count_{n}": float((c > 0).sum()) for n, c in zip(clf.names, counts)},
        }
    return out


def check_faces_images(images: np.ndarray) -> None:
    """The classifier reads 64 px faces: smaller images are refused (upscaling would blur away the options)."""
    if min(images.shape[1:3]) < RESOLUTION:
        raise DataError(f"attrs needs the faces set at {RESOLUTION} px or more; these images are {images.shape[1]} px")


def check_faces_source(source: Path, resolution: int) -> None:
    """Refuse, in one line, data that is not a DiceBear faces set with the classifier's labels, or too small."""
    clf_names = load_classifier().names
    try:
        with np.load(source, allow_pickle=False) as z:
            names = tuple(str(n) for n in z["attribute_names"]) if "attribute_names" in z else ()
    except (OSError, ValueError):  # a folder or an archive of images: no labels, so not the faces set
        names = ()
    if names != clf_names:
        raise DataError(f"attrs works only on the DiceBear faces set (--data faces); {source} is not one")
    if resolution < RESOLUTION:
        raise DataError(f"attrs needs a generator of {RESOLUTION} px or more; this one makes {resolution} px images")


@register_metric("attrs")
def _attrs_metric(ctx: MetricContext) -> MetricResult:
    """Attribute coverage of the fakes and of a held-back real half, both against the other real half."""
    check_faces_images(ctx.real)
    halves = ctx.halves()
    if len(halves.reference) <= 3 or len(halves.fake) <= 3:
        raise DataError("attrs needs at least 8 real and 4 generated images")
    clf = load_classifier()
    got = coverage(clf, ctx.real[halves.reference], {"fake": ctx.fake[halves.fake], "real": ctx.real[halves.real]})
    result: MetricResult = {}
    for key in ("values", "combos", "tv"):
        result[f"attrs_{key}"] = got["fake"][key]
        result[f"attrs_{key}_real"] = got["real"][key]
    result["fcd"] = got["fake"]["fcd"]
    result["fcd_real"] = got["real"]["fcd"]
    for name in clf.names:
        result[f"attrs_count_{name}"] = got["fake"][f"count_{name}"]
    result["attrs_n"] = float(len(halves.fake))
    result["attrs_features"] = ATTRS_LABEL
    return result
