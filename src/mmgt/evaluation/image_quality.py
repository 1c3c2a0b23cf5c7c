"""Frame-level image quality: PSNR and SSIM of generated frames against ground truth (spec §9).

Pure numpy/scipy functions on arrays; SSIM is the standard Gaussian-window form of Wang et al. (2004) with the
constants everyone reports (sigma 1.5, K1 0.01, K2 0.03, population covariances), so numbers are comparable with
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from mmgt.errors import MmgtError

SSIM_SIGMA = 1.5  # Wang et al. 2004: 11x11 Gaussian window, sigma 1.5
SSIM_TRUNCATE = 3.5  # window radius = int(3.5 * 1.5 + 0.5) = 5 -> 11 taps, as skimage
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _as_frames(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate two images/videos of equal shape; return float64 (N, H, W, C) views."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise MmgtError(f"image quality: pred {pred.shape} and target {target.shape} differ in shape")
    if pred.ndim not in (2, 3, 4) or pred.size == 0:
        raise MmgtError(f"image quality: expected (H, W), (H, W, C) or (N, H, W, C) arrays, got shape {pred.shape}")
    if pred.ndim == 2:
        pred, target = pred[..., None], target[..., None]  # (H, W, 1)
    if pred.ndim == 3:
        pred, target = pred[None], target[None]  # (1, H, W, C)
    return pred.astype(np.float64), target.astype(np.float64)


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB, averaged over frames.

    Args:
        pred: (H, W), (H, W, C) or (N, H, W, C) image(s), e.g. uint8 in [0, 255].
        target: the ground truth, same shape.
        data_range: max - min of the pixel scale (255 for uint8, 2 for [-1, 1]).

    Returns:
        mean over frames of 10 log10(data_range^2 / MSE); ``inf`` when every frame is identical.
    """
    pred, target = _as_frames(pred, target)
    mse = ((pred - target) ** 2).mean(axis=(1, 2, 3))  # (N,)
    with np.errstate(divide="ignore"):
        per_frame = 10.0 * np.log10(data_range**2 / mse)  # identical frames: +inf
    return float(per_frame.mean())


def masked_psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB over the pixels where ``mask`` is true, pooled over frames (NaN when the mask is empty).

    Args:
        pred, target: (N, H, W, C) images.
        mask: (N, H, W) bool, e.g. the face and hand boxes of ``mmgt.pose.masks.motion_masks``.
    """
    pred, target = _as_frames(pred, target)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != pred.shape[:3]:
        raise MmgtError(f"masked PSNR: mask {mask.shape} does not match images {pred.shape[:3]}")
    if not mask.any():
        return float("nan")
    mse = ((pred - target) ** 2)[mask].mean()
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


def ssim(pred: np.ndarray, target: np.ndarray, data_range: float = 255.0) -> float:
    """Structural similarity with an 11x11 Gaussian window (sigma 1.5), averaged over channels and frames.

    SSIM map = ((2 mu_x mu_y + C1)(2 cov_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2)) with
    C1 = (K1 L)^2, C2 = (K2 L)^2, local statistics from Gaussian filtering (reflected borders); the mean is taken
    over the pixels at least 5 px from the border, where the window fits.

    Args:
        pred: (H, W), (H, W, C) or (N, H, W, C) image(s); H and W at least 11.
        target: the ground truth, same shape.
        data_range: max - min of the pixel scale (255 for uint8).

    Returns:
        mean SSIM in [-1, 1]; 1 for identical inputs.
    """
    pred, target = _as_frames(pred, target)
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    if min(pred.shape[1:3]) < 2 * radius + 1:
        raise MmgtError(f"ssim: images must be at least {2 * radius + 1} px on each side, got {pred.shape[1:3]}")
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    scores = []
    for x, y in zip(
        np.moveaxis(pred, -1, 1).reshape(-1, *pred.shape[1:3]),
        np.moveaxis(target, -1, 1).reshape(-1, *pred.shape[1:3]),
    ):
        scores.append(_ssim_channel(x, y, c1, c2)[radius:-radius, radius:-radius].mean())
    return float(np.mean(scores))


def _ssim_channel(x: np.ndarray, y: np.ndarray, c1: float, c2: float) -> np.ndarray:
    """(H, W) SSIM map of one channel."""

    def blur(a: np.ndarray) -> np.ndarray:
        return gaussian_filter(a, sigma=SSIM_SIGMA, truncate=SSIM_TRUNCATE)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2  # population (biased) local variances, as in Wang et al.
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
