"""The package's import graph, read from the source with `ast`: the layers picture and the import rules.

    python scripts/architecture.py            # prints the violations, writes docs/images/architecture.png
    python scripts/architecture.py --no-draw  # only the check (exit status 1 when a rule is broken)

Every import counts: at module level, inside functions (lazy imports) and under `if TYPE_CHECKING:`, because a
reader (and a refactoring) has to follow them all. tests/test_architecture.py imports this file for the same
parsing. docs/architecture.md explains the layers and the rules.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PICTURE = REPO / "docs" / "images" / "architecture.png"

# Floors, lowest first: a module imports only from its own floor or lower ones. Each floor holds groups (a
# subpackage, or a few top-level modules that do one job); on the "apps" floor the groups must not import each
# other. A module's group is the first whose prefix matches its dotted name (after "ganime.").
LAYERS: list[tuple[str, list[tuple[str, list[str]]]]] = [
    ("base", [("base", ["", "errors", "config", "io", "latent", "device", "jit", "runlock"])]),
    ("parts", [("data/", ["data"]), ("models/", ["models"]), ("checkpoint", ["checkpoint"]),
               ("losses + augment", ["losses", "augment"])]),
    ("use", [("fonts/", ["fonts"]), ("export + onnx_runtime", ["export", "onnx_runtime"]),
             ("generate", ["generate", "directions", "direction_fit", "invert"]),
             ("eval_report", ["eval_report"]), ("metrics/", ["metrics"])]),
    ("apps", [("web/", ["web"]), ("training/", ["training"])]),
    ("cli", [("cli/", ["cli", "__main__"])]),
]
# modules that must not import torch, directly or through other ganime modules (parents included)
TORCH_FREE = ("ganime.onnx_runtime", "ganime.io", "ganime.latent")
# what serves, generates, evaluates or makes fonts: nothing of training may be reachable from them
NO_TRAINING = ("ganime.generate", "ganime.eval_report", "ganime.export", "ganime.onnx_runtime", "ganime.metrics",
               "ganime.fonts", "ganime.web", "ganime.cli")
TRAINING_IMPORTERS = ("ganime", "ganime.cli.train")  # the package root's lazy API and `ganime train`


@dataclass(frozen=True)
class Import:
    """One import statement's target, as found in `source`."""

    source: str  # dotted module name, e.g. ganime.web.app
    target: str  # a ganime module, or the top-level name of another package (torch, numpy)
    line: int
    lazy: bool = False  # inside a function
    type_checking: bool = False  # under `if TYPE_CHECKING:`


@dataclass
class Package:
    """Modules (dotted name -> file) and every import between them or out to other packages."""

    modules: dict[str, Path]
    imports: list[Import] = field(default_factory=list)

    def internal(self) -> list[Import]:
        return [i for i in self.imports if i.target in self.modules and i.target != i.source]

    def graph(self) -> dict[str, set[str]]:
        """module -> the ganime modules it names in an import."""
        out: dict[str, set[str]] = {m: set() for m in self.modules}
        for i in self.internal():
            out[i.source].add(i.target)
        return out

    def external(self, module: str) -> set[str]:
        return {i.target for i in self.imports if i.source == module and i.target not in self.modules}

    def reachable(self, module: str) -> set[str]:
        """The ganime modules that importing `module` may run: its imports, their imports, and every parent
        package on the way (importing ganime.web.app runs ganime/web/__init__.py first)."""
        graph, seen, todo = self.graph(), set(), [module]
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            todo += graph[m] | {p for p in _parents(m) if p in self.modules}
        return seen


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from .x import y
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        # `from ganime.web import gallery` imports the module ganime.web.gallery; `from ganime.io import
        # save_png` imports ganime.io
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    out = []
    for name in names:
        if name.split(".")[0] != "ganime":
            out.append(name.split(".")[0])
            continue
        while name not in modules and "." in name:  # ganime.checkpoint.save_tensors -> ganime.checkpoint
            name = name.rsplit(".", 1)[0]
        out.append(name)
    return out


