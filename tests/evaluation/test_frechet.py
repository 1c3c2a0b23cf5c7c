"""Fréchet distance: zero for identical sets, the closed form for known Gaussians, robust to singular covariances."""

from __future__ import annotations

import numpy as np
import pytest

from mmgt.errors import MmgtError
from mmgt.evaluation.frechet import frechet_distance, frechet_distance_from_features, gaussian_stats

MU1, VAR1 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 4.0, 9.0])
MU2, VAR2 = np.array([1.0, 1.0, 0.0]), np.array([4.0, 1.0, 1.0])
# |mu1 - mu2|^2 = 1 + 0 + 4; sum(s1 + s2 - 2 sqrt(s1 s2)) = (1 + 4 - 4) + (4 + 1 - 4) + (9 + 1 - 6) = 6
EXPECTED = 11.0


def _rotation(d: int, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def test_identical_feature_sets_give_zero(rng):
    features = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6))
    assert frechet_distance_from_features(features, features) == pytest.approx(0.0, abs=1e-8)


def test_diagonal_gaussians_match_the_closed_form():
    assert frechet_distance(MU1, np.diag(VAR1), MU2, np.diag(VAR2)) == pytest.approx(EXPECTED, rel=1e-9)


def test_distance_is_invariant_to_a_common_rotation():
    # Rotated covariances are full matrices, so this exercises sqrtm on a non-diagonal product.
    q = _rotation(3)
    d = frechet_distance(q @ MU1, q @ np.diag(VAR1) @ q.T, q @ MU2, q @ np.diag(VAR2) @ q.T)
    assert d == pytest.approx(EXPECTED, rel=1e-6)


def test_scalar_gaussians():
    # (0 - 3)^2 + 1 + 4 - 2 * sqrt(1 * 4) = 10
    assert frechet_distance(0.0, 1.0, 3.0, 4.0) == pytest.approx(10.0)


def test_features_from_known_gaussians_approach_the_closed_form(rng):
    a = MU1 + np.sqrt(VAR1) * rng.standard_normal((20_000, 3))
    b = MU2 + np.sqrt(VAR2) * rng.standard_normal((15_000, 3))
    assert frechet_distance_from_features(a, b) == pytest.approx(EXPECTED, rel=0.05)


def test_gaussian_stats_are_mean_and_unbiased_covariance():
    features = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    mu, sigma = gaussian_stats(features)
    np.testing.assert_allclose(mu, [1.0, 1.0])
    np.testing.assert_allclose(sigma, [[4 / 3, 0.0], [0.0, 4 / 3]])


def test_singular_covariances_are_exact(rng):
    # 3 samples in 5 dimensions: rank-2 covariances, a singular product.
    a = rng.standard_normal((3, 5))
    assert frechet_distance_from_features(a, a) == pytest.approx(0.0, abs=1e-4)
    d = frechet_distance_from_features(a, a + 1.0)
    assert d == pytest.approx(5.0, abs=1e-3)  # same spread, means 1 apart in each of 5 dims


def test_bad_inputs_raise_with_the_argument_name():
    with pytest.raises(MmgtError, match="at least 2 samples"):
        gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(MmgtError, match="features"):
        gaussian_stats(np.zeros(5))
    with pytest.raises(MmgtError, match="sigma2"):
        frechet_distance(MU1, np.eye(3), MU2, np.eye(2))
    with pytest.raises(MmgtError, match="dimension 3 vs 2"):
        frechet_distance_from_features(np.ones((4, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(np.array([[0.0, np.nan], [1.0, 1.0]]))


def test_trace_root_equals_scipy_sqrtm_of_the_product(rng):
    # pytorch-fid takes tr(sqrtm(S1 S2)); the symmetric form must give the same number on full-rank covariances.
    from scipy import linalg

    from mmgt.evaluation.frechet import trace_sqrt_product

    s1 = np.cov(rng.standard_normal((200, 40)) @ rng.standard_normal((40, 40)), rowvar=False)
    s2 = np.cov(rng.standard_normal((150, 40)) @ rng.standard_normal((40, 40)), rowvar=False)
    expected = np.trace(linalg.sqrtm(s1 @ s2)).real
    assert trace_sqrt_product(s1, s2) == pytest.approx(expected, rel=1e-9)


def test_a_matrix_that_is_not_a_covariance_is_refused():
    with pytest.raises(MmgtError, match="sigma1: not positive semi-definite"):
        frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
