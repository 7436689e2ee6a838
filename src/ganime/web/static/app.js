// ganime web page: plain JS, no build step. Seeds stay decimal strings (exact up to 2^53 - 1).
"use strict";

const MAX_SEED = 9007199254740991n;
const FACE_SIZE = 512;
const PAGE = 60; // gallery items per request; "More" asks for the next ones
const CLOUD = 30; // tags shown before "+N more tags"
const TOKEN_KEY = "ganime-admin-token";
const $ = (id) => document.getElementById(id);
// writes: "unknown" until /api/info says "open", "token" or "off"; save and delete stay hidden until then
const state = { seed: "0", truncation: 1, galleryRequest: 0, shown: 0, tag: "", writes: "unknown", cloudAll: false };

function randomSeed() {
  const a = new Uint32Array(1);
  crypto.getRandomValues(a);
  return String(a[0]);
}

function validSeed(text) {
  return /^[0-9]{1,16}$/.test(text || "") && BigInt(text) <= MAX_SEED;
}

function status(message, isError = false) {
  const el = $("status");
  el.textContent = message;
  el.classList.toggle("error", isError);
}

function query(params) {
  return new URLSearchParams(params).toString();
}

function faceParams(extra = {}) {
  const p = { seed: state.seed };
  if (state.truncation !== 1) p.truncation = String(state.truncation);
  return { ...p, ...extra };
}

function permalink() {
  return "/?" + query(faceParams());
}

// 0.5 -> "0.50", 0.333 -> "0.333": two decimals, more only when the value has them
function psiText(t) {
  return Math.abs(t * 100 - Math.round(t * 100)) < 1e-9 ? t.toFixed(2) : String(t);
}

function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

// The admin link (printed by `ganime serve`) carries the token in the fragment, which no server or log sees:
// keep it in this browser and take it out of the address bar.
function readToken() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!m) return;
  localStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search);
}

function canWrite() {
  return state.writes === "open" || (state.writes === "token" && token() !== "");
}

function showWrites() {
  if (state.writes === "unknown") return;
  const note = $("writes-note");
  $("save-form").hidden = !canWrite();
  note.hidden = canWrite();
  note.textContent =
    state.writes === "off" ? "This gallery is read-only." : "Saving and deleting need the admin link that ganime serve printed.";
  document.querySelectorAll("#gallery button.delete").forEach((b) => (b.hidden = !canWrite()));
}

// Draw the current face and keep the address bar, permalink and download link in step with it.
function show(push = false) {
  const face = $("face");
  face.classList.add("loading");
  face.src = "/api/face.png?" + query(faceParams({ size: FACE_SIZE }));
  face.alt = `generated face, seed ${state.seed}`;
  face.dataset.seed = state.seed;
  const link = $("permalink");
  link.textContent = state.seed;
  link.href = permalink();
  const dl = $("download");
  dl.href = "/api/face.png?" + query(faceParams({ size: FACE_SIZE }));
  dl.download = `ganime-seed${state.seed}.png`;
  $("truncation").value = String(state.truncation);
  $("truncation-value").textContent = psiText(state.truncation);
  if (!$("interp-a").dataset.edited) $("interp-a").value = state.seed; // never overwrite a typed seed
  if (push) history.pushState(null, "", permalink());
  else history.replaceState(null, "", permalink());
}

function readLocation() {
  const params = new URLSearchParams(location.search);
  const seed = params.get("seed");
  const problems = [];
  if (seed !== null && !validSeed(seed)) problems.push(`“${seed.slice(0, 40)}” is not a seed (0 to 2^53 − 1)`);
  state.seed = validSeed(seed) ? String(BigInt(seed)) : randomSeed();
  const raw = params.get("truncation");
  const t = Number(raw);
  if (raw !== null && !(t > 0 && t <= 1)) problems.push(`truncation “${raw.slice(0, 40)}” is not in (0, 1]`);
  state.truncation = raw !== null && t > 0 && t <= 1 ? t : 1;
  if (problems.length) status(`This link is broken: ${problems.join("; ")}. Showing what it can instead.`, true);
}

