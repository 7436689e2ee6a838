// Render DiceBear "adventurer" faces (Lisa Wischofsky, CC BY 4.0) to raw RGBA pixels, with the options of each.
//   node render.mjs COUNT SIZE OUT_PREFIX [FIRST] [STYLE]
// writes OUT_PREFIX.rgba (COUNT x SIZE x SIZE x 4 bytes, face FIRST first) and OUT_PREFIX.json (the options).
// Each face's options are drawn here from a counter-based generator keyed by its index (not by DiceBear's own
// seed hashing), so the labels are exactly what was drawn and face i is the same whatever COUNT is.
// STYLE (default adventurer) may name any style of @dicebear/collection in camelCase or kebab-case (lorelei,
// notionists, shapes...): those are drawn by DiceBear's own options from the seed "ganime-INDEX", without labels.
import { writeFileSync } from "node:fs";
import { createAvatar } from "@dicebear/core";
import * as collection from "@dicebear/collection";
import { Resvg } from "@resvg/resvg-js";

const { adventurer } = collection;
const [count, size, prefix, first = "0", styleName = "adventurer"] = process.argv.slice(2);
const N = Number.parseInt(count, 10), S = Number.parseInt(size, 10), F = Number.parseInt(first, 10);
if (!(N > 0) || !(S >= 16) || !prefix || !(F >= 0)) {
  console.error("usage: node render.mjs COUNT SIZE OUT_PREFIX [FIRST] [STYLE]");
  process.exit(2);
}
const camel = styleName.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
if (camel !== "adventurer") {
  const style = collection[camel];
  if (!style || !style.schema) {
    console.error(`unknown DiceBear style ${styleName}; the collection has: ${Object.keys(collection).join(", ")}`);
    process.exit(2);
  }
  const rgba = Buffer.alloc(N * S * S * 4);
  for (let k = 0; k < N; k++) {
    const svg = createAvatar(style, { seed: `ganime-${F + k}`, size: S }).toString();
    const img = new Resvg(svg, { fitTo: { mode: "width", value: S } }).render();
    if (img.width !== S || img.height !== S) throw new Error(`image ${F + k}: rendered ${img.width}x${img.height}`);
    img.pixels.copy(rgba, k * S * S * 4);
  }
  writeFileSync(`${prefix}.rgba`, rgba);
  writeFileSync(`${prefix}.json`, JSON.stringify({ style: styleName, first: F, size: S, attributes: [], labels: [] }));
  process.exit(0);
}

// splitmix64 over BigInt: stream i gives the same numbers on every platform
const MASK = (1n << 64n) - 1n;
function splitmix(seed) {
  let state = BigInt(seed) & MASK;
  return () => {
    state = (state + 0x9e3779b97f4a7c15n) & MASK;
    let z = state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
    z = z ^ (z >> 31n);
    return Number(z >> 11n) / 2 ** 53; // uniform in [0, 1)
  };
}

const schema = adventurer.schema.properties;
const values = (name) => schema[name].default; // the style's own lists (its default options)
const ATTRS = ["hair", "hairColor", "skinColor", "eyes", "eyebrows", "mouth", "glasses", "earrings", "features"];
const OPTIONAL = { glasses: schema.glassesProbability.default, earrings: schema.earringsProbability.default,
  features: schema.featuresProbability.default };

const rgba = Buffer.alloc(N * S * S * 4);
const labels = [];
for (let k = 0; k < N; k++) {
  const index = F + k;
  const rand = splitmix(0x6a61n * 1000003n + BigInt(index));
  const pick = (list) => list[Math.floor(rand() * list.length)];
  const opts = {};
  const label = {};
  for (const name of ATTRS) {
    if (name in OPTIONAL) {
      const on = rand() * 100 < OPTIONAL[name];
      const v = pick(values(name)); // drawn either way, so later draws do not depend on this one
      opts[name] = [v];
      opts[`${name}Probability`] = on ? 100 : 0;
      label[name] = on ? v : "none";
    } else {
      const v = pick(values(name));
      opts[name] = [v];
      label[name] = v;
    }
  }
  const svg = createAvatar(adventurer, { ...opts, size: S, seed: String(index) }).toString();
  const img = new Resvg(svg, { fitTo: { mode: "width", value: S } }).render();
  if (img.width !== S || img.height !== S) throw new Error(`face ${index}: rendered ${img.width}x${img.height}`);
  img.pixels.copy(rgba, k * S * S * 4);
  labels.push(label);
}
writeFileSync(`${prefix}.rgba`, rgba);
writeFileSync(`${prefix}.json`, JSON.stringify({ style: "adventurer", first: F, size: S, attributes: ATTRS, labels }));
