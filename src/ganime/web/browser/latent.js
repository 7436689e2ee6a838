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
