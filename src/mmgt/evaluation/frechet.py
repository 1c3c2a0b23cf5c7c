"""Fréchet distance between Gaussians fitted to feature sets: the maths behind FID, FVD and FGD (spec §9).

Pure functions on feature arrays, kept apart from the networks that produce the features (STYLE §1.6, k-diffusion's
pattern): :mod:`mmgt.evaluation.pose_autoencoder` supplies FGD features, image/video extractors supply FID/FVD ones.

    d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))          (Dowson & Landau 1982; Heusel et al. 2017)
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from mmgt.errors import MmgtError

# Tolerated imaginary part of the matrix square root's diagonal; larger means the covariances are not PSD.
_IMAG_TOLERANCE = 1e-3


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a feature set.

    Args:
        features: (N, D) array, one feature vector per sample; N >= 2.

    Returns:
        ``(mu, sigma)``: (D,) mean and (D, D) unbiased covariance (float64).
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise MmgtError(f"features: expected an (N, D) array, got shape {features.shape}")
    if features.shape[0] < 2:
        raise MmgtError(f"features: need at least 2 samples for a covariance, got {features.shape[0]}")
    if not np.isfinite(features).all():
        raise MmgtError("features: contain NaN or infinite values")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def _sqrtm_product(sigma1: np.ndarray, sigma2: np.ndarray) -> np.ndarray | None:
    """(S1 S2)^(1/2), or None when the product is singular or the root is not finite."""
    with warnings.catch_warnings():
        # Scoped: only here is a singular product an expected case, handled by the caller's eps retry.
        warnings.simplefilter("error", linalg.LinAlgWarning)
        try:
            root = linalg.sqrtm(sigma1 @ sigma2)
        except (linalg.LinAlgError, linalg.LinAlgWarning):
            return None
    return root if np.isfinite(root).all() else None


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    Args:
        mu1, mu2: (D,) means.
        sigma1, sigma2: (D, D) covariances (symmetric positive semi-definite).
        eps: diagonal offset added to both covariances if their product is singular (fewer samples than feature
            dimensions, or constant features), as FID implementations do.

    Returns:
        The distance, >= 0 (the value is a squared distance, as FID/FGD are reported).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    for name, value, shape in (("mu2", mu2, (d,)), ("sigma1", sigma1, (d, d)), ("sigma2", sigma2, (d, d))):
        if value.shape != shape:
            raise MmgtError(f"{name}: expected shape {shape} to match mu1, got {value.shape}")

    root = _sqrtm_product(sigma1, sigma2)
    if root is None:
        offset = eps * np.eye(d)
        root = _sqrtm_product(sigma1 + offset, sigma2 + offset)
        if root is None:
            raise MmgtError(f"covariances: no finite square root of their product even with eps={eps}")
    if np.iscomplexobj(root):
        # Tiny imaginary parts are rounding error of sqrtm on a PSD product; large ones mean broken input.
        if not np.allclose(np.diagonal(root).imag, 0.0, atol=_IMAG_TOLERANCE):
            raise MmgtError(f"covariances: square root has imaginary part {np.abs(root.imag).max():.3g}; not PSD?")
        root = root.real

    diff = mu1 - mu2
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root)
    # Identical inputs give ~-1e-12 from rounding; a squared distance is never negative.
    return max(float(distance), 0.0)


def frechet_distance_from_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets (N may differ, D must match)."""
    mu_a, sigma_a = gaussian_stats(features_a)
    mu_b, sigma_b = gaussian_stats(features_b)
    if mu_a.shape != mu_b.shape:
        raise MmgtError(f"features: dimension {mu_a.shape[0]} vs {mu_b.shape[0]}; both sets need the same D")
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
