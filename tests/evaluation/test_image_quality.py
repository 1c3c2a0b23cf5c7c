"""PSNR/SSIM: closed-form PSNR values and SSIM parity with scikit-image (a dev-only dependency)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmgt.errors import MmgtError
from mmgt.evaluation.image_quality import masked_psnr, psnr, ssim


def test_psnr_known_values():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 16, np.uint8)  # MSE = 256
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 256))
    assert psnr(a, a) == math.inf
    # (N, H, W, C): the mean of per-frame PSNRs (MSE 1 and 4), not the PSNR of the mean MSE.
    x = np.zeros((2, 3, 3, 1), np.float64)
    y = np.stack([np.ones((3, 3, 1)), np.full((3, 3, 1), 2.0)])
    assert psnr(x, y, data_range=1.0) == pytest.approx((0.0 + 10 * math.log10(1 / 4)) / 2)


def test_masked_psnr_counts_only_the_masked_pixels():
    target = np.zeros((2, 4, 4, 3), np.uint8)
    pred = target.copy()
    pred[:, :2] = 10  # the top half of both frames is off by 10
    pred[1, 3, 3] = 250  # one bad pixel outside the mask
    mask = np.zeros((2, 4, 4), bool)
    mask[:, :2] = True
    assert masked_psnr(pred, target, mask) == pytest.approx(20 * math.log10(255 / 10))
    assert masked_psnr(pred, target, ~mask) < masked_psnr(pred, target, mask)
    assert masked_psnr(target, target, mask) == math.inf
    assert math.isnan(masked_psnr(pred, target, np.zeros_like(mask)))
    with pytest.raises(MmgtError, match="does not match"):
        masked_psnr(pred, target, mask[:, :3])


def test_ssim_matches_skimage():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)
    noisy = np.clip(target + rng.normal(0, 20, target.shape), 0, 255).astype(np.uint8)
    expected = metrics.structural_similarity(
        noisy, target, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(noisy, target) == pytest.approx(expected, abs=1e-10)
    gray = metrics.structural_similarity(
        noisy[..., 0], target[..., 0], data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(noisy[..., 0], target[..., 0]) == pytest.approx(gray, abs=1e-10)
    # A video is the mean of its frames.
    video = ssim(np.stack([noisy, target]), np.stack([target, target]))
    assert video == pytest.approx((expected + 1.0) / 2, abs=1e-10)


def test_ssim_identical_is_one_and_inverted_is_low():
    img = np.tile(np.linspace(0, 255, 32), (32, 1))[..., None]
    assert ssim(img, img) == pytest.approx(1.0)
    assert ssim(img, 255 - img) < 0


def test_bad_inputs_raise():
    with pytest.raises(MmgtError, match=r"differ in shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(MmgtError, match=r"at least 11 px"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(MmgtError, match=r"expected \(H, W\)"):
        psnr(np.zeros(5), np.zeros(5))
