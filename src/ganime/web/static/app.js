// ganime's one page: the served page, the in-browser page and the static site are this file with another
// renderer (renderers.js). Plain JS modules, no build step. Seeds stay decimal strings (exact up to 2^53 - 1).
//
// Permalinks are one format for every back end, in the fragment (never sent to a server):
//   #seed=7&t=0.7&e=hair-red:1.5,sefa-0:-2      a seed, its truncation, its edits (directions added to z)
//   #z=<base64url float32>&t=1&e=...            a face found by searching with a picture
// Older links (?seed=7&truncation=0.7, the static site's ?seed=7&psi=0.7) still open their face.
import { FilesRenderer, OnnxRenderer, ServerRenderer, editsText } from "./renderers.js";
import { PAGE_MAX_SEED, randomSeed, seedLatent, slerp } from "./latent.js";
import { readToken, setupServer, token } from "./gallery.js";

const GROUPS = ["colours", "details", "shape"];
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const state = {
  face: { seed: "0" }, // { seed } or { zText, seed: the search's start seed }
  t: 1,
  edits: new Map(), // direction name -> amount, in the order they were set
  drawn: 0, // draw requests: only the latest one shows
  rounds: [], // the stack of rounds: { kind, items, group, before }
};
let R = null; // the renderer
let info = null;

// ------------------------------------------------------------------------------------------------ helpers
function status(message, kind = "") {
  const el = $("status");
  el.textContent = message;
  el.className = kind; // "error", "busy" or ""
}

const validSeed = (text) => /^[0-9]{1,16}$/.test(text || "") && Number(text) <= PAGE_MAX_SEED;
const round2 = (x) => Math.round(x * 100) / 100;

// 0.5 -> "0.50", 0.333 -> "0.333": two decimals, more only when the value has them
function psiText(t) {
  return Math.abs(t * 100 - Math.round(t * 100)) < 1e-9 ? t.toFixed(2) : String(t);
}

function fragment(face = state.face, t = state.t, edits = state.edits) {
  const parts = [face.zText ? `z=${face.zText}` : `seed=${face.seed}`];
  if (t !== 1) parts.push(`t=${t}`);
  if (edits.size) parts.push(`e=${editsText(edits)}`);
  return "#" + parts.join("&");
}

function faceName(face = state.face) {
  return face.zText ? "a face found by picture" : `seed ${face.seed}`;
}

// ------------------------------------------------------------------------------------------------ the face
// Draw the current face and keep the address bar, permalink and download link in step with it.
async function draw(push = false) {
  const request = ++state.drawn;
  const key = fragment();
  const img = $("face");
  img.classList.add("loading");
  document.body.dataset.state = "drawing";
  $("permalink").textContent = state.face.zText ? "this face" : `seed ${state.face.seed}`;
  $("permalink").href = key;
  $("seed").value = state.face.zText ? "" : state.face.seed;
  if (!$("interp-a").dataset.edited && !state.face.zText) $("interp-a").value = state.face.seed;
  showTruncation();
  showEdits();
  if (location.hash !== key || location.search) {
    const url = location.pathname + key;
    if (push) history.pushState(null, "", url);
    else history.replaceState(null, "", url);
  }
  try {
    const drawnFace = await R.face(state.face, state.t, state.edits);
    if (request !== state.drawn) return;
    img.src = drawnFace.url;
    await img.decode();
    if (request !== state.drawn) return;
    img.alt = `generated face, ${faceName()}` + (state.edits.size ? ", edited" : "");
    img.dataset.seed = state.face.zText ? "" : state.face.seed;
    img.dataset.key = key;
    const dl = $("download");
    dl.href = drawnFace.download;
    dl.download = state.face.zText ? "ganime-face.png" : `ganime-seed${state.face.seed}.png`;
    if (R.kind === "onnx") $("timing").textContent = `· drawn in ${drawnFace.ms.toFixed(1)} ms (${R.backend})`;
    img.classList.remove("loading");
    document.body.dataset.state = "drawn";
    return true;
  } catch (e) {
    if (request !== state.drawn) return;
    img.classList.remove("loading");
    document.body.dataset.state = "error";
    status(`Could not draw ${faceName()}: ${e.message}`, "error");
    return false;
  }
}

