// The served page's own parts (`ganime serve` only): the admin token, saving with tags, the gallery, the
// latent walk. app.js hands in what they need of the page (`page`); the other back ends never load a gallery.
import { editsText, jsonOf } from "./renderers.js";
import { randomSeed } from "./latent.js";

const PAGE = 60; // gallery items per request; "More" asks for the next ones
const CLOUD = 30; // tags shown before "+N more tags"
const TOKEN_KEY = "ganime-admin-token";
const $ = (id) => document.getElementById(id);
const state = { galleryRequest: 0, shown: 0, tag: "", writes: "unknown", cloudAll: false };
let page = null; // { R, info, status, current: () => ({ face, t, edits }), faceName, validSeed }

export function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

// The admin link (printed by `ganime serve`) carries the token in the fragment, which no server or log sees:
// keep it in this browser and take it out of the address bar.
export function readToken() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!m) return;
  localStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  const rest = location.hash.replace(/(^#|&)token=[^&]+/, "$1").replace(/^#&/, "#");
  history.replaceState(null, "", location.pathname + location.search + (rest === "#" ? "" : rest));
}

function canWrite() {
  return state.writes === "open" || (state.writes === "token" && token() !== "");
}

function showWrites() {
  if (state.writes === "unknown") return;
  const note = $("writes-note");
  $("save-form").hidden = !canWrite();
  note.hidden = canWrite();
  note.textContent = state.writes === "off"
    ? "This gallery is read-only."
    : "Saving and deleting need the admin link that ganime serve printed.";
  document.querySelectorAll("#gallery button.delete").forEach((b) => (b.hidden = !canWrite()));
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
  return jsonOf(response);
}

const parseTags = (text) => text.split(/[\s,]+/).map((t) => t.trim()).filter(Boolean);
const query = (p) => new URLSearchParams(p).toString();

async function save(event) {
  event.preventDefault();
  const tags = parseTags($("tags").value);
  const { face, t, edits } = page.current();
  $("save").disabled = true;
  try {
    const body = { seed: Number(face.seed || 0), truncation: t, tags };
    if (edits.size) body.edits = editsText(edits);
    if (face.zText) body.z = face.zText;
    const item = await api("/api/gallery", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    page.status(`Saved ${page.faceName()}` + (edits.size ? " with its edits" : "") + (item.tags.length ? ` as ${item.tags.join(", ")}` : "") + ".");
    $("tags").value = "";
    await loadGallery(state.tag);
  } catch (e) {
    page.status(`Could not save: ${e.message}`, "error");
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

// A saved face by name: its seed, or "a face found by picture" (its seed is then where the search started).
function itemName(item) {
  return (item.z ? "a face found by picture" : `seed ${item.seed}`) + (item.edits ? " with its edits" : "");
}

function renderItem(item) {
  const li = document.createElement("li");
  li.dataset.id = item.id;
  li.dataset.seed = String(item.seed);
  const a = document.createElement("a");
  a.href = item.permalink; // the saved face itself: its seed or latent, truncation and edits
  a.title = `open ${itemName(item)}`;
  const img = document.createElement("img");
  img.src = item.image_url;
  img.alt = `saved face, ${itemName(item)}`;
  img.width = 128;
  img.height = 128;
  img.loading = "lazy";
  a.append(img);
  const caption = document.createElement("div");
  caption.className = "caption";
  const seed = document.createElement("span");
  seed.textContent = (item.z ? "by picture" : `#${item.seed}`) + (item.edits ? " · edited" : "");
  if (item.edits) seed.title = item.edits;
  const del = document.createElement("button");
  del.type = "button";
  del.className = "delete";
  del.title = "delete";
  del.setAttribute("aria-label", `delete ${itemName(item)}`);
  del.textContent = "×";
  del.hidden = !canWrite();
  del.addEventListener("click", async () => {
    if (!confirm(`Delete ${itemName(item)} from the gallery? This cannot be undone.`)) return;
    try {
      await api(`/api/gallery/${item.id}`, { method: "DELETE" });
      galleryStatus(`Deleted ${itemName(item)}.`);
      await loadGallery(state.tag);
    } catch (e) {
      galleryStatus(`Could not delete: ${e.message}`, true);
    }
  });
  caption.append(seed, del);
  const tags = document.createElement("div");
  tags.className = "tags";
  for (const t of item.tags) tags.append(tagButton(t));
  li.append(a, caption, tags);
  return li;
}

function galleryStatus(message, isError = false) {
  $("gallery-status").textContent = message;
  $("gallery-status").className = isError ? "error" : "muted";
}

// Draw the first page of the gallery (or, with more = true, add the next page below what is shown).
async function loadGallery(tag = "", more = false) {
  // answers can arrive out of order (a save's refresh racing a filter): only the latest request draws
  const request = ++state.galleryRequest;
  const offset = more ? state.shown : 0;
  try {
    const p = { limit: String(PAGE), offset: String(offset) };
    if (tag) p.tag = tag;
    const [page, counts] = await Promise.all([api("/api/gallery?" + query(p)), api("/api/tags")]);
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
    if (request === state.galleryRequest) galleryStatus(`Gallery: ${e.message}`, true);
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

// The walk's frames at the model's size: the most the server takes at that size (its pixel cap), no more.
function maxFrames() {
  const limits = page.R.about.limits;
  return Math.max(2, Math.min(limits.frames[1], Math.floor(limits.pixels_per_request / page.info.resolution ** 2)));
}

async function interpolate(event) {
  event.preventDefault();
  const say = (text, isError = false) => {
    $("interp-status").textContent = text;
    $("interp-status").className = isError ? "error" : "muted";
  };
  const a = $("interp-a").value.trim();
  const b = $("interp-b").value.trim();
  const frames = Number($("interp-frames").value);
  if (!page.validSeed(a) || !page.validSeed(b)) return say("Seeds are whole numbers from 0 to 2^53 − 1.", true);
  if (!(frames >= 2 && frames <= maxFrames())) return say(`Frames must be 2 to ${maxFrames()}.`, true);
  const p = { a, b, frames: String(frames), fps: "16" };
  const { t } = page.current();
  if (t !== 1) p.truncation = String(t);
  say("Animating…");
  const img = $("interp-img");
  try {
    const response = await fetch("/api/interpolate.gif?" + query(p));
    if (!response.ok) {
      let reason = `${response.status}`;
      try {
        reason = (await response.json()).error;
      } catch (e) { /* not JSON */ }
      throw new Error(reason);
    }
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(await response.blob());
    img.hidden = false;
    img.alt = `latent walk from seed ${a} to seed ${b}`;
    say(`Walking from seed ${a} to seed ${b}.`);
  } catch (e) {
    say(`Could not make the animation: ${e.message}`, true);
  }
}

export function setupServer(pageParts) {
  page = pageParts;
  const { R, info } = page;
  $("api-link").hidden = false;
  $("interp").hidden = false;
  $("gallery-section").hidden = false;
  $("model").textContent = `· ${info.resolution} px model ${R.about.model_id}`;
  $("interp-frames").max = String(maxFrames());
  $("interp-frames").value = String(Math.min(24, maxFrames()));
  $("interp-b").value = String(randomSeed());
  $("interp-a").addEventListener("input", () => ($("interp-a").dataset.edited = "1"));
  $("interp-form").addEventListener("submit", interpolate);
  $("save-form").addEventListener("submit", save);
  $("gallery-form").addEventListener("submit", (e) => {
    e.preventDefault();
    loadGallery($("gallery-tag").value.trim());
  });
  $("gallery-more").addEventListener("click", () => loadGallery(state.tag, true));
  $("gallery-all").addEventListener("click", () => {
    $("gallery-tag").value = "";
    loadGallery("");
  });
  state.writes = R.about.writes;
  showWrites();
  loadGallery("");
}
