"""The README and `--help` say what the program does: every help text as written, flags as flags, every flag
the docs use exists, and the README's picture of a run directory is what a run writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import ganime
from conftest import tiny_grow_config, write_images
from ganime.cli import _register, app
from ganime.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def all_commands() -> list[tuple[tuple[str, ...], object]]:
    """(path, command) for the root, every group and every command, e.g. (("data", "fetch"), <fetch>)."""
    _register()
    out, todo = [], [((), typer.main.get_command(app))]
    while todo:
        path, cmd = todo.pop()
        out.append((path, cmd))
        if hasattr(cmd, "commands"):  # a group (typer may vendor click, so not isinstance)
            todo += [((*path, name), sub) for name, sub in cmd.commands.items()]
    return sorted(out, key=lambda pc: pc[0])


COMMANDS = all_commands()


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) or "ganime" for p, _ in COMMANDS])
def test_help_shows_every_text_as_written_and_flags_without_a_value(path, cmd):
    r = CliRunner().invoke(app, [*path, "--help"], terminal_width=100)
    assert r.exit_code == 0, r.output
    shown = flat(r.output)
    texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
    # square brackets in help texts are text ('ganime[kaggle]'), not markup to be eaten
    for bracketed in re.findall(r"\[[^\]]*\]", " ".join(texts)):
        assert flat(bracketed) in shown, f"{' '.join(path)} --help lost {bracketed!r}:\n{r.output}"
    assert "<bool>" not in r.output
    for p in cmd.params:
        if p.param_type_name == "option" and p.is_flag:
            for opt in (*p.opts, *p.secondary_opts):
                # a flag takes no value, so its help line shows none (no `--json <bool>`, no `--json BOOLEAN`)
                assert not re.search(rf"{re.escape(opt)}(?![\w-])\s+(<\w+>|[A-Z][A-Z_]{{2,}}\b)", r.output), r.output


def documented_commands() -> list[tuple[str, int, list[str]]]:
    """(file, line, words after `ganime`) for every ganime command in code in the README and docs/, and in
    the help texts themselves ("Start with: ganime train ...")."""
    out = []
    docs = [(doc.name, doc.read_text()) for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]]
    helps = [(" ".join(["ganime", *path, "--help"]), "```\n" + (cmd.help or "") + "\n```") for path, cmd in COMMANDS]
    for name, text in docs + helps:
        in_block = False
        for i, line in enumerate(text.splitlines(), 1):
            if line.startswith("```"):
                in_block = not in_block
                continue
            spans = [line] if in_block else re.findall(r"`([^`]+)`", line)
            for span in spans:
                for command in re.split(r"&&|\|\||\||;", re.split(r"\s#|\s\s\(", span)[0]):
                    m = re.search(r"(?:^|\s)(?:-m\s+|\.venv/bin/)?ganime\s+(.*)", command)
                    if m and m.group(1).split():
                        out.append((name, i, m.group(1).split()))
    return out


def test_every_flag_the_docs_use_exists():
    commands = {path: cmd for path, cmd in COMMANDS}
    checked = 0
    for doc, line, words in documented_commands():
        path: tuple[str, ...] = ()
        while words and (*path, words[0]) in commands:
            path, words = (*path, words[0]), words[1:]
        if not path:
            continue  # prose such as "ganime trains GANs"
        options = {o for p in commands[path].params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        for word in words:
            flag = word.split("=")[0].strip("`'\",)")
            if flag.startswith("-") and flag not in ("-", "..."):
                assert flag in options, f"{doc}:{line}: `ganime {' '.join(path)}` has no {flag}"
                checked += 1
    assert checked > 50


def readme_run_listing() -> dict[str, str]:
    """The entries of the README's 'A run directory' picture: {name: what it says}, e.g. {'ckpt-<step>/': ...}."""
    text = README.read_text()
    block = re.search(r"## A run directory\s+```\n(.*?)```", text, re.DOTALL)
    assert block, "README.md has no '## A run directory' code block"
    entries = {}
    for line in block.group(1).splitlines()[1:]:
        m = re.match(r"\s+(\S.*?)\s{2,}(.*)", line)
        assert m, f"README run directory line without a description: {line!r}"
        for name in m.group(1).split(", "):
            entries[name] = m.group(2)
    return entries


def pattern(name: str) -> re.Pattern:
    """'ckpt-<step>/' matches 'ckpt-000000006/'."""
    return re.compile(r"\d+".join(re.escape(part) for part in re.split(r"<\w+>", name)) + r"\Z")


def test_readme_run_directory_is_what_a_run_writes(tmp_path, monkeypatch):
    # a run with every optional part: evaluations during training (eval.png, best/), then `ganime video`
    # and `ganime eval`, which also write into the run directory
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "data", 12)
    # the default recipe, which grows (plan.json), in miniature
    cfg = tiny_grow_config(tmp_path / "data", tmp_path / "cache", epochs=2, eval_every=1, eval_n=16)
    run = ganime.train(cfg, out=tmp_path / "run", progress=False).run_dir
    assert cli_main(["video", str(run)]) == 0
    assert cli_main(["eval", str(run), "--n", "16", "--metrics", "swd,nn"]) == 0

    listed = readme_run_listing()
    written = sorted(p.name + "/" * p.is_dir() for p in run.iterdir())
    unlisted = [w for w in written if not any(pattern(name).match(w) for name in listed)]
    assert not unlisted, f"the run wrote {unlisted}, which README.md's run directory does not show"
    missing = [name for name in listed if not any(pattern(name).match(w) for w in written)]
    assert not missing, f"README.md's run directory shows {missing}, which the run did not write: {written}"
    # files the README names inside a directory are there (ckpt-<step>/: model.safetensors ..., samples/ ...)
    for name, what in listed.items():
        if name.endswith("/"):
            folder = next(run / w for w in written if pattern(name).match(w))
            inside = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
            for file in re.findall(r"[\w<>/-]+\.(?:png|json|safetensors|csv|mp4|gif)\b", what):
                assert any(pattern(file).match(f) for f in inside), f"README: {name} holds {file}; it holds {inside}"
