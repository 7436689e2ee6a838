// The page's three back ends behind one small interface (app.js never asks which one it has):
//   server: `ganime serve`'s API (/api/face.png with edits or z, /api/invert);
//   onnx:   generator.onnx in onnxruntime-web, in the visitor's browser (`ganime export --web`, serve's /browser/);
//   files:  faces pre-rendered by `ganime publish` (manifest.json names them; edits are pre-rendered strips).
// A renderer has `info` (resolution, zDim, seeds, truncations, directions...), `face(face, t, edits)` -> {url, ms}
// (rejects with the reason when it cannot draw it), `problem(face, t, edits)` (why a permalink's face is not
// available here, or null) and, where it can, `invert(blob, progress)` -> {z, zText, seed, loss}.
import { applyEdits, decodeLatent, encodeLatent, randomSeed, seedLatent, PAGE_MAX_SEED } from "./latent.js";

export const editsText = (edits) => [...edits].map(([n, a]) => `${n}:${a}`).join(",");

function directionsFrom(entries, matrix) {
  const list = (entries || []).map((d) => ({ step: 0.5, range: 3, group: "details", ...d, label: d.label || d.name }));
  const rows = {};
  // the ONNX sidecar carries each unit vector as the entry's "vector"; site.json as rows of "matrix"
  list.forEach((d, i) => {
    const v = d.vector || (matrix && matrix[i]);
    if (v) rows[d.name] = Float32Array.from(v);
    delete d.vector;
  });
  return { list, rows, byName: Object.fromEntries(list.map((d) => [d.name, d])) };
}

async function getJSON(url, options) {
  return jsonOf(await fetch(url, options));
}

// a response's JSON body; a non-2xx answer throws the server's reason
export async function jsonOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

// A picture, centre-cropped square and scaled smoothly to side x side, on a canvas.
async function pictureCanvas(blob, side) {
  const bitmap = await createImageBitmap(blob);
  const crop = Math.min(bitmap.width, bitmap.height);
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = side;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, (bitmap.width - crop) / 2, (bitmap.height - crop) / 2, crop, crop, 0, 0, side, side);
  return canvas;
}

// ------------------------------------------------------------------------------------------------ server
export class ServerRenderer {
  kind = "server";

  constructor(token) {
    this.token = token; // () => the admin token or ""
    this.urls = [];
  }

  async init() {
    const [info, dirs] = await Promise.all([getJSON("/api/info"), getJSON("/api/directions").catch(() => ({ directions: [] }))]);
    this.about = info;
    const d = directionsFrom(dirs.directions, null);
    this.info = {
      resolution: info.resolution, zDim: info.z_dim, seeds: { first: 0, count: info.limits.seed[1] + 1 },
      truncations: null, directions: d, canInvert: true, canSave: true, live: false,
      note: `drawn by the server, model ${info.model_id}`,
    };
    return this.info;
  }

  params(face, t, edits) {
    const p = face.zText ? { z: face.zText } : { seed: face.seed };
    if (t !== 1) p.truncation = String(t);
    if (edits.size) p.edits = editsText(edits);
    return new URLSearchParams(p).toString();
  }

  url(face, t, edits) {
    return "/api/face.png?" + this.params(face, t, edits); // the model's own size: the browser scales it
  }

  problem(face) {
    // the server checks everything it is asked, and says why it refuses; a latent is checked here first so
    // that a broken link shows another face with the reason rather than no face
    if (face.zText && !decodeLatent(face.zText, this.info.zDim)) return `z is not ${this.info.zDim} float32 values`;
    return null;
  }

  async face(face, t, edits) {
    const t0 = performance.now();
    const response = await fetch(this.url(face, t, edits));
    if (!response.ok) {
      let reason = `${response.status} ${response.statusText}`;
      try {
        reason = (await response.json()).error || reason;
      } catch (e) { /* not JSON */ }
      throw new Error(reason);
    }
    const url = URL.createObjectURL(await response.blob());
    this.urls.push(url);
    while (this.urls.length > 64) URL.revokeObjectURL(this.urls.shift()); // thumbnails and the face
    return { url, ms: performance.now() - t0, download: this.url(face, t, edits) };
  }

