"""Keypoint L2/L1/PCK against ground truth: known offsets give known errors, only gt-visible points count."""

from __future__ import annotations

import numpy as np
import pytest

from mmgt.constants import FACE, LIPS, NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError
from mmgt.evaluation.keypoint_metrics import UPPER_BODY, group_indices, keypoint_l1, keypoint_l2, pck, pose_arrays


def _gt(rng, frames: int = 4) -> PoseSequence:
    keypoints = rng.uniform(100, 400, size=(frames, NUM_KEYPOINTS, 2))
    return PoseSequence(keypoints, np.ones((frames, NUM_KEYPOINTS)), 512, 512)


def test_constant_offset_gives_known_l2_and_l1(rng):
    gt = _gt(rng)
    pred = gt.replace(keypoints=gt.keypoints + np.array([3.0, 4.0]))
    assert keypoint_l2(pred, gt) == pytest.approx(5.0)
    assert keypoint_l1(pred, gt) == pytest.approx(7.0)


def test_points_invisible_in_gt_are_ignored(rng):
    gt = _gt(rng)
    scores = gt.scores.copy()
    scores[:, FACE] = 0.1  # below the 0.3 visibility threshold
    gt = gt.replace(scores=scores)
    keypoints = gt.keypoints + np.array([3.0, 4.0])
    keypoints[:, FACE] += 1000.0  # garbage where gt saw nothing
    pred = gt.replace(keypoints=keypoints, scores=np.zeros_like(scores))  # pred's own scores do not matter
    assert keypoint_l2(pred, gt) == pytest.approx(5.0)
    assert np.isnan(keypoint_l2(pred, gt, groups="face"))


def test_groups_restrict_the_points(rng):
    gt = _gt(rng)
    keypoints = gt.keypoints.copy()
    keypoints[:, LIPS, 0] += 10.0
    pred = gt.replace(keypoints=keypoints)
    assert keypoint_l2(pred, gt, groups="lips") == pytest.approx(10.0)
    assert keypoint_l2(pred, gt, groups="face") == pytest.approx(10.0 * 20 / 68)
    assert keypoint_l2(pred, gt, groups=["lips", "left_hand"]) == pytest.approx(10.0 * 20 / 41)
    assert keypoint_l2(pred, gt) == pytest.approx(10.0 * 20 / NUM_KEYPOINTS)


def test_arrays_with_and_without_scores(rng):
    gt = _gt(rng)
    gt3 = gt.as_array()
    gt3[:, :10, 2] = 0.0
    pred = gt.keypoints.copy()
    pred[:, :10] += 50.0  # only wrong where gt3 marks invisible
    pred[:, 10:] += np.array([0.0, 2.0])
    assert keypoint_l2(pred, gt3) == pytest.approx(2.0)
    assert keypoint_l1(pred, gt.keypoints) == pytest.approx((10 * 100.0 + 124 * 2.0) / 134)


def _pck_pair() -> tuple[PoseSequence, np.ndarray]:
    """gt whose upper body spans 100 x 50 px and whose face spans 40 x 20 px, in one frame."""
    keypoints = np.full((1, NUM_KEYPOINTS, 2), 250.0)
    keypoints[0, UPPER_BODY] = np.stack([np.linspace(200, 300, len(UPPER_BODY)), np.linspace(100, 150, 14)], -1)
    keypoints[0, FACE] = np.stack([np.linspace(230, 270, 68), np.linspace(60, 80, 68)], -1)
    gt = PoseSequence(keypoints, np.ones((1, NUM_KEYPOINTS)), 512, 512)
    offsets = np.where(np.arange(NUM_KEYPOINTS) % 2 == 0, 9.0, 11.0)  # half within 10 px, half not
    return gt, gt.keypoints + np.stack([offsets, np.zeros_like(offsets)], -1)


def test_pck_against_the_upper_body_box():
    gt, pred = _pck_pair()
    assert pck(pred, gt, alpha=0.1) == pytest.approx(0.5)  # threshold 0.1 * 100 = 10 px
    assert pck(pred, gt, alpha=0.2) == pytest.approx(1.0)
    assert pck(pred, gt, alpha=0.05) == pytest.approx(0.0)


def test_pck_against_the_face_box():
    gt, pred = _pck_pair()
    assert pck(pred, gt, alpha=0.25, reference="head") == pytest.approx(0.5)  # 0.25 * 40 = 10 px
    assert pck(pred, gt, alpha=0.2, reference="head") == pytest.approx(0.0)  # 8 px


def test_pck_skips_frames_without_a_reference_box():
    gt, pred = _pck_pair()
    scores = gt.scores.copy()
    scores[:, UPPER_BODY] = 0.0
    assert np.isnan(pck(pred, gt.replace(scores=scores)))


def test_bad_inputs_raise():
    a = np.zeros((3, NUM_KEYPOINTS, 2))
    with pytest.raises(MmgtError, match="pred has 2 frames, gt has 3"):
        keypoint_l2(a[:2], a)
    with pytest.raises(MmgtError, match="unknown keypoint group"):
        group_indices("tail")
    with pytest.raises(MmgtError, match="gt: expected"):
        keypoint_l1(a, np.zeros((3, 133, 2)))
    with pytest.raises(MmgtError, match="reference"):
        pck(a, a, reference="torso")
    with pytest.raises(MmgtError, match="alpha"):
        pck(a, a, alpha=0.0)
    small = PoseSequence(a, np.ones((3, NUM_KEYPOINTS)), 256, 256)
    with pytest.raises(MmgtError, match="rescale"):
        keypoint_l2(small, PoseSequence(a, np.ones((3, NUM_KEYPOINTS)), 512, 512))


def test_pose_arrays_visibility_threshold():
    array = np.zeros((1, NUM_KEYPOINTS, 3))
    array[0, :5, 2] = [0.0, 0.3, 0.31, 0.9, 1.0]
    _, visible = pose_arrays(array)
    assert visible[0, :5].tolist() == [False, False, True, True, True]