async function api(url, options = {}) {
  if (options.method && options.method !== "GET" && token()) {
    options.headers = { ...(options.headers || {}), Authorization: `Bearer ${token()}` };
  }
  const response = await fetch(url, options);
  if (response.status === 401) {
    localStorage.removeItem(TOKEN_KEY); // a wrong or old token: ask for the admin link again
    state.writes = "token";
    showWrites();
  }
  if (response.status === 204) return null;
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) {
    throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  }
  return body;
}

function parseTags(text) {
  return text.split(/[\s,]+/).map((t) => t.trim()).filter(Boolean);
}

async function save(event) {
  event.preventDefault();
  const tags = parseTags($("tags").value);
  $("save").disabled = true;
  try {
    const item = await api("/api/gallery", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ seed: Number(state.seed), truncation: state.truncation, tags }),
    });
    status(`Saved seed ${item.seed}` + (item.tags.length ? ` as ${item.tags.join(", ")}` : "") + ".");
    $("tags").value = "";
    await loadGallery(state.tag);
  } catch (e) {
    status(`Could not save: ${e.message}`, true);
  } finally {
    $("save").disabled = false;
  }
}

function tagButton(tag, count) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "tag";
  b.textContent = count === undefined ? tag : `${tag} (${count})`;
  b.dataset.tag = tag;
  b.addEventListener("click", () => {
    $("gallery-tag").value = tag;
    loadGallery(tag);
  });
  return b;
}

function renderItem(item) {
  const li = document.createElement("li");
  li.dataset.id = item.id;
  li.dataset.seed = String(item.seed);
  const a = document.createElement("a");
  a.href = item.permalink;
  a.title = `open seed ${item.seed}`;
  const img = document.createElement("img");
  img.src = item.image_url;
  img.alt = `saved face, seed ${item.seed}`;
  img.width = 128;
  img.height = 128;
  img.loading = "lazy";
  a.append(img);
  const caption = document.createElement("div");
  caption.className = "caption";
  const seed = document.createElement("span");
  seed.textContent = `#${item.seed}`;
  const del = document.createElement("button");
  del.type = "button";
  del.className = "delete";
  del.title = "delete";
  del.setAttribute("aria-label", `delete seed ${item.seed}`);
  del.textContent = "×";
  del.hidden = !canWrite();
  del.addEventListener("click", async () => {
    if (!confirm(`Delete seed ${item.seed} from the gallery? This cannot be undone.`)) return;
    try {
      await api(`/api/gallery/${item.id}`, { method: "DELETE" });
      status(`Deleted seed ${item.seed}.`);
      await loadGallery(state.tag);
    } catch (e) {
      status(`Could not delete: ${e.message}`, true);
    }
  });
  caption.append(seed, del);
  const tags = document.createElement("div");
  tags.className = "tags";
  for (const t of item.tags) tags.append(tagButton(t));
  li.append(a, caption, tags);
  return li;
}

// Draw the first page of the gallery (or, with more = true, add the next page below what is shown).
async function loadGallery(tag = "", more = false) {
  // answers can arrive out of order (a save's refresh racing a filter): only the latest request draws
  const request = ++state.galleryRequest;
  const offset = more ? state.shown : 0;
  try {
    const params = { limit: String(PAGE), offset: String(offset) };
    if (tag) params.tag = tag;
    const [page, counts] = await Promise.all([api("/api/gallery?" + query(params)), api("/api/tags")]);
    if (request !== state.galleryRequest) return;
    const shownTag = page.tag || ""; // as the server stores it: "CAT" and "ｃａｔ" are "cat"
    state.tag = shownTag;
    $("gallery-tag").value = shownTag;
    const list = $("gallery");
    const items = page.items.map(renderItem);
    if (more) list.append(...items);
    else list.replaceChildren(...items);
    state.shown = offset + page.items.length;
    list.dataset.tag = shownTag;
    const what = shownTag ? `${page.total} tagged “${shownTag}”` : `${page.total} saved`;
    $("gallery-count").textContent = state.shown < page.total ? `${what}, showing ${state.shown}` : what;
    $("gallery-more").hidden = state.shown >= page.total;
    drawCloud(counts);
    if (!state.shown) {
      const empty = document.createElement("li");
      empty.className = "empty muted";
      empty.textContent = shownTag ? `Nothing tagged “${shownTag}” yet.` : "Nothing saved yet: save a face above.";
      list.replaceChildren(empty);
    }
  } catch (e) {
    if (request === state.galleryRequest) status(`Gallery: ${e.message}`, true);
  }
}

