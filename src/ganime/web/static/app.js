// ganime web page: plain JS, no build step. Seeds stay decimal strings (exact up to 2^53 - 1).
"use strict";

const MAX_SEED = 9007199254740991n;
const FACE_SIZE = 512;
const $ = (id) => document.getElementById(id);
const state = { seed: "0", truncation: 1, galleryRequest: 0 };

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
  $("truncation-value").textContent = state.truncation.toFixed(2);
  $("interp-a").value = state.seed;
  if (push) history.pushState(null, "", permalink());
  else history.replaceState(null, "", permalink());
}

function readLocation() {
  const params = new URLSearchParams(location.search);
  const seed = params.get("seed");
  state.seed = validSeed(seed) ? String(BigInt(seed)) : randomSeed();
  const t = Number(params.get("truncation"));
  state.truncation = t > 0 && t <= 1 ? t : 1;
}

async function api(url, options = {}) {
  const response = await fetch(url, options);
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
    await loadGallery($("gallery-tag").value.trim());
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
  del.addEventListener("click", async () => {
    try {
      await api(`/api/gallery/${item.id}`, { method: "DELETE" });
      await loadGallery($("gallery-tag").value.trim());
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

async function loadGallery(tag = "") {
  // answers can arrive out of order (a save's refresh racing a filter): only the latest request draws
  const request = ++state.galleryRequest;
  try {
    const url = "/api/gallery?" + query(tag ? { tag, limit: "60" } : { limit: "60" });
    const [page, counts] = await Promise.all([api(url), api("/api/tags")]);
    if (request !== state.galleryRequest) return;
    const list = $("gallery");
    list.replaceChildren(...page.items.map(renderItem));
    list.dataset.tag = tag;
    $("gallery-count").textContent = tag ? `${page.total} tagged “${tag}”` : `${page.total} saved`;
    $("tag-cloud").replaceChildren(...Object.entries(counts).slice(0, 30).map(([t, n]) => tagButton(t, n)));
    if (!page.items.length) {
      const empty = document.createElement("li");
      empty.className = "empty muted";
      empty.textContent = tag ? `Nothing tagged “${tag}” yet.` : "Nothing saved yet: save a face above.";
      list.replaceChildren(empty);
    }
  } catch (e) {
    if (request === state.galleryRequest) status(`Gallery: ${e.message}`, true);
  }
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
  $("truncation").addEventListener("input", (e) => {
    $("truncation-value").textContent = Number(e.target.value).toFixed(2);
  });
  $("truncation").addEventListener("change", (e) => {
    state.truncation = Number(e.target.value);
    show(false);
  });
  $("save-form").addEventListener("submit", save);
  $("interp-form").addEventListener("submit", interpolate);
  $("gallery-form").addEventListener("submit", (e) => {
    e.preventDefault();
    loadGallery($("gallery-tag").value.trim());
  });
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
    })
    .catch(() => {});
  loadGallery("");
}

document.addEventListener("DOMContentLoaded", init);