  async invert(blob) {
    // the server's body limit is small: send the picture at the model's size, PNG, or JPEG if that is too big
    const canvas = await pictureCanvas(blob, this.info.resolution);
    const limit = this.about.limits.body_bytes;
    let body = await new Promise((r) => canvas.toBlob(r, "image/png"));
    for (let q = 0.92; body.size > limit && q > 0.3; q -= 0.15) body = await new Promise((r) => canvas.toBlob(r, "image/jpeg", q));
    const headers = { "Content-Type": body.type };
    if (this.token()) headers.Authorization = `Bearer ${this.token()}`;
    const found = await getJSON("/api/invert", { method: "POST", headers, body });
    return { zText: found.z, seed: found.start_seed, loss: found.loss };
  }
}

// ------------------------------------------------------------------------------------------------ onnx
function toRGBA(images, offset, channels, size) {
  // [-1, 1] NCHW float32 -> RGBA bytes with ganime's float32 arithmetic (onnx_runtime.to_uint8): Math.fround per step
  const px = new Uint8ClampedArray(size * size * 4);
  const plane = size * size;
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const x = Math.min(Math.max(images[offset + (channels === 1 ? 0 : c) * plane + i], -1), 1);
      const v = Math.fround(Math.fround(Math.fround(x + 1) * 127.5) + 0.5);
      px[4 * i + c] = Math.min(Math.max(Math.trunc(v), 0), 255);
    }
    px[4 * i + 3] = 255;
  }
  return px;
}

export class OnnxRenderer {
  kind = "onnx";

  async init(params) {
    const site = await getJSON("site.json");
    const meta = await getJSON(site.sidecar);
    if (meta.latents?.scheme !== "splitmix64-box-muller") throw new Error("this generator's seeds need torch");
    const ort = await import(`./${site.ort}`);
    this.ort = ort;
    const threads = Number(params.get("threads")) || (self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1);
    ort.env.wasm.numThreads = threads;
    const providers = params.get("backend") === "wasm" || !("gpu" in navigator)
      ? site.providers.filter((p) => p !== "webgpu") : site.providers;
    for (const p of providers) {
      try {
        this.session = await ort.InferenceSession.create(site.model, { executionProviders: [p] });
        this.backend = p;
        break;
      } catch (e) {
        console.warn(`onnxruntime-web: ${p} unavailable (${e.message})`);
      }
    }
    if (!this.session) throw new Error(`onnxruntime-web could not start (${providers.join(", ")})`);
    this.threads = threads;
    this.meta = meta;
    this.queue = Promise.resolve(); // one session.run at a time
    this.canvas = document.createElement("canvas");
    this.canvas.width = this.canvas.height = meta.resolution;
    const dirs = meta.directions || site.directions || { directions: [], matrix: [] };
    this.info = {
      resolution: meta.resolution, zDim: meta.z_dim, seeds: { first: 0, count: PAGE_MAX_SEED + 1 },
      truncations: null, directions: directionsFrom(dirs.directions, dirs.matrix), canInvert: true, canSave: false,
      live: true, note: `drawn in your browser by onnxruntime-web ${site.ort_version} (${this.backend})`,
    };
    return this.info;
  }

  latent(face, edits) {
    const base = face.zText ? decodeLatent(face.zText, this.meta.z_dim) : seedLatent(BigInt(face.seed), this.meta.z_dim);
    return edits.size ? applyEdits(base, edits, this.info.directions) : base;
  }

  label(face) {
    const classes = this.meta.num_classes;
    return classes && !face.zText ? Number(BigInt(face.seed) % BigInt(classes)) : 0; // as `ganime serve`
  }

