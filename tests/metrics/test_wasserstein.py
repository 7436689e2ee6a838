"""The histogram W1 kernel gives the sorted-difference formula's number on every kind of sample."""

from __future__ import annotations

import numpy as np
import pytest

from ganime.metrics.wasserstein import COARSE_BINS, wasserstein_1d


def by_sorting(a: np.ndarray, b: np.ndarray) -> float:
    """The definition: mean |a_(i) - b_(i)| over the sorted samples."""
    return float(np.abs(np.sort(a).astype(np.float64) - np.sort(b)).mean())


def check(a: np.ndarray, b: np.ndarray) -> None:
    a, b = a.astype(np.float32), b.astype(np.float32)
    want = by_sorting(a, b)
    assert wasserstein_1d(a, b) == pytest.approx(want, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("n", [1, 2, 7, 100, 5_000])
def test_random_samples_of_every_size(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(20):
        a = rng.normal(0, rng.uniform(0.1, 3), n)
        b = rng.normal(rng.uniform(-1, 1), rng.uniform(0.1, 3), n)
        check(a, b)


def test_same_distribution_large_sample() -> None:
    """D(t) crosses zero often: many bins need the sorted refinement."""
    rng = np.random.default_rng(0)
    n = 40 * COARSE_BINS
    check(rng.standard_normal(n), rng.standard_normal(n))
    check(rng.standard_normal(n), rng.standard_normal(n) * 1.01 + 0.002)


def test_ties_spikes_and_heavy_tails() -> None:
    rng = np.random.default_rng(1)
    n = 200_000
    rounded = np.round(rng.standard_normal(n) * 4) / 4  # many exact ties
    check(rounded, np.round(rng.standard_normal(n) * 4) / 4)
    spike = np.where(rng.random(n) < 0.6, 0.5, rng.standard_normal(n))  # most of the mass on one value
    check(spike, np.where(rng.random(n) < 0.5, 0.5, rng.standard_normal(n)))
    check(rng.standard_cauchy(n), rng.standard_cauchy(n))  # a few values far out, the rest in a few bins


def test_identical_and_shifted_samples() -> None:
    a = np.random.default_rng(2).standard_normal(100_000).astype(np.float32)
    assert wasserstein_1d(a, a.copy()) == 0.0
    assert wasserstein_1d(a, np.random.default_rng(3).permutation(a)) == 0.0
    assert wasserstein_1d(a, a + np.float32(0.5)) == pytest.approx(0.5, rel=1e-6)
    assert wasserstein_1d(np.full(10, 3.0), np.full(10, 3.0)) == 0.0


def test_non_finite_values_follow_the_sort() -> None:
    a = np.array([0.0, 1.0, np.inf], np.float32)
    assert wasserstein_1d(a, np.array([0.0, 1.0, 2.0], np.float32)) == np.inf
    assert np.isnan(wasserstein_1d(np.array([0.0, np.nan], np.float32), np.zeros(2, np.float32)))


def test_mismatched_samples_are_rejected() -> None:
    with pytest.raises(ValueError, match="one size"):
        wasserstein_1d(np.zeros(3, np.float32), np.zeros(4, np.float32))


def test_kernels_compile_without_a_disk_cache_where_numba_cannot_keep_one(monkeypatch) -> None:
    """A read-only install and home: numba refuses cache=True at definition; the kernel still works."""
    import numba

    from ganime import jit

    real_njit = numba.njit

    def njit(*args, cache=False, **kwargs):
        if cache:
            raise RuntimeError("cannot cache function 'add': no locator available for file 'x.py'")
        return real_njit(*args, cache=cache, **kwargs)

    monkeypatch.setattr(jit.numba, "njit", njit)

    @jit.kernel
    def add(x, y):
        return x + y

    assert add(2, 3) == 5
