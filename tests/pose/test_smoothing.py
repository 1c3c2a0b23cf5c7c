"""Temporal smoothing: known Savitzky-Golay/1-euro responses, confidence-aware gaps, spline boundary blending."""

from __future__ import annotations

import numpy as np
import pytest

from mmgt.constants import NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError
from mmgt.pose.smoothing import blend_boundaries, smooth_poses


def _pose(track_x: np.ndarray, scores: np.ndarray | None = None, fps: float = 25) -> PoseSequence:
    """Keypoint 0 follows ``track_x`` (y = 2 x); all other keypoints sit still at (50, 60)."""
    num_frames = len(track_x)
    kp = np.tile(np.float32([50, 60]), (num_frames, NUM_KEYPOINTS, 1))
    kp[:, 0, 0], kp[:, 0, 1] = track_x, 2 * np.asarray(track_x)
    sc = np.ones((num_frames, NUM_KEYPOINTS), np.float32) if scores is None else scores
    return PoseSequence(kp, sc, 512, 512, fps)


def _scores_with(num_frames: int, invisible: slice) -> np.ndarray:
    sc = np.ones((num_frames, NUM_KEYPOINTS), np.float32)
    sc[invisible, 0] = 0.0
    return sc


# ---------------------------------------------------------------------------------------------------------------------
# smooth_poses
# ---------------------------------------------------------------------------------------------------------------------
def test_savgol_impulse_response_is_the_known_kernel():
    track = np.zeros(21, np.float32)
    track[10] = 35.0
    out = smooth_poses(_pose(track), window=5, polyorder=2)
    # 5-point quadratic Savitzky-Golay coefficients: (-3, 12, 17, 12, -3) / 35
    np.testing.assert_allclose(out.keypoints[8:13, 0, 0], [-3, 12, 17, 12, -3], atol=1e-4)
    np.testing.assert_allclose(out.keypoints[:, 1], 50 + np.zeros((21, 2)) + [0, 10], atol=1e-4)  # still points


def test_savgol_keeps_quadratic_motion():
    t = np.arange(30, dtype=np.float32)
    track = 0.5 * t**2 - 3 * t + 7
    out = smooth_poses(_pose(track))
    np.testing.assert_allclose(out.keypoints[:, 0, 0], track, atol=1e-3)


def test_invisible_frame_does_not_pull_visible_ones_and_short_gap_is_filled():
    track = np.full(20, 100.0, np.float32)
    track[10] = 0.0  # undetected point parked at the origin
    pose = _pose(track, _scores_with(20, slice(10, 11)))
    out = smooth_poses(pose, max_gap=3)
    np.testing.assert_allclose(out.keypoints[:, 0, 0], 100.0, atol=1e-4)  # filled frame 10 too
    np.testing.assert_array_equal(out.scores, pose.scores)  # scores untouched: frame 10 stays invisible


def test_long_gap_is_not_filled_and_visible_runs_are_smoothed_separately():
    track = np.full(20, 100.0, np.float32)
    track[8:13] = 0.0
    pose = _pose(track, _scores_with(20, slice(8, 13)))
    out = smooth_poses(pose, max_gap=3)
    np.testing.assert_array_equal(out.keypoints[8:13, 0], 0.0)  # 5-frame gap: left as it was
    np.testing.assert_allclose(out.keypoints[:8, 0, 0], 100.0, atol=1e-4)
    np.testing.assert_allclose(out.keypoints[13:, 0, 0], 100.0, atol=1e-4)


def test_one_euro_matches_exponential_filter_when_beta_is_zero():
    track = np.r_[0.0, np.ones(9)].astype(np.float32)
    out = smooth_poses(_pose(track, fps=25), method="one_euro", min_cutoff=1.0, beta=0.0)
    alpha = 1 / (1 + 25 / (2 * np.pi))  # cut-off 1 Hz sampled at 25 fps
    expected = 1 - (1 - alpha) ** np.arange(10)
    np.testing.assert_allclose(out.keypoints[:, 0, 0], expected, rtol=1e-5)
    assert out.keypoints[1, 0, 0] == pytest.approx(0.2008, abs=1e-4)


def test_one_euro_leaves_constant_tracks_unchanged():
    out = smooth_poses(_pose(np.full(12, 42.0, np.float32)), method="one_euro")
    np.testing.assert_allclose(out.keypoints[:, 0, 0], 42.0, rtol=1e-6)


def test_smooth_poses_rejects_bad_arguments():
    pose = _pose(np.zeros(5, np.float32))
    with pytest.raises(MmgtError, match="unknown method 'gauss'"):
        smooth_poses(pose, method="gauss")
    with pytest.raises(MmgtError, match="polyorder < window"):
        smooth_poses(pose, window=3, polyorder=3)


# ---------------------------------------------------------------------------------------------------------------------
# blend_boundaries
# ---------------------------------------------------------------------------------------------------------------------
def test_step_becomes_continuous_and_far_frames_are_untouched():
    x = np.zeros((80, 3, 2), np.float32)
    x[40:] = 10.0  # a window boundary at frame 40 with a jump of 10
    out = blend_boundaries(x, [40], span=5, anchors=3)
    jump_before = np.abs(np.diff(x, axis=0)).max()
    jump_after = np.abs(np.diff(out, axis=0)).max()
    assert jump_after * 5 < jump_before
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out[:35], x[:35])  # frames outside 35..44 are bit-identical
    np.testing.assert_array_equal(out[45:], x[45:])
    assert not np.array_equal(out[35:45], x[35:45])


def test_spline_reproduces_a_straight_line():
    x = np.arange(40, dtype=np.float64)[:, None] * [1.0, -2.0]
    x_broken = x.copy()
    x_broken[15:25] = 999.0  # garbage inside the replaced span is ignored
    out = blend_boundaries(x_broken, [20], span=5, anchors=3)
    np.testing.assert_allclose(out, x, atol=1e-9)


def test_boundaries_without_anchors_on_one_side_are_skipped():
    x = np.random.default_rng(0).normal(size=(30, 4))
    np.testing.assert_array_equal(blend_boundaries(x, [0, 3, 30]), x)
    with pytest.raises(MmgtError, match=r"boundary 31 is outside \[0, 30\]"):
        blend_boundaries(x, [31])
