// Seed -> latent, the "splitmix64-box-muller" scheme of ganime/latent.py, line for line (see its docstring):
// SplitMix64 outputs on BigInt (exact mod 2**64), Box-Muller in float64, each value rounded to float32.
// The same seed gives the same Float32Array here as ganime.latent.portable_latents in NumPy.

export const SCHEME = "splitmix64-box-muller";
export const MAX_SEED = (1n << 63n) - 1n;
const MASK = (1n << 64n) - 1n;
const GAMMA = 0x9e3779b97f4a7c15n;
const M1 = 0xbf58476d1ce4e5b9n;
const M2 = 0x94d049bb133111ebn;
const TWO_POW_MINUS_53 = 2 ** -53;

function mix(x) {
  x = ((x ^ (x >> 30n)) * M1) & MASK;
  x = ((x ^ (x >> 27n)) * M2) & MASK;
  return x ^ (x >> 31n);
}

/** The PORTABLE latent (Float32Array of zDim) for a seed: a non-negative integer Number or BigInt <= 2**63-1. */
export function seedLatent(seed, zDim) {
  const s = typeof seed === "bigint" ? seed : Number.isSafeInteger(seed) ? BigInt(seed) : -1n;
  if (s < 0n || s > MAX_SEED) throw new RangeError(`seed ${seed} out of range 0..${MAX_SEED}`);
  const key = mix(s);
  const z = new Float32Array(zDim);
  for (let k = 0; 2 * k < zDim; k++) {
    const a = mix((key + BigInt(2 * k + 1) * GAMMA) & MASK) >> 11n;
    const b = mix((key + BigInt(2 * k + 2) * GAMMA) & MASK) >> 11n;
    const u1 = (Number(a) + 1.0) * TWO_POW_MINUS_53;
    const u2 = Number(b) * TWO_POW_MINUS_53;
    const r = Math.sqrt(-2.0 * Math.log(u1));
    const theta = (2.0 * Math.PI) * u2;
    z[2 * k] = r * Math.cos(theta); // a Float32Array store rounds to nearest, as NumPy's astype(float32)
    if (2 * k + 1 < zDim) z[2 * k + 1] = r * Math.sin(theta);
  }
  return z;
}

/** Spherical interpolation between latents a and b at fraction t (ganime.generate.slerp), in float64. */
export function slerp(a, b, t) {
  let na = 0, nb = 0, dot = 0;
  for (let i = 0; i < a.length; i++) { na += a[i] * a[i]; nb += b[i] * b[i]; }
  na = Math.sqrt(na); nb = Math.sqrt(nb);
  for (let i = 0; i < a.length; i++) dot += (a[i] / na) * (b[i] / nb);
  const omega = Math.acos(Math.min(Math.max(dot, -1 + 1e-7), 1 - 1e-7));
  const so = Math.sin(omega), wa = Math.sin((1 - t) * omega) / so, wb = Math.sin(t * omega) / so;
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = wa * a[i] + wb * b[i];
  return out;
}

// --- what the page's permalinks and edits need (the same arithmetic as ganime/latent.py) -------------------

/** The largest seed every back end takes: 2**53 - 1, the largest integer a JavaScript number holds exactly. */
export const PAGE_MAX_SEED = 2 ** 53 - 1;

/** A uniform seed in first .. first + count - 1 (count <= 2**53): 53 random bits, rejection for uniformity. */
export function randomSeed(first = 0, count = 2 ** 53) {
  const limit = 2 ** 53 - (2 ** 53 % count); // below it, r % count is uniform
  for (;;) {
    const a = crypto.getRandomValues(new Uint32Array(2));
    const r = (a[0] & 0x1fffff) * 2 ** 32 + a[1]; // 21 + 32 bits: exact in a double (the old bug added 64)
    if (r < limit) return first + (r % count);
  }
}

/** z plus the edits' offset, sum of amount * direction over the edits in their order, all in float32: one
 * multiply and one add per edit, then one add to z (ganime.latent.edit_offset, as torch and onnxruntime do). */
export function applyEdits(z, edits, directions) {
  const offset = new Float32Array(z.length);
  for (const [name, amount] of edits) {
    const row = directions.rows[name];
    const a = Math.fround(amount);
    for (let i = 0; i < offset.length; i++) offset[i] = Math.fround(offset[i] + Math.fround(a * row[i]));
  }
  const out = new Float32Array(z.length);
  for (let i = 0; i < out.length; i++) out[i] = Math.fround(z[i] + offset[i]);
  return out;
}

/** A latent as base64url (no padding) of its little-endian float32 values (ganime.latent.encode_latent). */
export function encodeLatent(z) {
  const bytes = new Uint8Array(Float32Array.from(z).buffer);
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The inverse of encodeLatent, or null when the text is not zDim finite float32 values. */
export function decodeLatent(text, zDim) {
  if (!/^[A-Za-z0-9_-]+$/.test(text || "")) return null;
  let raw;
  try {
    raw = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4));
  } catch (e) {
    return null;
  }
  if (raw.length !== 4 * zDim) return null;
  const bytes = Uint8Array.from(raw, (c) => c.charCodeAt(0));
  const z = new Float32Array(bytes.buffer);
  return z.every((v) => Number.isFinite(v) && Math.abs(v) <= 64) ? z : null;
}