def parse_module(path: Path, module: str, modules: dict[str, Path]) -> list[Import]:
    """Every import in one file, with where it sits (module level, a function, TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[Import] = []
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, lazy: bool, type_checking: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in _targets(node, module, is_package, modules):
                found.append(Import(module, target, node.lineno, lazy, type_checking))
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, lazy, True)
            for child in node.orelse:
                visit(child, lazy, type_checking)
            return
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner, type_checking)

    visit(tree, False, False)
    return found


def parse_package(src: Path = SRC, package: str = "ganime") -> Package:
    """All modules under src/<package> and their imports."""
    modules = {module_name(p, src): p for p in sorted((src / package).rglob("*.py"))}
    pkg = Package(modules)
    for name, path in modules.items():
        pkg.imports += parse_module(path, name, modules)
    return pkg


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan): each holds at least one import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(found)


def group_of(module: str) -> tuple[int, str]:
    """(floor index, group name) of a module by LAYERS."""
    rel = module.removeprefix("ganime").removeprefix(".")
    for floor, (_, groups) in enumerate(LAYERS):
        for name, prefixes in groups:
            for prefix in prefixes:
                if rel == prefix or (prefix and rel.startswith(prefix + ".")):
                    return floor, name
    raise KeyError(f"{module} is in no group of LAYERS: add it to scripts/architecture.py")


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def floor_breaks(pkg: Package) -> list[str]:
    """Imports that go up a floor, or sideways between training/ and web/."""
    out = []
    for i in pkg.internal():
        (src_floor, src_group), (dst_floor, dst_group) = group_of(i.source), group_of(i.target)
        where = f"{i.source}:{i.line} imports {i.target}"
        if dst_floor > src_floor:
            out.append(f"upward: {where} ({LAYERS[src_floor][0]} -> {LAYERS[dst_floor][0]})")
        elif dst_floor == src_floor and LAYERS[src_floor][0] == "apps" and src_group != dst_group:
            out.append(f"sideways: {where} ({src_group} -> {dst_group})")
    return out


def training_importers(pkg: Package) -> list[str]:
    """Modules outside training/ that import it, other than the CLI's train command and the package root."""
    return [
        f"training: {i.source}:{i.line} imports {i.target} (only cli/train.py and the package root may)"
        for i in pkg.internal()
        if _under(i.target, ("ganime.training",)) and not _under(i.source, ("ganime.training",))
        and i.source not in TRAINING_IMPORTERS
    ]


def training_reachable(pkg: Package) -> list[str]:
    """Serving, generating, evaluating, font and CLI modules (but `ganime train`) from which training/ is reached."""
    out = []
    for module in sorted(pkg.modules):
        if _under(module, NO_TRAINING) and module not in TRAINING_IMPORTERS:
            bad = sorted(m for m in pkg.reachable(module) if _under(m, ("ganime.training",)))
            if bad:
                out.append(f"training reachable: {module} -> {', '.join(bad)}")
    return out


def torch_users(pkg: Package) -> list[str]:
    """TORCH_FREE modules from which an import of torch is reached."""
    out = []
    for module in (m for m in TORCH_FREE if m in pkg.modules):
        heavy = sorted(m for m in pkg.reachable(module) if "torch" in pkg.external(m))
        if heavy:
            out.append(f"torch: importing {module} imports torch through {', '.join(heavy)}")
    return out


def violations(pkg: Package) -> list[str]:
    """Every broken rule, one line each (empty when the package keeps them all)."""
    circles = [f"cycle: {' <-> '.join(m.removeprefix('ganime.') for m in c)}" for c in cycles(pkg.graph())]
    return floor_breaks(pkg) + training_importers(pkg) + training_reachable(pkg) + torch_users(pkg) + circles


def _label(module: str, group: str, is_package: bool) -> str:
    """A module as a file name, relative to its group's folder (training/loop.py -> loop.py)."""
    rel = module.removeprefix("ganime").removeprefix(".").replace(".", "/")
    path = f"{rel}/__init__.py".lstrip("/") if is_package else f"{rel}.py"
    if group.endswith("/"):
        return path.removeprefix(group) if path.startswith(group) else "../" + path
    return path


FLOOR_COLOURS = ["#eef2f7", "#e8f4ea", "#fdf3e1", "#f7e9f1", "#e9eefb"]  # box fill, by floor
ARROW_COLOURS = ["#777777", "#3f7f4f", "#c07a1a", "#9b3f7a", "#2f5d9a"]  # by the importing floor
MONO_W, TITLE_W, LINE_H = 0.125, 0.17, 0.36  # character widths and line height in figure units (0.6 inch)


