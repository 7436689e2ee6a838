"""The in-browser page's static site (web/site.py) without a browser: what it writes, where onnxruntime-web
comes from, and the one-line errors when it cannot be had. No test downloads anything."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from ganime.cli import main
from ganime.errors import ConfigError, MissingDependencyError
from ganime.generate import LoadedGenerator, save_generator
from ganime.latent import PORTABLE, TORCH
from ganime.onnx_runtime import OnnxGenerator, read_sidecar
from ganime.web.site import ORT_BUILDS, ORT_VERSION, find_ort, write_site

pytest.importorskip("onnxruntime")


def real_ort() -> Path:
    try:
        return find_ort("wasm", fetch=False)
    except MissingDependencyError as e:
        pytest.skip(f"needs onnxruntime-web's files: {e}")


@pytest.fixture
def no_cache(monkeypatch, tmp_path):
    """An empty ganime cache and no $GANIME_ORT_DIR: onnxruntime-web is nowhere on this machine."""
    monkeypatch.setenv("GANIME_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GANIME_ORT_DIR", raising=False)


def fake_npm(folder: Path, script: str) -> None:
    npm = folder / "npm"
    npm.write_text("#!/bin/sh\n" + script)
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)


def test_the_site_holds_the_page_the_model_and_onnxruntime_web(generator_file, tmp_path, capsys):
    ort = real_ort()
    out = tmp_path / "site"
    assert main(["export", str(generator_file), "--web", str(out), "--ort-dir", str(ort)]) == 0
    assert f"wrote the browser page to {out}" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["index.html", "app.js", "renderers.js", "latent.js", "gallery.js", "style.css", "generator.onnx",
                            "generator.json", "site.json", *ORT_BUILDS["wasm"]])
    meta = read_sidecar(out / "generator.onnx")
    assert meta["latents"]["scheme"] == PORTABLE and meta["weights"] == "fp16"
    assert json.loads((out / "site.json").read_text()) == {
        "model": "generator.onnx", "sidecar": "generator.json", "ort": "ort.wasm.min.mjs",
        "ort_version": ORT_VERSION, "providers": ["wasm"],
    }
    # the page's module imports stay inside the folder (a static host serves nothing else)
    page = (out / "index.html").read_text()
    assert 'src="app.js"' in page and 'data-backend="onnx"' in page  # the one page, drawing with onnxruntime-web
    # the tiny test generator has no model card and no data recorded: a generic title, no claim of faces
    assert '<h1 id="title">This image does not exist</h1>' in page and "{{" not in page
    assert OnnxGenerator(out / "generator.onnx").from_seeds([123]).shape == (1, 16, 16, 3)


def test_a_generator_saved_before_portable_latents_cannot_go_to_the_browser(gen, tmp_path, no_cache):
    old = LoadedGenerator(gen.G, dataclasses.replace(gen.model, latents=TORCH), "old.safetensors", gen.device, {})
    path = save_generator(old, tmp_path / "old")
    with pytest.raises(ConfigError, match="draws seeds with torch's sampler .* a browser cannot reproduce"):
        write_site(path, tmp_path / "site")
    assert not (tmp_path / "site").exists()


def test_onnxruntime_web_missing_is_one_clear_line(gen, tmp_path, no_cache, monkeypatch, capsys):
    with pytest.raises(MissingDependencyError, match=f"onnxruntime-web {ORT_VERSION} is not in .*GANIME_ORT_DIR"):
        find_ort("wasm", fetch=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm at all
    assert main(["export", str(gen.source), "--web", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the browser page needs onnxruntime-web") and "--ort-dir" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "site").exists()
    # npm present but offline: its last line, and what to do instead
    fake_npm(tmp_path, "echo 'npm error code ENOTFOUND' >&2\nexit 1\n")
    with pytest.raises(MissingDependencyError, match="npm could not fetch onnxruntime-web@.* \\(offline\\?\\): npm error code ENOTFOUND"):
        find_ort("wasm")


def test_fetched_files_are_checked_against_the_pinned_sums(tmp_path, no_cache, monkeypatch):
    # a "tarball" whose files are not onnxruntime-web's: refused, not served
    pkg = tmp_path / "pkg" / "package" / "dist"
    pkg.mkdir(parents=True)
    for name in ORT_BUILDS["wasm"]:
        (pkg / name).write_text("tampered")
    import tarfile

    with tarfile.open(tmp_path / "ort.tgz", "w:gz") as tar:
        tar.add(tmp_path / "pkg" / "package", arcname="package")
    fake_npm(tmp_path, f'while [ "$1" != "--pack-destination" ]; do shift; done; cp {tmp_path}/ort.tgz "$2/"\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(MissingDependencyError, match="unexpected ort.wasm.min.mjs"):
        find_ort("wasm")
    with pytest.raises(ConfigError, match="--ort-dir .* lacks onnxruntime-web .*ort-wasm-simd-threaded.wasm"):
        find_ort("wasm", ort_dir=tmp_path / "pkg")
    with pytest.raises(ConfigError, match="build 'webgl' unknown"):
        find_ort("webgl")


def test_serve_browser_route(client, gen, make_app, monkeypatch, tmp_path):
    from fastapi.testclient import TestClient

    ort = real_ort()
    monkeypatch.setenv("GANIME_ORT_DIR", str(tmp_path / "nothing"))
    r = client.get("/browser", follow_redirects=False)
    assert r.status_code in (307, 308) and r.headers["location"] == "/browser/"
    r = client.get("/browser/")
    assert r.status_code == 503 and "in-browser page is unavailable: $GANIME_ORT_DIR" in r.text
    monkeypatch.setenv("GANIME_ORT_DIR", str(ort))
    with TestClient(make_app()) as fresh:
        r = fresh.get("/browser/")
        assert r.status_code == 200 and 'src="app.js"' in r.text and 'data-backend="onnx"' in r.text
        assert "'wasm-unsafe-eval'" in r.headers["content-security-policy"]
        assert r.headers["cross-origin-embedder-policy"] == "require-corp"
        assert fresh.get("/browser/generator.json").json()["latents"]["scheme"] == PORTABLE
        assert fresh.get("/browser/ort-wasm-simd-threaded.wasm").headers["content-type"] == "application/wasm"
