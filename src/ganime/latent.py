"""Seed -> latent, the same in torch, onnxruntime and a browser: counter-based, plain float64 arithmetic.

Scheme `PORTABLE` ("splitmix64-box-muller"), for a seed s in 0..2**63-1 and a latent of z_dim values:

    mix(x)    = SplitMix64's finaliser (Steele, Lea & Flood 2014), on unsigned 64-bit integers:
                x ^= x >> 30; x *= 0xBF58476D1CE4E5B9; x ^= x >> 27; x *= 0x94D049BB133111EB; x ^= x >> 31
    bits(s,n) = mix(mix(s) + (n + 1) * 0x9E3779B97F4A7C15)      (all mod 2**64; n = 0, 1, 2, ...)
    u1 = ((bits(s, 2k) >> 11) + 1) / 2**53      in (0, 1], so log(u1) is finite
    u2 =  (bits(s, 2k + 1) >> 11) / 2**53        in [0, 1)
    z[2k], z[2k + 1] = sqrt(-2 log u1) * cos(2 pi u2), sqrt(-2 log u1) * sin(2 pi u2)   (Box-Muller, float64)

then each value is rounded to the nearest float32 (an odd z_dim drops the last sine). bits(s, n) is the n-th
output of SplitMix64 started from state mix(s): any value of any seed is computed on its own (no state to
carry), with 64-bit integers and IEEE float64 only, so NumPy (here) and JavaScript (`web/latent.js`, BigInt
and Math.*) give the same latents. The integer part is exact everywhere; log/sin/cos come from each platform's
maths library, which may differ in the last float64 bit, so a value may (rarely) differ by one float32 ulp:
at most 1e-6 for the largest possible |z| (8.6). tests/test_latent.py checks this against node.

Scheme `TORCH` ("torch-randn") is the mapping of generators trained before this one existed:
`torch.randn(z_dim, generator=torch.Generator().manual_seed(s))`. It needs torch (ganime.generate draws it);
a generator's config names its scheme, and a config or sidecar that names none is `TORCH` (`scheme_of`), so
no saved seed changes its face.

This module imports only NumPy (ganime.onnx_runtime uses it without torch).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Sequence

import numpy as np

from ganime.errors import ConfigError

PORTABLE = "splitmix64-box-muller"  # what new runs record (ModelConfig.latents)
TORCH = "torch-randn"  # generators saved before latent schemes were recorded
SCHEMES = (PORTABLE, TORCH)
MAX_SEED = 2**63 - 1
MAX_EDIT = 10.0  # largest |amount| of an edit along a direction (ganime.directions)
MAX_EDITS = 16  # directions one face's permalink form may name (`parse_edit_text`)

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio, SplitMix64's increment
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")  # RFC 4648 sec. 5


def scheme_of(model: dict) -> str:
    """The latent scheme recorded in a saved model config (dict); absent = TORCH, what such files were made with."""
    scheme = model.get("latents", TORCH)
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown latent scheme {scheme!r}; this ganime knows {', '.join(SCHEMES)}")
    return scheme


def _mix(x: np.ndarray) -> np.ndarray:
    # uint64 arrays wrap mod 2**64 on multiply and add (NumPy warns only for scalars, so keep these arrays)
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def check_seeds(seeds: Iterable[int]) -> list[int]:
    """Seeds as ints in 0..MAX_SEED (a user error otherwise)."""
    out = [int(s) for s in seeds]
    for s in out:
        if not 0 <= s <= MAX_SEED:
            raise ConfigError(f"seed {s} out of range 0..{MAX_SEED}")
    return out


def portable_latents(seeds: Iterable[int], z_dim: int) -> np.ndarray:
    """float32 (len(seeds), z_dim): the PORTABLE scheme's latent for each seed (see the module docstring)."""
    seeds = check_seeds(seeds)
    pairs = (z_dim + 1) // 2
    keys = _mix(np.array(seeds, dtype=np.uint64))[:, None]  # (N, 1)
    counters = np.arange(1, 2 * pairs + 1, dtype=np.uint64)[None, :]  # n + 1 for n = 0 .. 2 * pairs - 1
    bits = _mix(keys + counters * _GAMMA) >> np.uint64(11)  # (N, 2 * pairs), 53-bit integers: exact in float64
    u1 = (bits[:, 0::2].astype(np.float64) + 1.0) * 2.0**-53
    u2 = bits[:, 1::2].astype(np.float64) * 2.0**-53
    r, theta = np.sqrt(-2.0 * np.log(u1)), (2.0 * np.pi) * u2
    z = np.empty((len(seeds), 2 * pairs), np.float64)
    z[:, 0::2], z[:, 1::2] = r * np.cos(theta), r * np.sin(theta)
    return z[:, :z_dim].astype(np.float32)


