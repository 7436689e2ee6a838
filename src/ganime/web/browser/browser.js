// ganime in the browser: seed -> latent (latent.js) -> generator.onnx in onnxruntime-web -> canvas.
// Static files only. URL: ?seed=123&truncation=0.7 (a permalink), &threads=N (WebAssembly threads; more than 1
// needs a cross-origin isolated page), &backend=wasm (skip WebGPU).
import { seedLatent, slerp } from "./latent.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const status = (text, error = false) => { $("status").textContent = text; $("status").className = error ? "error" : "muted"; };

function toRGBA(images, channels, size) {
  // [-1, 1] NCHW float32 -> RGBA bytes with ganime's float32 arithmetic (onnx_runtime.to_uint8): Math.fround per step
  const px = new Uint8ClampedArray(size * size * 4);
  const plane = size * size;
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const x = Math.min(Math.max(images[(channels === 1 ? 0 : c) * plane + i], -1), 1);
      const v = Math.fround(Math.fround(Math.fround(x + 1) * 127.5) + 0.5);
      px[4 * i + c] = Math.min(Math.max(Math.trunc(v), 0), 255);
    }
    px[4 * i + 3] = 255;
  }
  return px;
}

async function main() {
  const site = await (await fetch("site.json")).json();
  const meta = await (await fetch(site.sidecar)).json();
  if (meta.latents?.scheme !== "splitmix64-box-muller") throw new Error("this generator's seeds need torch");
  const ort = await import(`./${site.ort}`);
  const threads = Number(params.get("threads")) || (self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1);
  ort.env.wasm.numThreads = threads;
  const providers = params.get("backend") === "wasm" || !("gpu" in navigator)
    ? site.providers.filter((p) => p !== "webgpu") : site.providers;
  let session, backend;
  for (const p of providers) {
    try { session = await ort.InferenceSession.create(site.model, { executionProviders: [p] }); backend = p; break; }
    catch (e) { console.warn(`onnxruntime-web: ${p} unavailable (${e.message})`); }
  }
  if (!session) throw new Error(`onnxruntime-web could not start (${providers.join(", ")})`);
  const zDim = meta.z_dim, size = meta.resolution, channels = meta.channels, classes = meta.num_classes;
  const canvas = $("face");
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext("2d");

  async function render(z, psi, label) {
    const feeds = {
      z: new ort.Tensor("float32", z, [1, zDim]),
      psi: new ort.Tensor("float32", Float32Array.of(psi), [1]),
    };
    if (classes) feeds.labels = new ort.Tensor("int64", BigInt64Array.of(BigInt(label)), [1]);
    const t0 = performance.now();
    const out = await session.run(feeds);
    const ms = performance.now() - t0;
    ctx.putImageData(new ImageData(toRGBA(out.images.data, channels, size), size, size), 0, 0);
    return ms;
  }

  let seed = 0n, busy = false;
  const psi = () => Number($("truncation").value);
  const labelOf = (s) => (classes ? Number(s % BigInt(classes)) : 0); // as `ganime serve`: seed % classes

  async function draw(s) {
    seed = s;
    $("seed").value = String(s);
    const t = psi();
    const query = `?seed=${s}${t === 1 ? "" : `&truncation=${t}`}`;
    $("permalink").textContent = String(s);
    $("permalink").href = query;
    history.replaceState(null, "", query);
    const ms = await render(seedLatent(s, zDim), t, labelOf(s));
    $("timing").textContent = `${ms.toFixed(1)} ms, ${backend}${backend === "wasm" ? `, ${threads} thread${threads > 1 ? "s" : ""}` : ""}`;
    canvas.dataset.seed = String(s);
    canvas.dataset.truncation = String(t);
    document.body.dataset.state = "drawn";
  }

  const randomSeed = () => BigInt(crypto.getRandomValues(new Uint32Array(1))[0]);
  const parseSeed = (text) => (/^[0-9]{1,19}$/.test(text || "") && BigInt(text) < 1n << 63n ? BigInt(text) : null);

  async function walk() {
    const frames = Math.min(Math.max(Number($("frames").value) || 48, 2), 240);
    const from = seed, to = randomSeed();
    const a = seedLatent(from, zDim), b = seedLatent(to, zDim);
    document.body.dataset.state = "walking";
    for (let i = 0; i < frames; i++) {
      await render(slerp(a, b, i / (frames - 1)), psi(), labelOf(from));
      $("timing").textContent = `walking to seed ${to}: frame ${i + 1}/${frames}`;
      await new Promise(requestAnimationFrame);
    }
    await draw(to);
  }

  const guarded = (fn) => async (event) => {
    event?.preventDefault();
    if (busy) return;
    busy = true;
    try { await fn(); status(`${meta.arch} ${size} px, onnxruntime-web ${site.ort_version} (${backend})`); }
    catch (e) { status(`error: ${e.message}`, true); }
    finally { busy = false; }
  };
  $("seed-form").addEventListener("submit", guarded(async () => {
    const s = parseSeed($("seed").value.trim());
    if (s === null) throw new Error("a seed is a whole number from 0 to 9223372036854775807");
    await draw(s);
  }));
  $("new-face").addEventListener("click", guarded(() => draw(randomSeed())));
  $("walk").addEventListener("click", guarded(walk));
  $("truncation").addEventListener("input", () => { $("truncation-value").textContent = psi().toFixed(2); });
  $("truncation").addEventListener("change", guarded(() => draw(seed)));

  // for benchmarks/browser_latency.py and the console: one face (latent, graph, pixels), its milliseconds
  window.ganime = {
    backend, threads,
    async face(s, t = 1) { const t0 = performance.now(); await render(seedLatent(BigInt(s), zDim), t, labelOf(BigInt(s))); return performance.now() - t0; },
  };

  const t = Number(params.get("truncation"));
  if (t > 0 && t <= 1) { $("truncation").value = String(t); $("truncation-value").textContent = psi().toFixed(2); }
  await guarded(() => draw(parseSeed(params.get("seed")) ?? randomSeed()))();
}

main().catch((e) => { status(`error: ${e.message}`, true); document.body.dataset.state = "error"; });