  problem(face) {
    if (face.zText && !decodeLatent(face.zText, this.meta.z_dim)) return `z is not ${this.meta.z_dim} float32 values`;
    return null;
  }

  // Latents (N x zDim, one Float32Array) -> the graph's float32 images, N x C x H x W.
  run(zs, n, psi, labels) {
    const job = this.queue.then(async () => {
      const feeds = {
        z: new this.ort.Tensor("float32", zs, [n, this.meta.z_dim]),
        psi: new this.ort.Tensor("float32", Float32Array.of(psi), [1]),
      };
      if (this.meta.num_classes) feeds.labels = new this.ort.Tensor("int64", BigInt64Array.from(labels, BigInt), [n]);
      return (await this.session.run(feeds)).images.data;
    });
    this.queue = job.catch(() => {});
    return job;
  }

  async draw(z, psi, label) {
    const t0 = performance.now();
    const images = await this.run(z, 1, psi, [label]);
    const size = this.meta.resolution;
    this.canvas.getContext("2d").putImageData(new ImageData(toRGBA(images, 0, this.meta.channels, size), size, size), 0, 0);
    return performance.now() - t0;
  }

  async face(face, t, edits) {
    const t0 = performance.now();
    await this.draw(this.latent(face, edits), t, this.label(face));
    const url = this.canvas.toDataURL("image/png"); // lossless: the <img> holds the graph's exact pixels
    return { url, ms: performance.now() - t0, download: url };
  }

  // Search by picture without a server: the best of many seeds, then a (1+8) evolution strategy on z
  // (gradient-free: onnxruntime-web runs the graph forward only), on the mean squared pixel error.
  async invert(blob, progress, budgetMs = 6000) {
    const started = performance.now();
    const size = this.meta.resolution, zDim = this.meta.z_dim, channels = this.meta.channels;
    const pixels = (await pictureCanvas(blob, size)).getContext("2d").getImageData(0, 0, size, size).data;
    const plane = size * size;
    const target = new Float32Array(channels * plane);
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < channels; c++) {
        const v = channels === 1 ? (pixels[4 * i] + pixels[4 * i + 1] + pixels[4 * i + 2]) / 3 : pixels[4 * i + c];
        target[c * plane + i] = v / 127.5 - 1;
      }
    }
    const per = channels * plane;
    const errors = (images, n) => Array.from({ length: n }, (_, k) => {
      let e = 0;
      for (let i = 0; i < per; i++) {
        const d = Math.min(Math.max(images[k * per + i], -1), 1) - target[i];
        e += d * d;
      }
      return e / per;
    });
    const batch = 16;
    let best = null, bestErr = Infinity, bestSeed = 0;
    for (let round = 0; round < 4; round++) { // 64 seeds
      const seeds = Array.from({ length: batch }, () => randomSeed());
      const zs = new Float32Array(batch * zDim);
      seeds.forEach((s, k) => zs.set(seedLatent(BigInt(s), zDim), k * zDim));
      const errs = errors(await this.run(zs, batch, 1, new Array(batch).fill(0)), batch);
      errs.forEach((e, k) => {
        if (e < bestErr) [bestErr, best, bestSeed] = [e, zs.slice(k * zDim, (k + 1) * zDim), seeds[k]];
      });
      progress?.(`trying seeds: ${(round + 1) * batch} of ${4 * batch}`);
    }
    let sigma = 0.5;
    const lambda = 8;
    for (let gen = 0; performance.now() - started < budgetMs && gen < 200; gen++) {
      const zs = new Float32Array(lambda * zDim);
      for (let k = 0; k < lambda; k++) {
        for (let i = 0; i < zDim; i++) {
          const g = Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
          zs[k * zDim + i] = best[i] + sigma * g;
        }
      }
      const errs = errors(await this.run(zs, lambda, 1, new Array(lambda).fill(0)), lambda);
      const k = errs.indexOf(Math.min(...errs));
      if (errs[k] < bestErr) {
        [bestErr, best] = [errs[k], zs.slice(k * zDim, (k + 1) * zDim)];
        sigma *= 1.3; // the 1/5th success rule, roughly
      } else {
        sigma *= 0.85;
      }
      if (gen % 5 === 0) progress?.(`refining: error ${(bestErr / 4).toFixed(4)}`);
    }
    return { z: best, zText: encodeLatent(best), seed: bestSeed, loss: bestErr / 4 };
  }
}

