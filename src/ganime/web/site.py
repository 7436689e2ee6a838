"""The one page (web/static) for each back end, and the in-browser site: faces drawn in the visitor's browser
by onnxruntime-web, no server code.

    ganime export RUN --web site/      # the page (index.html, *.js, style.css), generator.onnx + .json, onnxruntime-web

`ganime serve` (page.py), `ganime publish` (publish.py) and this site ship the same page; `fill_page` tells it
its back end: the server's API, onnxruntime-web, or pre-rendered files. The generator's directions reach the
browser in the ONNX sidecar, so sliders move the face live.

The generator is exported with `export_onnx(weights="auto")` (fp16 weights where its images stay within 1/255
of torch's). Seeds become latents with `latent.js`, the JavaScript twin of ganime.latent.portable_latents, so
seed S shows the face `ganime generate --seed S` draws; only generators with the PORTABLE latent scheme can
be drawn (torch's sampler of older ones exists only in torch).

onnxruntime-web is not in ganime's repository or wheel (its WebAssembly file alone is 14.8 MB, its WebGPU
build 28.7 MB): it is fetched once with `npm pack onnxruntime-web@ORT_VERSION` into the cache directory,
checked against the SHA-256 sums pinned below, or taken from --ort-dir (a node_modules/onnxruntime-web, its
dist/ folder or an unpacked tarball) for machines without npm or network.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path

from ganime.errors import ConfigError, GanimeError, MissingDependencyError
from ganime.io import atomic_path
from ganime.onnx_runtime import file_sha256

log = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "static"  # the one page: served (/), in the browser (here) and published
PAGE_FILES = ("index.html", "app.js", "renderers.js", "latent.js", "gallery.js", "style.css")
# A static host sends no headers of ours: the published site's policy travels in the page (frame-ancestors
# needs a header, so it cannot)
FILES_POLICY = (
    '<meta http-equiv="Content-Security-Policy" content="default-src \'self\'; img-src \'self\' data:; '
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'\">\n  <meta name=\"referrer\" content=\"no-referrer\">"
)
ORT_PACKAGE, ORT_VERSION = "onnxruntime-web", "1.31.1"
# The files a build needs from the package's dist/, with their SHA-256 (of onnxruntime-web 1.31.1 from npm).
ORT_BUILDS = {
    "wasm": {  # WebAssembly (SIMD, threads where the page is cross-origin isolated): 14.9 MB
        "ort.wasm.min.mjs": "c21d9c326d453a4a61398270c804d5979e118540597cb0c07f7b3d64e6098234",
        "ort-wasm-simd-threaded.mjs": "30ed0b5cd1182ede931fea448afb567d4dc705ec957af09f108a2be5f770dac3",
        "ort-wasm-simd-threaded.wasm": "4b884c203b0fa48d057be3332c65513ff85aa3c5bddd6946acc0fab7ecda001d",
    },
    "webgpu": {  # WebGPU where the browser has it, else the same WebAssembly kernels: 28.9 MB
        "ort.webgpu.min.mjs": "329cd956772397a1aedd668e911195d39afefb182f6fc14aafa4f08ac8d8f379",
        "ort-wasm-simd-threaded.asyncify.mjs": "59cf781530e1a16df2a291d78798e3ec1152467edaec402d6f9599d85047c302",
        "ort-wasm-simd-threaded.asyncify.wasm": "ca319e9539cd0f1e291cf56074760121eaf39650f5dbf84b6e52c07f4b2944ec",
    },
}
ORT_ENV = "GANIME_ORT_DIR"  # where `ganime serve` (and --web without --ort-dir) look first
MODEL_FILE = "generator.onnx"  # its sidecar: generator.json
SITE_FILE = "site.json"  # what the page loads: model, sidecar, onnxruntime-web module, backends to try
# What a server must send with the page: onnxruntime-web compiles WebAssembly ('wasm-unsafe-eval'), and runs
# threads only in a cross-origin isolated page (the two Cross-Origin headers); a static host may omit them.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; "
    "style-src 'self'; img-src 'self' data: blob:; worker-src 'self' blob:; frame-ancestors 'none'",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}


def fill_page(html: str, backend: str, assets: str = "") -> str:
    """The page template (title and subtitle already in, web/meta.render_page) for one back end: "server" (the
    API; assets under /static/), "onnx" (onnxruntime-web in the visitor's browser) or "files" (ganime publish)."""
    policy = FILES_POLICY if backend == "files" else ""
    return html.replace("{{backend}}", backend).replace("{{assets}}", assets).replace("{{policy}}", policy)


def page_for(gen, backend: str, assets: str = "") -> str:
    """The whole page for a generator and a back end."""
    from ganime.web.meta import page_text, render_page

    title, subtitle = page_text(gen)
    return fill_page(render_page((PAGE / "index.html").read_text(encoding="utf-8"), title, subtitle), backend, assets)


def ort_cache_dir() -> Path:
    """Where fetched onnxruntime-web files are kept: $GANIME_CACHE (else ~/.cache/ganime)/onnxruntime-web-VERSION."""
    from ganime.data.dataset import cache_root

    return cache_root() / f"{ORT_PACKAGE}-{ORT_VERSION}"


def _dist_dir(path: Path) -> Path:
    """A folder holding the dist files: the given one, its dist/ or its package/dist/ (npm's tarball layout)."""
    for candidate in (path, path / "dist", path / "package" / "dist"):
        if (candidate / "ort.wasm.min.mjs").is_file():
            return candidate
    return path


def _checked(folder: Path, build: str) -> list[str]:
    """The files of `build` that are missing from `folder` or differ from the pinned SHA-256."""
    return [name for name, digest in ORT_BUILDS[build].items()
            if not (folder / name).is_file() or file_sha256(folder / name) != digest]


def find_ort(build: str = "wasm", ort_dir: str | Path | None = None, fetch: bool = True) -> Path:
    """A folder holding onnxruntime-web ORT_VERSION's files for `build`, checked: ort_dir, else $GANIME_ORT_DIR,
    else the cache directory, fetched there with npm if needed and `fetch`."""
    if build not in ORT_BUILDS:
        raise ConfigError(f"onnxruntime-web build {build!r} unknown; use {' or '.join(ORT_BUILDS)}")
    given = "--ort-dir" if ort_dir is not None else f"${ORT_ENV}"
    ort_dir = ort_dir if ort_dir is not None else os.environ.get(ORT_ENV) or None
    if ort_dir is not None:
        folder = _dist_dir(Path(ort_dir).expanduser())
        bad = _checked(folder, build)
        if bad:
            raise ConfigError(
                f"{given} {ort_dir} lacks onnxruntime-web {ORT_VERSION}'s {', '.join(bad)} (missing or another "
                f"version); point it at node_modules/{ORT_PACKAGE} after `npm install {ORT_PACKAGE}@{ORT_VERSION}`"
            )
        return folder
    cache = ort_cache_dir()
    if not _checked(cache, build):
        return cache
    if not fetch:
        raise MissingDependencyError(
            f"{ORT_PACKAGE} {ORT_VERSION} is not in {cache}: fetch it once with `ganime export RUN --web DIR` (npm) "
            f"or set {ORT_ENV} to a node_modules/{ORT_PACKAGE}"
        )
    _fetch_with_npm(cache)
    bad = _checked(cache, build)
    if bad:
        raise MissingDependencyError(f"{ORT_PACKAGE}@{ORT_VERSION} from npm has unexpected {', '.join(bad)}; not used")
    return cache


def _fetch_with_npm(cache: Path) -> None:
    """`npm pack` the pinned onnxruntime-web and keep the files ORT_BUILDS names (checked by the caller)."""
    npm = shutil.which("npm")
    hint = (f"or pass --ort-dir DIR holding {ORT_PACKAGE} {ORT_VERSION} "
            f"(`npm install {ORT_PACKAGE}@{ORT_VERSION}` on a machine with network, copy node_modules/{ORT_PACKAGE})")
    if npm is None:
        raise MissingDependencyError(f"the browser page needs {ORT_PACKAGE} {ORT_VERSION}: install npm (Node.js) {hint}")
    log.info("fetching %s@%s with npm (34.6 MB once, kept in %s)", ORT_PACKAGE, ORT_VERSION, cache)
    with tempfile.TemporaryDirectory(prefix="ganime-ort-") as tmp:
        try:
            done = subprocess.run(
                [npm, "pack", f"{ORT_PACKAGE}@{ORT_VERSION}", "--pack-destination", tmp, "--silent"],
                check=False, capture_output=True, text=True, timeout=600, cwd=tmp,
            )
        except subprocess.TimeoutExpired:
            raise MissingDependencyError(f"npm pack {ORT_PACKAGE}@{ORT_VERSION} took over 10 minutes; {hint}") from None
        tarballs = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
            raise MissingDependencyError(f"npm could not fetch {ORT_PACKAGE}@{ORT_VERSION} (offline?): {last}; {hint}")
        wanted = {f"package/dist/{name}" for build in ORT_BUILDS.values() for name in build}
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarballs[0]) as tar:
            for member in tar.getmembers():
                if member.name in wanted and member.isfile():
                    src = tar.extractfile(member)
                    with atomic_path(cache / Path(member.name).name) as part, open(part, "wb") as f:
                        shutil.copyfileobj(src, f)


