"""The import rules of docs/architecture.md, checked on the source with scripts/architecture.py's parser: every
import counts, inside functions and under TYPE_CHECKING too."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "scripts" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("architecture", module)  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


arch = _load_script()
PKG = arch.parse_package(ROOT / "src")


def test_every_module_sits_on_a_floor_and_no_import_goes_up_or_between_training_and_web():
    for module in PKG.modules:
        arch.group_of(module)  # KeyError names a module missing from LAYERS
    assert arch.floor_breaks(PKG) == []


def test_only_the_train_command_and_the_package_root_import_training():
    assert arch.training_importers(PKG) == []


def test_serving_generating_evaluating_fonts_and_web_reach_nothing_of_training():
    assert arch.training_reachable(PKG) == []


def test_the_torch_free_modules_import_no_torch():
    assert arch.torch_users(PKG) == []
    allowed = {"ganime.io": {"numpy", "PIL"}, "ganime.latent": {"numpy"}, "ganime.onnx_runtime": {"numpy", "onnxruntime"}}
    for module, packages in allowed.items():
        assert {m for m in PKG.external(module) if m not in sys.stdlib_module_names} <= packages, module


def test_no_import_circle_in_the_package():
    assert arch.cycles(PKG.graph()) == []


def test_the_parser_sees_lazy_type_checking_and_relative_imports(tmp_path):
    """A made-up package that breaks each rule only through imports a module-level scan would miss."""
    files = {
        "ganime/__init__.py": "",
        "ganime/io.py": "def save():\n    import torch\n",
        "ganime/training/__init__.py": "",
        "ganime/training/loop.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import guard\n",
        "ganime/training/guard.py": "from ganime.training.loop import Trainer\n",
        "ganime/web/__init__.py": "",
        "ganime/web/app.py": "def route():\n    from ..training import loop\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    pkg = arch.parse_package(tmp_path)
    assert arch.cycles(pkg.graph()) == [["ganime.training.guard", "ganime.training.loop"]]
    assert [i.type_checking for i in pkg.imports if i.source == "ganime.training.loop"] == [False, True]
    assert any("ganime.web.app" in line for line in arch.training_importers(pkg))
    assert any("ganime.web.app" in line for line in arch.training_reachable(pkg))
    assert any("ganime.io" in line for line in arch.torch_users(pkg))


def test_the_picture_is_drawn(tmp_path):
    out = arch.draw(PKG, tmp_path / "architecture.png")
    assert out.stat().st_size > 50_000
