"""HKC and HKV on constructed poses: confidences averaged over hand points, variance of visible hand positions."""

from __future__ import annotations

import numpy as np
import pytest

from mmgt.constants import HANDS, LEFT_HAND, NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.evaluation.hands import hand_confidence, hand_variance


def _pose(frames: int = 4) -> PoseSequence:
    return PoseSequence(np.zeros((frames, NUM_KEYPOINTS, 2)), np.zeros((frames, NUM_KEYPOINTS)), 200, 100)


def test_hkc_is_the_mean_hand_confidence_over_all_frames():
    pose = _pose()
    pose.scores[:2, list(LEFT_HAND)] = 0.9  # left hand seen in half the frames, the right one never
    assert hand_confidence(pose) == pytest.approx(0.9 * 0.5 * 0.5)


def test_hkv_is_the_variance_of_visible_hand_positions_in_frame_units():
    pose = _pose()
    idx = list(HANDS)
    pose.scores[:, idx] = 1.0
    pose.keypoints[:, idx, 0] = np.array([0.0, 20.0, 0.0, 20.0])[:, None]  # x swings 20 px: 0.1 of the 200 px side
    assert hand_variance(pose) == pytest.approx(np.var([0, 0.1, 0, 0.1], ddof=1))
    pose.scores[1:, idx] = 0.0  # each point seen once: no variance to measure
    assert np.isnan(hand_variance(pose))
    still = _pose()
    still.scores[:, idx] = 1.0
    assert hand_variance(still) == 0.0