def write_site(
    source,
    out_dir: str | Path,
    ort_dir: str | Path | None = None,
    webgpu: bool = False,
    use_ema: bool = True,
    fetch: bool = True,
) -> list[Path]:
    """Write the browser page for a generator (run dir, ckpt-*, .safetensors, "pretrained" or a LoadedGenerator)
    into out_dir: page files, generator.onnx + .json, site.json and onnxruntime-web's files. Returns them.

    fetch: run npm when onnxruntime-web is neither in ort_dir, $GANIME_ORT_DIR nor the cache."""
    from ganime.export import export_onnx
    from ganime.generate import LoadedGenerator, load_generator
    from ganime.latent import PORTABLE

    build = "webgpu" if webgpu else "wasm"
    gen = source if isinstance(source, LoadedGenerator) else load_generator(source, "cpu", use_ema)
    if gen.latent_scheme != PORTABLE:
        raise ConfigError(
            f"{gen.source} draws seeds with torch's sampler (latent scheme {gen.latent_scheme}, saved before portable "
            "latents), which a browser cannot reproduce; train a new run to draw its faces in the browser"
        )
    ort = find_ort(build, ort_dir, fetch)  # before the export: a missing runtime costs no export
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = export_onnx(gen, out / MODEL_FILE, weights="auto")
    written = [model, model.with_suffix(".json")]
    for name in PAGE_FILES:
        if name == "index.html":  # the title from the model card, or naming the run's data (web/meta.page_text)
            (out / name).write_text(page_for(gen, "onnx"), encoding="utf-8")
            written.append(out / name)
        else:
            written.append(Path(shutil.copyfile(PAGE / name, out / name)))
    for name in ORT_BUILDS[build]:
        written.append(Path(shutil.copyfile(ort / name, out / name)))
    site = {
        "model": MODEL_FILE,
        "sidecar": model.with_suffix(".json").name,
        "ort": next(iter(ORT_BUILDS[build])),
        "ort_version": ORT_VERSION,
        "providers": ["webgpu", "wasm"] if webgpu else ["wasm"],
    }
    (out / SITE_FILE).write_text(json.dumps(site, indent=1) + "\n")
    written.append(out / SITE_FILE)
    return written


