"""FID and KID maths on features with known answers, and the Inception weights paths (missing, wrong, cached)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganime.errors import MissingWeightsError
from ganime.metrics import compute, inception
from ganime.metrics.features import INCEPTION_FILE, load_inception
from ganime.metrics.fid import frechet_distance, frechet_distance_features
from ganime.metrics.inception import FIDInceptionV3, build_network
from ganime.metrics.kid import kid, mmd2_unbiased


def random_spd(d: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_fid_of_1d_gaussians_is_mean_gap_plus_std_gap_squared() -> None:
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) = (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == pytest.approx(
        (1 - 3) ** 2 + (2 - 3) ** 2
    )


def test_fid_of_scaled_covariance_has_closed_form() -> None:
    # sigma2 = c^2 sigma1 commutes with sigma1: tr(s1 + c^2 s1 - 2 c s1) = (1 - c)^2 tr(s1)
    sigma = random_spd(32, seed=0)
    mu1, mu2 = np.zeros(32), np.full(32, 0.5)
    expected = 32 * 0.25 + (1 - 3) ** 2 * np.trace(sigma)
    assert frechet_distance(mu1, sigma, mu2, 9 * sigma) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, sigma, mu1, sigma) == pytest.approx(0.0, abs=1e-8)


def test_fid_of_non_commuting_covariances_matches_the_definition() -> None:
    # tr (s1 s2)^(1/2) computed independently: the eigenvalues of s1 s2 are real and >= 0 for SPD s1, s2
    s1, s2 = random_spd(16, seed=1), random_spd(16, seed=2)
    assert not np.allclose(s1 @ s2, s2 @ s1)
    tr_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(0)).sum()
    mu1, mu2 = np.random.default_rng(3).normal(size=(2, 16))
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)


def test_fid_from_samples_approaches_the_population_value() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(20_000, 8))
    b = rng.normal(1.0, 2.0, size=(20_000, 8))  # |dmu|^2 = 8, tr(I + 4I - 2 * 2I) = 8
    fid = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert fid == pytest.approx(16.0, rel=0.03)


def test_fid_from_fewer_samples_than_dimensions_equals_the_covariance_route() -> None:
    # the low-rank (SVD of A B^T) route must give the D x D covariance formula's answer
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(20, 48)), rng.normal(0.3, 1.5, size=(30, 48)) @ rng.normal(size=(48, 48))
    by_cov = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance_features(a, b) == pytest.approx(by_cov, rel=1e-8)
    many = rng.normal(size=(100, 48))  # more samples than dimensions: the covariance route itself
    assert frechet_distance_features(many, b) == pytest.approx(
        frechet_distance(many.mean(0), np.cov(many, rowvar=False), b.mean(0), np.cov(b, rowvar=False)), rel=1e-8
    )


def test_kid_polynomial_mmd_matches_hand_computation() -> None:
    # d = 1, k(a, b) = (a b + 1)^3.  x = {0, 1}: k(0, 1) = 1.  y = {1, 2}: k(1, 2) = 27.
    # cross: k(0,1) + k(0,2) + k(1,1) + k(1,2) = 1 + 1 + 8 + 27 = 37.
    # unbiased MMD^2 = 2*1/(2*1) + 2*27/(2*1) - 2 * 37/(2*2) = 1 + 27 - 18.5 = 9.5
    x, y = np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])
    assert mmd2_unbiased(x, y) == pytest.approx(9.5)
    mean, std = kid(y, x, subsets=5, subset_size=2)  # every subset is the whole set
    assert mean == pytest.approx(9.5) and std == pytest.approx(0.0)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(600, 64))
    values = [
        kid(real, rng.normal(shift, 1.0, size=(600, 64)), subsets=20, subset_size=300)[0] for shift in (0, 0.1, 0.3)
    ]
    assert abs(values[0]) < 0.2 * values[1] and values[1] < values[2]


# --- the Inception network and its weights file ---------------------------------------------------------


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory):
    """A file in the format of pt_inception-2015-12-05 (same keys and shapes) holding random weights."""
    torch.manual_seed(0)
    net = FIDInceptionV3()
    for m in net.modules():  # non-trivial BN statistics, so a wrongly wired BN would change the features
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("weights") / INCEPTION_FILE
    torch.save(state, path)
    return path


@pytest.fixture
def no_weights(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GANIME_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GANIME_INCEPTION_WEIGHTS", raising=False)
    return tmp_path / "cache"


def images(n: int, seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_missing_weights_error_names_the_file_where_to_put_it_and_the_extra(no_weights) -> None:
    with pytest.raises(MissingWeightsError) as err:
        compute("fid", images(4, 0), images(4, 1))
    message = str(err.value)
    assert "\n" not in message
    assert INCEPTION_FILE in message and str(no_weights / INCEPTION_FILE) in message
    assert "--inception-weights" in message and "ganime[fid]" in message and "pytorch-fid" in message


def test_explicit_weights_path_that_does_not_exist_is_reported(no_weights, tmp_path) -> None:
    with pytest.raises(MissingWeightsError, match="nowhere.pth"):
        compute("kid", images(4, 0), images(4, 1), inception_weights=tmp_path / "nowhere.pth")


def test_a_file_that_is_not_the_inception_weights_is_refused(tmp_path) -> None:
    bad = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(MissingWeightsError, match="is not the FID Inception weights"):
        load_inception(bad, prefer_pytorch_fid=False)
    (tmp_path / "page.pth").write_text("<html>404</html>")
    with pytest.raises(MissingWeightsError, match="could not read"):
        load_inception(tmp_path / "page.pth", prefer_pytorch_fid=False)


def test_fid_kid_run_from_local_weights_and_cache_the_real_statistics(weights_file, tmp_path, monkeypatch) -> None:
    # 75 px (Inception-v3's smallest input) instead of 299: the plumbing is under test here, and 16x cheaper
    monkeypatch.setattr(inception, "INPUT_SIZE", 75)
    real, fake = images(8, 0), images(8, 1)  # pr scores halves of the reals: 4 against 4
    kw = {"inception_weights": weights_file, "cache_dir": tmp_path / "stats", "real_key": "set-a-16px"}
    first = compute("fid,kid,pr", real, fake, **kw)
    assert first["fid"] > 0 and np.isfinite(first["kid"]) and first["pr_features"] == "inception-pool3"
    assert len(list((tmp_path / "stats").glob("*.npz"))) == 1
    # Same key: the real statistics come from the cache, so different "real" pixels change nothing.
    cached = compute("fid", np.zeros_like(real), fake, **kw)
    assert cached["fid"] == pytest.approx(first["fid"], rel=1e-9)
    # The cached real statistics against the same images as fakes: FID 0 (the features are deterministic).
    assert compute("fid", real, real, **kw)["fid"] == pytest.approx(0.0, abs=1e-6)


def test_pytorch_fid_network_gives_the_same_features(weights_file) -> None:
    pytest.importorskip("pytorch_fid")
    _, origin = build_network(prefer_pytorch_fid=True)
    assert origin == "pytorch-fid"
    ours = load_inception(weights_file, prefer_pytorch_fid=False)
    theirs = load_inception(weights_file, prefer_pytorch_fid=True)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)
