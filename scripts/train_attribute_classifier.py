"""Train the faces attribute classifier shipped as src/ganime/assets/faces-attributes.safetensors (+ .json).

    python scripts/train_attribute_classifier.py            # ~3 CPU-minutes on one thread, seed 0

A fixed, seeded split holds out 2,000 of the shipped faces; the sidecar records the held-out accuracy per
attribute, the command, the time and the data set's sha256. One thread, fixed seeds: the same torch build
and CPU give the same weights.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganime.data.dataset import shipped_dataset_path
from ganime.data.dicebear import load
from ganime.metrics.attribute_net import AttributeClassifier, AttributeNet, predict, save_classifier, to_input

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "src" / "ganime" / "assets" / "faces-attributes.safetensors"
HELD_OUT = 2000


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices of a seeded permutation."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[HELD_OUT:]), np.sort(perm[:HELD_OUT])


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mild robustness to generator output: +-2 px shifts (white fill), pixel noise up to 6 % of the range."""
    n = len(x)
    shifts = torch.randint(-2, 3, (n, 2), generator=gen)
    padded = F.pad(x, (2, 2, 2, 2), value=1.0)
    out = torch.stack([padded[i, :, 2 + dy : 66 + dy, 2 + dx : 66 + dx] for i, (dy, dx) in enumerate(shifts.tolist())])
    sigma = torch.rand(n, 1, 1, 1, generator=gen) * 0.06
    return (out + sigma * torch.randn(out.shape, generator=gen)).clamp_(0.0, 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--width", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    data_path = shipped_dataset_path("faces")
    faces = load(data_path)
    train_idx, test_idx = split(len(faces), args.seed)
    net = AttributeNet([len(v) for v in faces.values], args.width)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * (len(train_idx) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(args.seed)
    labels = torch.from_numpy(faces.attributes.astype(np.int64))
    start = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        order = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
        total = 0.0
        for b in range(len(train_idx) // args.batch_size):
            idx = order[b * args.batch_size : (b + 1) * args.batch_size]
            x = augment(to_input(faces.images[idx]), gen)
            _, logits = net(x)
            loss = sum(F.cross_entropy(lg, labels[idx, k]) for k, lg in enumerate(logits))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        print(f"epoch {epoch + 1}: loss {total / (b + 1):.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    seconds = time.perf_counter() - start
    net.eval()
    clf = AttributeClassifier(net, faces.names, faces.values, {})
    _, pred = predict(clf, faces.images[test_idx])
    acc = (pred == faces.attributes[test_idx]).mean(axis=0)
    accuracy = {n: round(float(a), 4) for n, a in zip(faces.names, acc)}
    for n, a in accuracy.items():
        print(f"{n:10s} {a:.4f}")
    info = {
        "held_out_accuracy": accuracy,
        "held_out_all_correct": round(float((pred == faces.attributes[test_idx]).all(axis=1).mean()), 4),
        "n_train": len(train_idx),
        "n_held_out": len(test_idx),
        "split": f"np.random.default_rng({args.seed}).permutation(N)[:{HELD_OUT}] held out",
        "data": data_path.name,
        "data_sha256": hashlib.sha256(data_path.read_bytes()).hexdigest(),
        "command": "python scripts/train_attribute_classifier.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "train_seconds": round(seconds, 1),
        "machine": f"{platform.processor() or platform.machine()}, 1 thread, torch {torch.__version__}",
    }
    save_classifier(net, faces.names, faces.values, info, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