def _boxes(members: dict[str, list[str]], labels: dict[str, str], fig_w: float, left: float):
    """group -> (x, y, w, h) and group -> (columns, column width): floors stacked upwards, each group as wide
    as its text, the spare width spread between the groups of a floor (corridors for the arrows)."""
    boxes, columns = {}, {}
    y = 0.0
    for _, groups in LAYERS:
        need = {}
        for name, _ in groups:
            cols = 2 if len(members[name]) > 4 else 1
            col_w = max(len(labels[m]) for m in members[name]) * MONO_W + 0.4
            need[name] = (cols, col_w, max(cols * col_w, len(name) * TITLE_W) + 0.35)
        h = max(1 + -(-len(members[g]) // need[g][0]) for g, _ in groups) * LINE_H + 0.35
        usable = fig_w - left - 0.9  # a corridor on the right for arrows, as the labels' column on the left
        natural = sum(n[2] for n in need.values())
        scale = usable / natural if len(groups) == 1 else 1.0
        gap = (usable - natural * scale) / (len(groups) - 1) if len(groups) > 1 else 0.0
        x = left
        for name, _ in groups:
            cols, col_w, w = need[name]
            boxes[name] = (x, y, w * scale, h)
            columns[name] = (cols, max(col_w, (w * scale - 0.3) / cols))
            x += w * scale + gap
        y += h + 1.8
    return boxes, columns


def _route(src: tuple, dst: tuple, floors: list[list[tuple]], used: dict, width: float) -> list[tuple[float, float]]:
    """Points of an arrow from box `src` down to box `dst` that passes the floors between them in the gaps
    between their boxes (several arrows in one gap side by side)."""
    (xa, ya, wa, _), (xb, yb, wb, hb) = src, dst
    points = []
    target = xb + wb / 2
    here = min(max(target, xa + 0.1 * wa), xa + 0.9 * wa)
    for floor in floors:  # from the floor under src down to the one above dst
        boxes = sorted(floor)
        top, bottom = boxes[0][1] + boxes[0][3], boxes[0][1]
        edges = [0.3] + [v for b in boxes for v in (b[0], b[0] + b[2])] + [width - 0.1]
        gaps = [(edges[i], edges[i + 1]) for i in range(0, len(edges), 2) if edges[i + 1] - edges[i] > 0.3]
        lo, hi = min(gaps, key=lambda g: abs(min(max((here + target) / 2, g[0]), g[1]) - (here + target) / 2))
        k = used.get((top, lo), 0)
        used[(top, lo)] = k + 1
        centre = min(max((here + target) / 2, lo + 0.25), hi - 0.25)
        x = min(max(centre + (k % 5 - 2) * 0.16, lo + 0.1), hi - 0.1)
        if not points:
            here = min(max(x, xa + 0.1 * wa), xa + 0.9 * wa)
            points.append((here, ya))
        points += [(x, top + 0.25), (x, bottom - 0.25)]
        here = x
    if not points:
        points.append((min(max(target, xa + 0.1 * wa), xa + 0.9 * wa), ya))
        here = points[0][0]
    points.append((min(max(here, xb + 0.1 * wb), xb + 0.9 * wb), yb + hb))
    return points


def draw(pkg: Package, out: Path = PICTURE) -> Path:
    """The floors as rows of group boxes listing their modules; an arrow per pair of groups that import (width
    by the number of module pairs, colour by the importing floor), drawn through the gaps between boxes;
    arrows into `base` left out (every floor uses it); the modules of an import circle in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path as MplPath

    members: dict[str, list[str]] = defaultdict(list)
    for module in sorted(pkg.modules):
        members[group_of(module)[1]].append(module)
    labels = {m: _label(m, group_of(m)[1], pkg.modules[m].name == "__init__.py") for m in pkg.modules}
    circle = {m for c in cycles(pkg.graph()) for m in c}
    fig_w, left = 25.0, 1.7
    boxes, columns = _boxes(members, labels, fig_w, left)
    fig_h = max(y + h for _, y, _, h in boxes.values()) + 1.2
    fig = plt.figure(figsize=(fig_w * 0.6, (fig_h + 0.8) * 0.6))
    ax = fig.add_axes((0, 0, 1, 1))  # one figure unit = 0.6 inch, as MONO_W and TITLE_W assume
    ax.set_xlim(0, fig_w)
    ax.set_ylim(-0.8, fig_h)
    ax.axis("off")
    for floor, (label, groups) in enumerate(LAYERS):
        _, y0, _, h = boxes[groups[0][0]]
        ax.text(0.15, y0 + h / 2, label, fontsize=14, fontweight="bold", va="center", ha="left", color="#333")
        for name, _ in groups:
            x, y, w, h = boxes[name]
            red = any(m in circle for m in members[name])
            ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.15", zorder=2,
                                        fc=FLOOR_COLOURS[floor], ec="#c0392b" if red else "#555555",
                                        lw=2.4 if red else 1.2))
            ax.text(x + 0.15, y + h - 0.3, name, fontsize=12, fontweight="bold", va="center", zorder=3)
            cols, col_w = columns[name]
            rows = -(-len(members[name]) // cols)
            for k, module in enumerate(members[name]):
                c, r = divmod(k, rows)  # down the first column, then the next
                ax.text(x + 0.2 + c * col_w, y + h - 0.72 - r * LINE_H, labels[module], fontsize=9, zorder=3,
                        va="center", family="monospace", color="#c0392b" if module in circle else "#222222",
                        fontweight="bold" if module in circle else "normal")
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for a, targets in pkg.graph().items():
        for b in targets:
            ga, gb = group_of(a)[1], group_of(b)[1]
            if ga != gb and gb != "base":
                counts[(ga, gb)] += 1
    floor_of = {name: f for f, (_, groups) in enumerate(LAYERS) for name, _ in groups}
    floors = [[boxes[name] for name, _ in groups] for _, groups in LAYERS]
    used: dict = {}
    for (ga, gb), n in sorted(counts.items(), key=lambda kv: (-floor_of[kv[0][0]], kv[0])):
        fa, fb = floor_of[ga], floor_of[gb]
        style = {"arrowstyle": "-|>", "mutation_scale": 15, "lw": 0.7 + 0.4 * min(n, 8), "alpha": 0.85,
                 "color": ARROW_COLOURS[fa], "shrinkA": 1, "shrinkB": 1, "zorder": 1}
        xa, ya, wa, ha = boxes[ga]
        xb, yb, wb, hb = boxes[gb]
        if fa == fb:
            row = [name for name, _ in LAYERS[fa][1]]
            if abs(row.index(ga) - row.index(gb)) == 1:  # neighbours: side to side
                y = ya + ha * 0.55
                ends = ((xa, y), (xb + wb, y)) if xb < xa else ((xa + wa, y), (xb, y))
                ax.add_patch(FancyArrowPatch(*ends, **style))
            else:  # a low arc above the boxes between them
                rad = (-1.0 if xa < xb else 1.0) * 1.6 / max(1.0, abs(xb - xa))
                ax.add_patch(FancyArrowPatch((xa + wa * 0.5, ya + ha), (xb + wb * 0.5, yb + hb),
                                             connectionstyle=f"arc3,rad={rad}", **style))
            continue
        points = _route(boxes[ga], boxes[gb], floors[fb + 1 : fa][::-1], used, fig_w)
        codes = [MplPath.MOVETO] + [MplPath.LINETO] * (len(points) - 1)
        ax.add_patch(FancyArrowPatch(path=MplPath(points, codes), **style))
    ax.text(left, fig_h - 0.45, "ganime's floors, lowest at the bottom: a module imports from its own floor or "
            "lower ones; training/ and web/ never import each other.\nArrows: imports between groups (thicker = "
            "more modules, colour = the importing floor); every floor imports base (not drawn).", fontsize=11.5,
            ha="left", va="center")
    if circle:
        ax.text(left, -0.45, "red: an import circle (" + " <-> ".join(sorted(m.removeprefix("ganime.")
                for m in circle)) + ")", color="#c0392b", fontsize=11, ha="left", va="center")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-draw", action="store_true", help="only check the rules")
    ap.add_argument("--out", type=Path, default=PICTURE)
    args = ap.parse_args(argv)
    pkg = parse_package()
    if not args.no_draw:
        print(f"wrote {draw(pkg, args.out)}")
    problems = violations(pkg)
    pairs = sum(len(targets) for targets in pkg.graph().values())
    print(f"{len(pkg.modules)} modules, {pairs} importing pairs; {len(problems)} violation(s)")
    for line in problems:
        print(f"  {line}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
