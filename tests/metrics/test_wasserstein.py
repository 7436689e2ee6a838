"""The histogram W1 kernel gives the sorted-difference formula's number on every kind of sample."""

from __future__ import annotations

import numpy as np
import pytest

from ganime.metrics.wasserstein import COARSE_BINS, Weights, scratch_for, wasserstein_1d, with_weights


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


def test_values_beyond_the_sampled_span() -> None:
    """Large samples are binned over the span of every 256th value: values past it, near or far, on one side or
    both, from one sample or both, still give the sort's number."""
    rng = np.random.default_rng(5)
    n = 300_000
    a, b = rng.standard_normal(n), rng.standard_normal(n) * 1.05
    unsampled = np.flatnonzero(np.arange(n) % 256 != 0)
    for far in (0.5, 1e3):
        pick = rng.choice(unsampled, 60, replace=False)
        a2, b2 = a.copy(), b.copy()
        a2[pick[:20]] = a.min() - far * rng.random(20)  # both samples below the span: an ambiguous first bin
        b2[pick[20:40]] = b.min() - far * rng.random(20)
        a2[pick[40:]] = a.max() + far * rng.random(20)  # only a above it
        check(a2, b2)


def test_identical_and_shifted_samples() -> None:
    a = np.random.default_rng(2).standard_normal(100_000).astype(np.float32)
    assert wasserstein_1d(a, a.copy()) == 0.0
    assert wasserstein_1d(a, np.random.default_rng(3).permutation(a)) == 0.0
    assert wasserstein_1d(a, a + np.float32(0.5)) == pytest.approx(0.5, rel=1e-6)
    assert wasserstein_1d(np.full(10, 3.0), np.full(10, 3.0)) == 0.0


def test_one_scratch_serves_many_calls() -> None:
    """SWD passes one thread's work arrays to every call: nothing left in them from a call changes the next."""
    rng = np.random.default_rng(4)
    scratch = scratch_for(50_000)
    for n in (50_000, 3_000, 50_000, 10, 120_000):  # the last is larger than the scratch: new arrays are made
        a = rng.standard_normal(n).astype(np.float32)
        b = (rng.standard_normal(n) * 1.02).astype(np.float32)
        assert wasserstein_1d(a, b, scratch) == pytest.approx(by_sorting(a, b), rel=1e-6, abs=1e-9)


def test_non_finite_values_follow_the_sort() -> None:
    a = np.array([0.0, 1.0, np.inf], np.float32)
    assert wasserstein_1d(a, np.array([0.0, 1.0, 2.0], np.float32)) == np.inf
    assert np.isnan(wasserstein_1d(np.array([0.0, np.nan], np.float32), np.zeros(2, np.float32)))


def test_non_finite_values_in_large_samples_follow_the_sort() -> None:
    """Far from the values sampled for the binning span, an inf or NaN still gives numpy's sort's answer."""
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((2, 100_000)).astype(np.float32)
    for bad, want in ((np.inf, np.inf), (-np.inf, np.inf), (np.nan, None)):
        a2 = a.copy()
        a2[1001] = bad
        got = wasserstein_1d(a2, b)
        assert np.isnan(got) if want is None else got == want


def test_mismatched_samples_are_rejected() -> None:
    with pytest.raises(ValueError, match="one size"):
        wasserstein_1d(np.zeros(3, np.float32), np.zeros(4, np.float32))


@pytest.mark.parametrize("n", [3, 1_000, 300_000])
def test_weighted_values_count_as_that_many_equal_values(n: int) -> None:
    """A value of weight k gives the number of the sample with k copies of it (how SWD passes repeated patches)."""
    rng = np.random.default_rng(n)
    for spread in (1.0, 1.01, 3.0):
        counts_a = rng.integers(1, 6, n) * (rng.random(n) < 0.4) + 1  # ~60 % drawn once, the others 2-6 times
        counts_b = rng.integers(1, 4, 2 * n)
        values_a = rng.standard_normal(n).astype(np.float32)
        values_b = (rng.standard_normal(2 * n) * spread).astype(np.float32)
        extra = counts_a.sum() - counts_b.sum()  # make the totals agree by weighting b's first value
        if extra < 0:
            counts_a[0] -= extra
        else:
            counts_b[0] += extra
        want = by_sorting(np.repeat(values_a, counts_a), np.repeat(values_b, counts_b))
        a, weights_a = with_weights(values_a, counts_a)
        b, weights_b = with_weights(values_b, counts_b)
        assert weights_a.ones == (counts_a == 1).sum()
        got = wasserstein_1d(a, b, weights_a=weights_a, weights_b=weights_b)
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9)


def test_weights_of_ties_and_non_finite_values() -> None:
    a, weights_a = with_weights(np.array([0.0, 1.0, 1.0, 2.0], np.float32), np.array([3, 1, 2, 1]))
    b = np.zeros(7, np.float32)  # 7 zeros vs 0, 0, 0, 1, 1, 1, 2
    assert wasserstein_1d(a, b, weights_b=None, weights_a=weights_a) == pytest.approx(5 / 7)
    inf, weights_inf = with_weights(np.array([0.0, np.inf], np.float32), np.array([6, 1]))
    assert wasserstein_1d(inf, b, weights_a=weights_inf) == np.inf


def test_weights_that_do_not_add_up_are_rejected() -> None:
    a, weights_a = with_weights(np.zeros(3, np.float32), np.array([1, 2, 2]))
    with pytest.raises(ValueError, match="total weights differ: 5 vs 4"):
        wasserstein_1d(a, np.zeros(4, np.float32), weights_a=weights_a)
    with pytest.raises(ValueError, match="weights for a sample of 3"):
        wasserstein_1d(a, np.zeros(4, np.float32), weights_a=Weights(1, np.ones(1, np.int32)))
    with pytest.raises(ValueError, match="one weight >= 1 per value"):
        with_weights(np.zeros(3, np.float32), np.array([1, 0, 2]))


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