// onnx: sliders draw live; a move during a draw is drawn when that one is done (never a queue of stale faces)
let live = { busy: false, again: false };
async function drawLive() {
  if (live.busy) {
    live.again = true;
    return;
  }
  live.busy = true;
  try {
    do {
      live.again = false;
      await draw(false);
    } while (live.again);
  } finally {
    live.busy = false;
  }
}

function showTruncation() {
  if (info.truncations) {
    for (const b of $("psi-strip").children) b.setAttribute("aria-pressed", String(Number(b.dataset.psi) === state.t));
    refreshStrips();
    return;
  }
  // the slider shows a permalink's value as it is (0.333 stays 0.333): it moves freely (step any)
  $("truncation").value = String(state.t);
  $("truncation-value").textContent = psiText(state.t);
}

function setFace(face, edits = new Map()) {
  state.face = face;
  state.edits = edits;
}

function newFace() {
  const { first, count } = info.seeds;
  setFace({ seed: String(randomSeed(first, count)) }, new Map());
  status("");
  return draw(true);
}

// ------------------------------------------------------------------------------------------------ permalinks
// What the address asks for, checked; a broken link says what is wrong and what is shown instead.
function readLocation() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const fromHash = hash.has("seed") || hash.has("z");
  const get = (k, old) => (fromHash ? hash.get(k) : old.map((o) => params.get(o)).find((v) => v !== null) ?? null);
  const seed = get("seed", ["seed"]);
  const zText = fromHash ? hash.get("z") : null;
  const tRaw = fromHash ? hash.get("t") : params.get("truncation") ?? params.get("psi");
  const eRaw = fromHash ? hash.get("e") : null;
  const problems = [];
  let face = null;
  if (zText !== null) {
    face = { zText, seed: "0" };
    const why = R.problem(face, 1, new Map());
    if (why) {
      problems.push(why);
      face = null;
    }
  } else if (seed !== null) {
    if (!validSeed(seed)) problems.push(`“${seed.slice(0, 40)}” is not a seed (0 to 2^53 − 1)`);
    else face = { seed: String(Number(seed)) };
  }
  // no t is truncation 1 on every back end; a site's own default only where the link names no face at all
  const sited = (v) => !info.truncations || info.truncations.some((p) => Number(p) === v);
  let t = seed === null && zText === null && info.truncations ? info.defaultT : sited(1) ? 1 : info.defaultT;
  if (tRaw !== null) {
    const v = Number(tRaw);
    if (!(tRaw.trim() !== "" && v > 0 && v <= 1)) problems.push(`truncation “${tRaw.slice(0, 40)}” is not in (0, 1]`);
    else if (!sited(v)) {
      problems.push(`truncation “${tRaw.slice(0, 20)}” is not one of ${info.truncations.join(", ")}`);
    } else t = v; // kept exactly: never snapped to a slider step
  }
  const edits = new Map();
  if (eRaw) {
    for (const part of eRaw.split(",")) {
      const [name, amountText] = part.split(":");
      const d = info.directions.byName[name];
      const amount = Number(amountText);
      if (!d) problems.push(`no direction “${(name || "").slice(0, 40)}” here` + (info.directions.list.length ? "" : " (this generator has none)"));
      else if (!(amountText && Number.isFinite(amount) && Math.abs(amount) <= 10)) problems.push(`${d.label}: “${(amountText || "").slice(0, 20)}” is not an amount from −10 to 10`);
      else if (amount) edits.set(name, amount);
    }
  }
  if (face) {
    const why = R.problem(face, t, edits);
    if (why) {
      problems.push(why);
      if (R.problem(face, t, new Map()) === null) edits.clear();
      else face = null;
    }
  }
  state.t = t;
  setFace(face || { seed: String(randomSeed(info.seeds.first, info.seeds.count)) }, face ? edits : new Map());
  if (problems.length) {
    status(`This link is broken: ${problems.join("; ")}. Showing ${face ? "what it can" : "a random face"} instead.`, "error");
  }
}