function drawCloud(counts) {
  const all = Object.entries(counts);
  const shown = state.cloudAll ? all : all.slice(0, CLOUD);
  $("tag-cloud").replaceChildren(...shown.map(([t, n]) => tagButton(t, n)));
  const more = $("tag-more");
  more.hidden = all.length <= CLOUD;
  more.textContent = state.cloudAll ? "fewer tags" : `+${all.length - CLOUD} more tags`;
  more.onclick = () => {
    state.cloudAll = !state.cloudAll;
    drawCloud(counts);
  };
}

function interpolate(event) {
  event.preventDefault();
  const a = $("interp-a").value.trim();
  const b = $("interp-b").value.trim();
  const frames = Number($("interp-frames").value);
  if (!validSeed(a) || !validSeed(b)) return status("Seeds are whole numbers from 0 to 2^53 - 1.", true);
  if (!(frames >= 2 && frames <= 120)) return status("Frames must be 2 to 120.", true);
  const img = $("interp-img");
  const params = { a, b, frames: String(frames), size: "256", fps: "16" };
  if (state.truncation !== 1) params.truncation = String(state.truncation);
  status("Animating…");
  img.onload = () => status(`Walking from seed ${a} to seed ${b}.`);
  img.onerror = () => status("Could not make the animation.", true);
  img.hidden = false;
  img.alt = `latent walk from seed ${a} to seed ${b}`;
  img.src = "/api/interpolate.gif?" + query(params);
}

function init() {
  readToken();
  readLocation();
  show(false);
  $("interp-b").value = randomSeed();
  const face = $("face");
  face.addEventListener("load", () => face.classList.remove("loading"));
  face.addEventListener("error", () => status("Could not load the face.", true));
  $("new-face").addEventListener("click", () => {
    state.seed = randomSeed();
    show(true);
  });
  // the slider moves in steps of 0.01; a permalink's finer value (0.333) is shown as it is
  const sliderValue = (e) => Math.max(0.01, Math.round(Number(e.target.value) * 100) / 100);
  $("truncation").addEventListener("input", (e) => {
    $("truncation-value").textContent = psiText(sliderValue(e));
  });
  $("truncation").addEventListener("change", (e) => {
    state.truncation = sliderValue(e);
    show(false);
  });
  $("interp-a").addEventListener("input", () => ($("interp-a").dataset.edited = "1"));
  $("save-form").addEventListener("submit", save);
  $("interp-form").addEventListener("submit", interpolate);
  $("gallery-form").addEventListener("submit", (e) => {
    e.preventDefault();
    loadGallery($("gallery-tag").value.trim());
  });
  $("gallery-more").addEventListener("click", () => loadGallery(state.tag, true));
  $("gallery-all").addEventListener("click", () => {
    $("gallery-tag").value = "";
    loadGallery("");
  });
  window.addEventListener("popstate", () => {
    readLocation();
    show(false);
  });
  api("/api/info")
    .then((info) => {
      $("model").textContent = `· ${info.resolution} px model ${info.model_id}`;
      state.writes = info.writes;
      showWrites();
    })
    .catch(() => {});
  loadGallery("");
}

document.addEventListener("DOMContentLoaded", init);
