"""smga_loss: hand-computed position, velocity and acceleration terms (spec §3.5)."""

from __future__ import annotations

import pytest
import torch

from mmgt.constants import FACE, NUM_KEYPOINTS
from mmgt.diffusion import smga_loss
from mmgt.errors import MmgtError

K = NUM_KEYPOINTS


def _frames(num_frames=4):
    return torch.arange(num_frames, dtype=torch.float64).view(1, num_frames, 1, 1)  # (1, F, 1, 1): frame index f


def test_constant_offset_only_costs_position():
    target = torch.rand(2, 5, K, 3, dtype=torch.float64)
    terms = smga_loss(target + 0.5, target, FACE)
    assert terms["pos"].item() == pytest.approx(0.25) and terms["face_pos"].item() == pytest.approx(0.25)
    for name in ("vel", "acc", "face_vel", "face_acc"):
        assert terms[name].item() == pytest.approx(0.0, abs=1e-12)
    assert terms["loss"].item() == pytest.approx(0.25 + 3 * 0.25)


def test_face_terms_only_see_face_keypoints():
    target = torch.zeros(1, 4, K, 3, dtype=torch.float64)
    pred = target.clone()
    pred[:, :, list(FACE)] = 0.5
    terms = smga_loss(pred, target, FACE, face_weight=2.0)
    assert terms["face_pos"].item() == pytest.approx(0.25)
    assert terms["pos"].item() == pytest.approx(0.25 * len(FACE) / K)
    assert terms["loss"].item() == pytest.approx(0.25 * len(FACE) / K + 2.0 * 0.25)

    pred = target.clone()
    pred[:, :, 0] = 1.0  # a body-only error leaves every face term at zero
    terms = smga_loss(pred, target, FACE)
    assert terms["face_pos"].item() == 0.0 and terms["pos"].item() == pytest.approx(1 / K)


def test_linear_ramp_has_velocity_but_no_acceleration():
    target = torch.zeros(1, 4, K, 3, dtype=torch.float64)
    terms = smga_loss(target + 0.1 * _frames(4), target, FACE)
    assert terms["pos"].item() == pytest.approx(0.01 * (0 + 1 + 4 + 9) / 4)  # mean of (0.1 f)^2
    assert terms["vel"].item() == pytest.approx(0.01)
    assert terms["acc"].item() == pytest.approx(0.0, abs=1e-15)


def test_quadratic_has_constant_acceleration():
    target = torch.zeros(1, 5, K, 3, dtype=torch.float64)
    terms = smga_loss(target + 0.1 * _frames(5) ** 2, target, FACE)  # Δ = 0.1 (2f + 1), Δ² = 0.2
    assert terms["vel"].item() == pytest.approx(0.01 * (1 + 9 + 25 + 49) / 4)
    assert terms["acc"].item() == pytest.approx(0.04)
    assert terms["face_acc"].item() == pytest.approx(0.04)


def test_bad_shapes_raise():
    x = torch.zeros(1, 4, K, 3)
    with pytest.raises(MmgtError, match="share a"):
        smga_loss(x, x[:, :3], FACE)
    with pytest.raises(MmgtError, match="at least 3 frames"):
        smga_loss(x[:, :2], x[:, :2], FACE)
    with pytest.raises(MmgtError, match="face_indices"):
        smga_loss(x, x, [200])