// ------------------------------------------------------------------------------------------------ directions
function sliderRow(d) {
  const row = document.createElement("div");
  row.className = "direction";
  row.dataset.name = d.name;
  const label = document.createElement("label");
  label.htmlFor = `dir-${d.name}`;
  label.textContent = d.label;
  if (info.truncations) { // pre-rendered: a strip of the amounts that exist, no slider
    const strip = document.createElement("div");
    strip.className = "strip";
    strip.setAttribute("role", "group");
    strip.setAttribute("aria-label", d.label);
    for (const a of ["0", ...d.amounts]) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.amount = a;
      b.setAttribute("aria-label", `${d.label} ${a}`);
      const img = document.createElement("img");
      img.alt = "";
      const span = document.createElement("span");
      span.textContent = a;
      b.append(img, span);
      b.addEventListener("click", () => {
        state.edits = Number(a) ? new Map([[d.name, Number(a)]]) : new Map();
        if (Number(a)) state.t = Number(info.editT);
        status("");
        draw(false);
      });
      strip.append(b);
    }
    row.classList.add("strips");
    row.append(label, strip);
    return row;
  }
  const input = document.createElement("input");
  input.type = "range";
  input.id = `dir-${d.name}`;
  input.min = String(-d.range);
  input.max = String(d.range);
  input.step = "any";
  input.value = "0";
  const out = document.createElement("output");
  out.htmlFor = input.id;
  out.textContent = "0";
  const apply = () => {
    const v = round2(Number(input.value)); // permalinks carry 2 decimals of a dragged slider
    if (v) state.edits.set(d.name, v);
    else state.edits.delete(d.name);
    out.textContent = String(v);
  };
  input.addEventListener("input", () => {
    apply();
    if (info.live) drawLive();
  });
  input.addEventListener("change", () => {
    apply();
    if (!info.live) draw(false);
  });
  row.append(label, input, out);
  return row;
}

function buildDirections() {
  const list = info.directions.list.filter((d) => !info.truncations || (d.amounts && d.amounts.length));
  $("directions").hidden = list.length === 0;
  const holder = $("sliders");
  holder.replaceChildren();
  for (const g of GROUPS) {
    const members = list.filter((d) => d.group === g);
    if (!members.length) continue;
    const title = document.createElement("p");
    title.className = "group-title";
    title.textContent = g;
    holder.append(title, ...members.map(sliderRow));
  }
}

function showEdits() {
  for (const row of $("sliders").querySelectorAll(".direction")) {
    const amount = state.edits.get(row.dataset.name) || 0;
    const input = row.querySelector("input");
    if (input && document.activeElement !== input) {
      input.value = String(amount);
      row.querySelector("output").textContent = String(amount);
    }
    for (const b of row.querySelectorAll("button")) b.setAttribute("aria-pressed", String(Number(b.dataset.amount) === amount));
  }
}

// pre-rendered strips show this seed at each amount / truncation
function refreshStrips() {
  if (!info.truncations || state.face.zText) return;
  $("directions").hidden = !info.directions.list.length || !R.hasEdits(state.face); // none for this seed
  for (const b of $("psi-strip").children) b.querySelector("img").src = R.url(state.face, Number(b.dataset.psi), new Map());
  for (const row of $("sliders").querySelectorAll(".direction")) {
    for (const b of row.querySelectorAll("button")) {
      const a = Number(b.dataset.amount);
      const t = a ? Number(info.editT) : state.t;
      const edits = a ? new Map([[row.dataset.name, a]]) : new Map();
      b.querySelector("img").src = R.problem(state.face, t, edits) ? "" : R.url(state.face, t, edits);
    }
  }
}

