"""Diversity: mean pairwise feature distance and L1Div on keypoints, on hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from mmgt.constants import NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError
from mmgt.evaluation.diversity import diversity, pose_diversity

FEATURES = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])


def test_mean_pairwise_l1():
    # pairs: |(1, 0)| = 1, |(0, 2)| = 2, |(1, -2)| = 3
    assert diversity(FEATURES) == pytest.approx(2.0)


def test_mean_pairwise_l2():
    assert diversity(FEATURES, metric="l2") == pytest.approx((1.0 + 2.0 + np.sqrt(5.0)) / 3)


def test_identical_samples_have_zero_diversity():
    assert diversity(np.ones((5, 4))) == 0.0


def _one_point_poses(points: list[list[float]], visible: list[bool]) -> np.ndarray:
    """(F, 134, 3) array with keypoint 0 at ``points`` and every other keypoint invisible."""
    array = np.zeros((len(points), NUM_KEYPOINTS, 3))
    array[:, 0, :2] = points
    array[:, 0, 2] = np.where(visible, 1.0, 0.0)
    return array


def test_l1div_of_two_frames():
    # mean pose (1, 2); each frame deviates by |1| + |2| = 3
    assert pose_diversity([_one_point_poses([[0, 0], [2, 4]], [True, True])]) == pytest.approx(3.0)


def test_l1div_pools_samples_and_ignores_invisible_points():
    a = _one_point_poses([[0, 0], [500, 500]], [True, False])  # the 500 px frame is a missed detection
    b = _one_point_poses([[2, 4]], [True])
    assert pose_diversity([a, b]) == pytest.approx(3.0)


def test_l1div_is_per_keypoint():
    # Two keypoints moving the same way give the same value as one.
    keypoints = np.zeros((2, NUM_KEYPOINTS, 2))
    keypoints[1, :2] = [2.0, 4.0]
    scores = np.zeros((2, NUM_KEYPOINTS))
    scores[:, :2] = 1.0
    assert pose_diversity([PoseSequence(keypoints, scores, 512, 512)]) == pytest.approx(3.0)


def test_bad_inputs_raise():
    with pytest.raises(MmgtError, match="N >= 2"):
        diversity(np.ones((1, 3)))
    with pytest.raises(MmgtError, match="metric"):
        diversity(FEATURES, metric="cosine")
    with pytest.raises(MmgtError, match="at least one"):
        pose_diversity([])
    with pytest.raises(MmgtError, match="no keypoint is visible"):
        pose_diversity([np.zeros((2, NUM_KEYPOINTS, 3))])
    with pytest.raises(MmgtError, match=r"poses\[1\]"):
        pose_diversity([np.zeros((2, NUM_KEYPOINTS, 2)), np.zeros((2, 10, 2))])