class BrowserSite:
    """ASGI app behind `ganime serve`'s /browser/: the served generator's static site, written on the first visit
    into a temporary folder (an ONNX export: seconds), then served as files with HEADERS."""

    def __init__(self, gen) -> None:
        self.gen = gen
        self._lock = threading.Lock()
        self._tmp: tempfile.TemporaryDirectory | None = None  # removed with this object
        self._files = None
        self._error: str | None = None

    def _build(self) -> None:
        from starlette.staticfiles import StaticFiles

        with self._lock:
            if self._files is not None or self._error is not None:
                return
            tmp = tempfile.TemporaryDirectory(prefix="ganime-browser-")
            try:
                write_site(self.gen, tmp.name, fetch=False)  # a request never runs npm
            except GanimeError as e:
                tmp.cleanup()
                self._error = f"the in-browser page is unavailable: {e}"
                log.warning("%s", self._error)
                return
            self._tmp, self._files = tmp, StaticFiles(directory=tmp.name, html=True)

    async def __call__(self, scope, receive, send) -> None:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import PlainTextResponse

        if scope["type"] != "http":
            return
        await run_in_threadpool(self._build)
        if self._error is not None:
            return await PlainTextResponse(self._error, status_code=503)(scope, receive, send)

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  *((k.lower().encode(), v.encode()) for k, v in HEADERS.items())]}
            await send(message)

        await self._files(scope, receive, with_headers)