// ------------------------------------------------------------------------------------------------ rounds
function describe(edits, base) {
  const changed = [...edits].filter(([n, a]) => (base.get(n) || 0) !== a);
  return changed.map(([n, a]) => `${info.directions.byName[n].label} ${a > 0 ? "+" : ""}${a}`).join(", ") || "as picked";
}

function variations(pick, group) {
  const dirs = info.directions.list.filter((d) => group === "all" || d.group === group);
  if (info.truncations) { // pre-rendered: this seed along each direction, at each amount the site has
    const items = [];
    // edits exist at one truncation only: the variations carry it
    for (const d of dirs) for (const a of d.amounts) items.push({ face: pick.face, t: Number(info.editT), edits: new Map([[d.name, Number(a)]]) });
    return items.slice(0, 16).map((it) => ({ ...it, label: describe(it.edits, new Map()) }));
  }
  if (!dirs.length) return [];
  const items = [];
  for (let i = 0; i < 16; i++) {
    const edits = new Map(pick.edits);
    const moves = 1 + (i % 2); // one or two directions per variation
    for (let m = 0; m < moves; m++) {
      const d = dirs[Math.floor(Math.random() * dirs.length)];
      const delta = (Math.random() < 0.5 ? -1 : 1) * d.step * (1 + Math.random());
      const v = round2(Math.max(-d.range, Math.min(d.range, (edits.get(d.name) || 0) + delta)));
      if (v) edits.set(d.name, v);
      else edits.delete(d.name);
    }
    items.push({ face: pick.face, edits, label: describe(edits, pick.edits) });
  }
  return items;
}

function seedsRound() {
  // a site pre-renders variations for its first seeds only: its rounds pick among those
  const { first, count } = info.truncations && info.directions.list.length ? info.editSeeds : info.seeds;
  return Array.from({ length: 16 }, () => {
    const face = { seed: String(randomSeed(first, count)) };
    return { face, edits: new Map(), label: `seed ${face.seed}` };
  });
}

async function showRound() {
  const top = state.rounds[state.rounds.length - 1];
  const section = $("rounds");
  section.hidden = !top;
  if (!top) return;
  const n = state.rounds.length;
  $("rounds-title").textContent = top.kind === "seeds" ? `Pick one of 16 · round ${n}` : `Round ${n}: pick the closest`;
  $("round-help").textContent = top.kind === "seeds"
    ? "Click the face you like best; the next round shows 16 variations of it."
    : top.items.length ? "Variations around your pick. Pick again to refine, or Back." : (info.truncations
      ? "This site has no pre-rendered variations for this group." : "This generator has no directions for this group.");
  $("round-back").disabled = false;
  const groups = $("round-groups");
  groups.hidden = top.kind === "seeds" || !info.directions.list.length;
  for (const b of groups.children) b.setAttribute("aria-checked", String(b.dataset.group === top.group));
  const grid = $("round-grid");
  grid.dataset.round = String(n);
  grid.dataset.ready = "0";
  const buttons = top.items.map((item, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.index = String(i);
    b.dataset.key = fragment(item.face, item.t ?? state.t, item.edits);
    b.setAttribute("aria-label", `pick ${item.label}`);
    const img = document.createElement("img");
    img.alt = "";
    const span = document.createElement("span");
    span.textContent = item.label;
    b.append(img, span);
    b.addEventListener("click", () => pick(item));
    return b;
  });
  grid.replaceChildren(...buttons);
  await Promise.all(top.items.map(async (item, i) => {
    try {
      const drawnFace = await R.face(item.face, item.t ?? state.t, item.edits);
      buttons[i].querySelector("img").src = drawnFace.url;
      await buttons[i].querySelector("img").decode();
    } catch (e) {
      buttons[i].querySelector("span").textContent = `(${e.message})`;
    }
  }));
  if (grid.dataset.round === String(n)) grid.dataset.ready = "1";
}