def encode_latent(z: np.ndarray) -> str:
    """A latent as URL-safe text: base64url (no padding) of its little-endian float32 values (z_dim * 4 bytes).

    The permalink form of a latent that no seed names (a picture searched by `ganime invert`, `#z=...`);
    JavaScript reads it back with atob + a Float32Array on a little-endian DataView.
    """
    values = np.asarray(z, dtype="<f4").reshape(-1)
    if not np.isfinite(values).all():
        raise ConfigError("a latent to encode must be finite")
    return base64.urlsafe_b64encode(values.tobytes()).decode("ascii").rstrip("=")


def decode_latent(text: str, z_dim: int) -> np.ndarray:
    """float32 (z_dim,) from `encode_latent`'s text; a user error when it is not z_dim finite float32 values."""
    text = text.strip()
    if not text or len(text) > 4 * z_dim * 2 or any(c not in _B64URL for c in text):
        raise ConfigError(f"this latent is not base64url text of {z_dim} float32 values")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ConfigError(f"this latent is not base64url text of {z_dim} float32 values") from None
    if len(raw) % 4:
        short = ": cut short?" if len(raw) < 4 * z_dim else ""
        raise ConfigError(f"this latent is {len(raw)} bytes, not {4 * z_dim} ({z_dim} float32 values){short}")
    if len(raw) != 4 * z_dim:
        raise ConfigError(f"this latent holds {len(raw) // 4} values; the generator takes {z_dim}")
    z = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.isfinite(z).all():
        raise ConfigError("this latent holds values that are not finite numbers")
    return z


def check_edits(edits: dict[str, float], names: Sequence[str] | None = None) -> dict[str, float]:
    """Edits {direction name: amount} with known names (when `names` is given) and finite amounts within
    +-MAX_EDIT (a ConfigError otherwise). See ganime.directions."""
    out = {}
    for name, amount in edits.items():
        try:
            amount = float(amount)
        except (TypeError, ValueError):
            raise ConfigError(f"edit {name}: {amount!r} is not a number") from None
        if not math.isfinite(amount) or abs(amount) > MAX_EDIT:
            raise ConfigError(f"edit {name}={amount:g}: the amount must be between -{MAX_EDIT:g} and {MAX_EDIT:g}")
        if names is not None and name not in names:
            known = ", ".join(names) or "none (make them with `ganime directions`)"
            raise ConfigError(f"unknown direction {name!r}; this generator has: {known}")
        out[str(name)] = amount
    return out


def parse_edits(items: Sequence[str], names: Sequence[str] | None = None) -> dict[str, float]:
    """["hair-red=1.5", "sefa-0=-1"] -> {"hair-red": 1.5, "sefa-0": -1.0}, checked by `check_edits`.
    A name given twice adds up."""
    edits: dict[str, float] = {}
    for item in items:
        name, sep, amount = str(item).partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"edit {item!r} must be NAME=AMOUNT, e.g. hair-red=1.5")
        try:
            value = float(amount)
        except ValueError:
            raise ConfigError(f"edit {item!r}: {amount.strip()!r} is not a number") from None
        edits[name] = edits.get(name, 0.0) + value
    return check_edits(edits, names)


def parse_edit_text(text: str | None, names: Sequence[str]) -> dict[str, float]:
    """The permalink form `hair-red:1.5,sefa-0:-2` (the page's `e=`, the web API's `edits`) -> {"hair-red": 1.5,
    "sefa-0": -2.0}, read as web/static/app.js reads it: a later amount for a name replaces an earlier one and
    zero amounts are left out. Names must be in `names`; a ConfigError says what is allowed."""
    if not text:
        return {}
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition(":")
        if not sep:
            raise ConfigError(f"edit {part[:40]!r}: write name:amount, e.g. {names[0] if names else 'name'}:1.5")
        if name not in names:
            raise ConfigError(f"no direction {name[:40]!r} for this generator (it has: {', '.join(names) or 'none'})")
        try:
            amount = float(value)
        except ValueError:
            raise ConfigError(f"edit {name}: amount {value[:20]!r} is not a number") from None
        if not math.isfinite(amount) or abs(amount) > MAX_EDIT:
            raise ConfigError(f"edit {name}: amount must be within -{MAX_EDIT:g}..{MAX_EDIT:g}")
        if amount:
            out[name] = amount
    if len(out) > MAX_EDITS:
        raise ConfigError(f"at most {MAX_EDITS} edits per face")
    return out


def format_edits(edits: dict[str, float]) -> str:
    """`parse_edit_text`'s form of edits: `name:amount,...`, amounts as Python's shortest repr, zeros left out."""
    return ",".join(f"{n}:{a!r}" for n, a in edits.items() if a)


def edit_offset(edits: dict[str, float], names: Sequence[str], matrix: np.ndarray) -> np.ndarray:
    """float32 (z_dim,): sum of amount * direction over the edits, in their order, in float32 (one multiply and
    one add per edit, as the torch path and the browser do, so all three add the same latent)."""
    edits = check_edits(edits, names)
    matrix = np.asarray(matrix, dtype=np.float32)
    out = np.zeros(matrix.shape[1], np.float32)
    for name, amount in edits.items():
        out = out + np.float32(amount) * matrix[list(names).index(name)]
    return out
