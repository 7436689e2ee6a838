// The static "does not exist" page (ganime publish): every face is a file named by manifest.json, no server.
// URLs are relative, so the site works from any folder of any static host.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { manifest: null, seed: 0, psi: "1.0" };

function status(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

// faces/psi-0.7/000123.webp: the seed zero-padded to 6 digits (more past 999999), as `ganime publish` writes
function faceUrl(seed, psi) {
  const m = state.manifest;
  return m.path.replace("{truncation}", psi).replace("{seed}", String(seed).padStart(6, "0"));
}

function randomSeed() {
  const m = state.manifest;
  const a = new Uint32Array(2);
  crypto.getRandomValues(a);
  return m.first_seed + ((a[0] * 2 ** 32 + a[1]) % m.seeds);
}

function permalink() {
  return "?" + new URLSearchParams({ seed: String(state.seed), psi: state.psi }).toString();
}

function show(push = false) {
  const m = state.manifest;
  const face = $("face");
  face.classList.add("loading");
  face.src = faceUrl(state.seed, state.psi);
  face.alt = `generated face, seed ${state.seed}, truncation ${state.psi}`;
  face.dataset.seed = String(state.seed);
  face.dataset.psi = state.psi;
  $("permalink").textContent = String(state.seed);
  $("permalink").href = permalink();
  $("download").href = faceUrl(state.seed, state.psi);
  $("download").download = `seed${state.seed}-psi${state.psi}.${m.format}`;
  $("truncation").value = String(m.truncations.indexOf(state.psi));
  $("truncation-value").textContent = state.psi;
  for (const b of $("strip").children) {
    b.setAttribute("aria-pressed", String(b.dataset.psi === state.psi));
    b.querySelector("img").src = faceUrl(state.seed, b.dataset.psi);
  }
  const url = permalink();
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

function readLocation() {
  const m = state.manifest;
  const params = new URLSearchParams(location.search);
  const seed = params.get("seed");
  const psi = params.get("psi");
  const last = m.first_seed + m.seeds - 1;
  const problems = [];
  const seedOk = seed !== null && /^[0-9]{1,16}$/.test(seed) && Number(seed) >= m.first_seed && Number(seed) <= last;
  if (seed !== null && !seedOk) problems.push(`seed “${seed.slice(0, 40)}” is not on this site (${m.first_seed} to ${last})`);
  if (psi !== null && !m.truncations.includes(psi)) problems.push(`truncation “${psi.slice(0, 20)}” is not one of ${m.truncations.join(", ")}`);
  state.seed = seedOk ? Number(seed) : randomSeed();
  state.psi = psi !== null && m.truncations.includes(psi) ? psi : m.default_truncation;
  if (problems.length) status(`This link is broken: ${problems.join("; ")}.`, true);
}

function buildControls() {
  const m = state.manifest;
  const slider = $("truncation");
  slider.max = String(m.truncations.length - 1);
  slider.disabled = m.truncations.length < 2;
  slider.addEventListener("input", () => {
    state.psi = m.truncations[Number(slider.value)];
    show(false);
  });
  $("strip").replaceChildren(
    ...m.truncations.map((psi) => {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.psi = psi;
      b.setAttribute("aria-label", `truncation ${psi}`);
      const img = document.createElement("img");
      img.alt = "";
      img.width = 64;
      img.height = 64;
      const label = document.createElement("span");
      label.textContent = psi;
      b.append(img, label);
      b.addEventListener("click", () => {
        state.psi = psi;
        show(false);
      });
      return b;
    })
  );
  $("model").textContent = `· ${m.size} px, model ${m.model_id}, ${m.seeds} seeds`;
}

async function init() {
  try {
    const response = await fetch("manifest.json", { cache: "no-cache" });
    if (!response.ok) throw new Error(`manifest.json: ${response.status}`);
    state.manifest = await response.json();
  } catch (e) {
    status(`This site has no faces yet (${e.message}).`, true);
    return;
  }
  buildControls();
  readLocation();
  show(false);
  const face = $("face");
  face.addEventListener("load", () => face.classList.remove("loading"));
  face.addEventListener("error", () => status("Could not load this face.", true));
  $("new-face").addEventListener("click", () => {
    state.seed = randomSeed();
    show(true);
  });
  window.addEventListener("popstate", () => {
    readLocation();
    show(false);
  });
}

document.addEventListener("DOMContentLoaded", init);