function startRound() {
  state.rounds = [{ kind: "seeds", items: seedsRound(), group: "all", before: { face: state.face, t: state.t, edits: state.edits } }];
  showRound();
  $("rounds").scrollIntoView({ block: "nearest" });
}

function pick(item) {
  const before = { face: state.face, t: state.t, edits: state.edits };
  if (item.t !== undefined) state.t = item.t;
  setFace(item.face, new Map(item.edits));
  draw(true);
  const group = state.rounds.length > 1 ? state.rounds[state.rounds.length - 1].group : "all";
  state.rounds.push({ kind: "variations", items: variations(item, group), group, pick: item, before });
  showRound();
}

function back() {
  const top = state.rounds.pop();
  if (top) {
    state.t = top.before.t;
    setFace(top.before.face, new Map(top.before.edits));
    draw(false);
  }
  showRound();
}

function buildRoundGroups() {
  const present = GROUPS.filter((g) => info.directions.list.some((d) => d.group === g));
  $("round-groups").replaceChildren(...["all", ...present].map((g) => {
    const b = document.createElement("button");
    b.type = "button";
    b.setAttribute("role", "radio");
    b.dataset.group = g;
    b.textContent = g === "all" ? "everything" : g;
    b.addEventListener("click", () => {
      const top = state.rounds[state.rounds.length - 1];
      if (!top || top.kind !== "variations") return;
      top.group = g;
      top.items = variations(top.pick, g);
      showRound();
    });
    return b;
  }));
}

// ------------------------------------------------------------------------------------------------ picture
async function searchByPicture(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) return status(`“${file.name}” is not a picture.`, "error");
  status("Searching for the nearest face…", "busy");
  $("picture").disabled = true;
  const t0 = performance.now();
  try {
    const found = await R.invert(file, (text) => status(`Searching: ${text}…`, "busy"));
    state.t = info.truncations ? state.t : 1;
    setFace({ zText: found.zText, seed: String(found.seed ?? 0) }, new Map());
    await draw(true);
    status(`Found the nearest face in ${((performance.now() - t0) / 1000).toFixed(1)} s (error ${found.loss.toFixed(4)}). `
      + (info.directions.list.length ? "Shape it with the sliders, or pick one of 16 around it." : ""));
    document.body.dataset.inverted = "1";
  } catch (e) {
    status(`Could not search with this picture: ${e.message}`, "error");
  } finally {
    $("picture").disabled = false;
  }
}

function setupPicture() {
  const form = $("picture-form");
  form.hidden = !info.canInvert;
  form.addEventListener("submit", (e) => e.preventDefault());
  $("picture").addEventListener("change", (e) => searchByPicture(e.target.files[0]));
  form.addEventListener("dragover", (e) => {
    e.preventDefault();
    form.classList.add("over");
  });
  form.addEventListener("dragleave", () => form.classList.remove("over"));
  form.addEventListener("drop", (e) => {
    e.preventDefault();
    form.classList.remove("over");
    searchByPicture(e.dataTransfer.files[0]);
  });
}

// ------------------------------------------------------------------------------------------------ onnx only
function setupOnnx() {
  $("walk-control").hidden = false;
  $("model").textContent = `· ${info.resolution} px`;
  $("walk").addEventListener("click", async () => {
    if (state.face.zText) return status("The walk starts from a seed.", "error");
    const frames = Math.min(Math.max(Number($("frames").value) || 48, 2), 240);
    const to = String(randomSeed());
    const a = seedLatent(BigInt(state.face.seed), info.zDim), b = seedLatent(BigInt(to), info.zDim);
    document.body.dataset.state = "walking";
    const img = $("face");
    for (let i = 0; i < frames; i++) {
      await R.draw(slerp(a, b, i / (frames - 1)), state.t, R.label(state.face));
      img.src = R.canvas.toDataURL("image/png");
      $("timing").textContent = `walking to seed ${to}: frame ${i + 1}/${frames}`;
      await new Promise(requestAnimationFrame);
    }
    setFace({ seed: to }, new Map());
    await draw(true);
  });
  // for benchmarks/browser_latency.py and the console: one face (latent, edits, graph, pixels), its milliseconds
  window.ganime = {
    backend: R.backend, threads: R.threads,
    async face(s, t = 1, edits = {}) {
      const t0 = performance.now();
      const e = new Map(Object.entries(edits));
      await R.draw(R.latent({ seed: String(s) }, e), t, R.label({ seed: String(s) }));
      return performance.now() - t0;
    },
  };
}

