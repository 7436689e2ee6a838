"""ganime: train GANs on small images on a CPU or GPU, and use them.

Public API (lazy imports keep `import ganime` light):
    train(config, out, resume=False)   -> TrainResult         (ganime.training.loop)
    load_generator(path, device="cpu") -> LoadedGenerator     (ganime.generate)
    evaluate(source, data, metrics, n) -> EvalReport          (ganime.eval_report)
    load_dataset(path, resolution)     -> ImageDataset        (ganime.data.dataset)
    preset(name)                       -> TrainConfig         (ganime.config)
"""

__version__ = "0.1.0"

_API = {
    "train": "ganime.training.loop",
    "TrainResult": "ganime.training.loop",
    "load_generator": "ganime.generate",
    "interpolate": "ganime.generate",
    "make_grid": "ganime.io",
    "evaluate": "ganime.eval_report",
    "load_dataset": "ganime.data.dataset",
    "preset": "ganime.config",
    "override": "ganime.config",
    "TrainConfig": "ganime.config",
    "PRESETS": "ganime.config",
}

__all__ = ["__version__", *_API.keys()]  # noqa: PLE0604 - the lazily imported names


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'ganime' has no attribute {name!r}")