// ------------------------------------------------------------------------------------------------ files
export class FilesRenderer {
  kind = "files";

  async init() {
    const response = await fetch("manifest.json", { cache: "no-cache" });
    if (!response.ok) throw new Error(`this site has no faces yet (manifest.json: ${response.status})`);
    const m = await response.json();
    this.m = m;
    const edits = m.edits || { directions: [] };
    const d = directionsFrom(edits.directions, null);
    this.info = {
      resolution: m.resolution, zDim: null, seeds: { first: m.first_seed, count: m.seeds },
      truncations: m.truncations, defaultT: Number(m.default_truncation), editT: edits.truncation,
      // strips exist for the first seeds only (ganime publish's edit_seeds)
      editSeeds: { first: edits.first_seed ?? m.first_seed, count: edits.seeds ?? m.seeds },
      directions: d, canInvert: false, canSave: false, live: false,
      note: `pre-rendered: ${m.seeds} seeds, model ${m.model_id}`,
    };
    return this.info;
  }

  hasEdits(face) {
    const { first, count } = this.info.editSeeds;
    return !face.zText && Number(face.seed) >= first && Number(face.seed) < first + count;
  }

  psi(t) {
    return this.m.truncations.find((p) => Number(p) === t);
  }

  problem(face, t, edits) {
    const m = this.m;
    const last = m.first_seed + m.seeds - 1;
    if (face.zText) return "a searched-for face is not pre-rendered on this site";
    if (!(Number(face.seed) >= m.first_seed && Number(face.seed) <= last)) return `seed “${face.seed}” is not on this site (${m.first_seed} to ${last})`;
    if (this.psi(t) === undefined) return `truncation “${t}” is not one of ${m.truncations.join(", ")}`;
    if (edits.size > 1) return "only one direction at a time is pre-rendered here";
    if (edits.size && !this.hasEdits(face)) {
      const { first, count } = this.info.editSeeds;
      return `seed ${face.seed} has no pre-rendered edits (seeds ${first} to ${first + count - 1} have them)`;
    }
    for (const [name, amount] of edits) {
      const d = this.info.directions.byName[name];
      if (!d) return `no direction “${name}” on this site`;
      if (!d.amounts.some((a) => Number(a) === amount)) return `${d.label} is pre-rendered at ${d.amounts.join(", ")}, not ${amount}`;
      if (this.psi(t) !== this.info.editT) return `edits are pre-rendered at truncation ${this.info.editT} only`;
    }
    return null;
  }

  // faces/psi-0.7/000123.webp, or faces/psi-0.7/e-NAME/AMOUNT/000123.webp: as `ganime publish` writes them
  url(face, t, edits) {
    const seed = String(face.seed).padStart(6, "0");
    const psi = this.psi(t);
    if (!edits.size) return this.m.path.replace("{truncation}", psi).replace("{seed}", seed);
    const [name, amount] = [...edits][0];
    const label = this.info.directions.byName[name].amounts.find((a) => Number(a) === amount);
    return this.m.edits.path.replace("{truncation}", psi).replace("{name}", name).replace("{amount}", label).replace("{seed}", seed);
  }

  async face(face, t, edits) {
    const why = this.problem(face, t, edits);
    if (why) throw new Error(why);
    const url = this.url(face, t, edits);
    return { url, ms: 0, download: url };
  }
}