// ------------------------------------------------------------------------------------------------ start
function setupFiles() {
  $("truncation-control").hidden = true;
  $("psi-choices").hidden = info.truncations.length < 2;
  $("seed-form").hidden = true;
  $("model").textContent = `· ${info.resolution} px, ${info.note}`;
  $("psi-strip").replaceChildren(...info.truncations.map((psi) => {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.psi = psi;
    b.setAttribute("aria-label", `truncation ${psi}`);
    const img = document.createElement("img");
    img.alt = "";
    const label = document.createElement("span");
    label.textContent = psi;
    b.append(img, label);
    b.addEventListener("click", () => {
      state.t = Number(psi);
      if (R.problem(state.face, state.t, state.edits)) state.edits = new Map(); // edits exist at one truncation
      status("");
      draw(false);
    });
    return b;
  }));
}

async function init() {
  const kind = document.documentElement.dataset.backend;
  R = kind === "onnx" ? new OnnxRenderer() : kind === "files" ? new FilesRenderer() : new ServerRenderer(token);
  if (kind === "server") readToken();
  status("Loading…", "busy");
  try {
    info = await R.init(params);
  } catch (e) {
    status(`This page cannot draw faces: ${e.message}`, "error");
    document.body.dataset.state = "error";
    return;
  }
  status("");
  $("backend-note").textContent = `(${info.note})`;
  setupPicture(); // before the server's setup, which hides it from visitors who may not POST
  if (kind === "server") {
    setupServer({ R, info, status, faceName, validSeed, current: () => ({ face: state.face, t: state.t, edits: state.edits }) });
  }
  if (kind === "onnx") setupOnnx();
  if (kind === "files") setupFiles();
  buildDirections();
  buildRoundGroups();
  readLocation();
  $("new-face").addEventListener("click", newFace);
  $("start-round").addEventListener("click", startRound);
  $("round-back").addEventListener("click", back);
  $("round-close").addEventListener("click", () => {
    state.rounds = [];
    showRound();
  });
  $("reset-edits").addEventListener("click", () => {
    state.edits = new Map();
    draw(false);
  });
  $("seed-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const s = $("seed").value.trim();
    if (!validSeed(s)) return status("A seed is a whole number from 0 to 2^53 − 1 (9007199254740991).", "error");
    setFace({ seed: String(Number(s)) }, state.edits);
    status("");
    draw(true);
  });
  // the slider moves freely; what it shows is what the face uses (no snapping to steps)
  const sliderValue = () => Math.max(0.01, round2(Number($("truncation").value)));
  $("truncation").addEventListener("input", () => {
    $("truncation-value").textContent = psiText(sliderValue());
    if (info.live) {
      state.t = sliderValue();
      drawLive();
    }
  });
  $("truncation").addEventListener("change", () => {
    state.t = sliderValue();
    draw(false);
  });
  const reopen = () => {
    if (location.hash === fragment()) return;
    status(""); // a message about the last face does not belong under the next one
    readLocation();
    draw(false);
  };
  window.addEventListener("popstate", reopen);
  window.addEventListener("hashchange", reopen);
  await draw(false);
}

document.addEventListener("DOMContentLoaded", init);
