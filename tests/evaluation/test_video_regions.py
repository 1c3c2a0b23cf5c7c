"""Mouth measurements located by the driving keypoints (mmgt.evaluation.video_regions)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mmgt.constants import FACE_OFFSET, LEFT_HAND, NUM_KEYPOINTS, RIGHT_HAND
from mmgt.contracts import PoseSequence
from mmgt.evaluation.video_regions import hand_psnr, mouth_activity, mouth_crops

SIZE = 128
MOUTH_Y = 74.0  # mouth line of the test face
LOWER_LIP = [FACE_OFFSET + j for j in (*range(55, 60), *range(65, 68))]  # points that drop as the mouth opens


def _face_keypoints(opening: float) -> np.ndarray:
    """(K, 2) a frontal face: outer eye corners (50, 50) and (78, 50), nose x = 64, lips 54..74 at y = 74."""
    kp = np.zeros((NUM_KEYPOINTS, 2), np.float32)
    kp[FACE_OFFSET + 36], kp[FACE_OFFSET + 45] = (50, 50), (78, 50)
    for j, y in zip(range(27, 36), np.linspace(50, 62, 9)):
        kp[FACE_OFFSET + j] = (64, y)
    for j, x in zip(range(48, 60), np.linspace(54, 74, 12)):  # outer lips
        kp[FACE_OFFSET + j] = (x, MOUTH_Y)
    for j, x in zip(range(60, 68), np.linspace(57, 71, 8)):  # inner lips
        kp[FACE_OFFSET + j] = (x, MOUTH_Y)
    kp[LOWER_LIP, 1] += opening
    return kp


def _draw(opening: float) -> np.ndarray:
    """(S, S, 3) uint8: a skin ellipse, eyes, nose and a mouth that is a dark hole ``opening`` px high."""
    img = np.full((SIZE, SIZE, 3), 110, np.uint8)
    cv2.ellipse(img, (64, 64), (30, 40), 0, 0, 360, (200, 160, 130), -1)
    for x in (56, 72):
        cv2.circle(img, (x, 50), 3, (40, 40, 40), -1)
    cv2.line(img, (64, 52), (64, 62), (170, 120, 100), 2)
    cv2.line(img, (54, int(MOUTH_Y)), (74, int(MOUTH_Y)), (150, 60, 60), 2)
    if opening > 0:
        cv2.ellipse(img, (64, int(MOUTH_Y + opening / 2)), (9, int(opening / 2)), 0, 0, 360, (60, 20, 25), -1)
    return img


def _poses(keypoints: list[np.ndarray]) -> PoseSequence:
    kp = np.stack(keypoints)
    scores = np.zeros(kp.shape[:2], np.float32)
    scores[:, FACE_OFFSET : FACE_OFFSET + 68] = 1.0
    return PoseSequence(kp, scores, SIZE, SIZE)


def test_a_closed_mouth_reads_zero_however_far_the_lip_keypoints_open():
    # The driving keypoints open while the video's mouth stays shut (a model ignoring the lips): the window is fixed to
    # the head, so the pixels in it do not change. A window centred on each frame's lips would slide down 4 px.
    openings = [0, 2, 4, 8, 0, 6, 0]
    frames = np.stack([_draw(0)] * len(openings))
    activity = mouth_activity(frames, _poses([_face_keypoints(o) for o in openings]))
    np.testing.assert_array_equal(activity, np.zeros(len(openings), np.float32))


def test_activity_rises_with_the_drawn_opening():
    openings = [0, 0, 0, 0, 0, 2, 4, 6, 8]
    frames = np.stack([_draw(o) for o in openings])
    activity = mouth_activity(frames, _poses([_face_keypoints(o) for o in openings]))
    assert np.all(activity[:5] == 0)  # the closed mouth is the clip's median
    assert np.all(np.diff(activity[4:]) > 0.005), activity


def test_window_follows_head_translation_roll_and_scale():
    base_kp = _face_keypoints(0)
    frames, keypoints = [_draw(0)], [base_kp]
    for angle, scale, shift in ((10, 1.0, (0, 0)), (-8, 1.1, (6, -4)), (0, 0.9, (-5, 3))):
        m = cv2.getRotationMatrix2D((64.0, 56.0), angle, scale)
        m[:, 2] += shift
        frames.append(cv2.warpAffine(_draw(0), m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderValue=(110, 110, 110)))
        keypoints.append((base_kp @ m[:, :2].T + m[:, 2]).astype(np.float32))
    frames.append(_draw(8))  # the same head with the mouth open, for scale
    keypoints.append(_face_keypoints(8))
    activity = mouth_activity(np.stack(frames), _poses(keypoints))
    moved, opened = activity[1:4], activity[4]
    assert moved.max() < 0.2 * opened, (moved, opened)


def test_frames_without_a_visible_nose_give_nan():
    poses = _poses([_face_keypoints(0)] * 3)
    scores = poses.scores.copy()
    scores[1, FACE_OFFSET + 30] = 0.0
    crops = mouth_crops(np.stack([_draw(0)] * 3), poses.replace(scores=scores))
    assert np.isnan(crops[1]).all() and np.isfinite(crops[[0, 2]]).all()


def test_frames_and_poses_must_have_the_same_length():
    with pytest.raises(Exception, match="2 frames but 3 pose frames"):
        mouth_crops(np.stack([_draw(0)] * 2), _poses([_face_keypoints(0)] * 3))


def _hand_poses(frames: int, seen: bool = True) -> PoseSequence:
    """The left hand spans x 20..40, y 80..100 (box grown by 25 %: x 15..45, y 75..105); the right hand unseen."""
    kp = np.zeros((frames, NUM_KEYPOINTS, 2), np.float32)
    kp[:, LEFT_HAND] = np.stack(np.meshgrid(np.linspace(20, 40, 7), np.linspace(80, 100, 3)), -1).reshape(-1, 2)
    scores = np.zeros(kp.shape[:2], np.float32)
    scores[:, LEFT_HAND] = 1.0 if seen else 0.0
    scores[:, RIGHT_HAND] = 0.0
    return PoseSequence(kp, scores, SIZE, SIZE)


def test_hand_psnr_counts_only_the_hand_boxes():
    real = np.full((2, SIZE, SIZE, 3), 100, np.uint8)
    outside = real.copy()
    outside[:, :70] = 0  # everything above the hand box wrong
    assert hand_psnr(outside, real, _hand_poses(2)) == float("inf")
    inside = real.copy()
    inside[:, 75:105, 15:45] += 10  # every boxed pixel off by 10: MSE 100 -> 10 log10(255^2 / 100)
    assert hand_psnr(inside, real, _hand_poses(2)) == pytest.approx(10 * np.log10(255**2 / 100), abs=1e-9)
    half = real.copy()
    half[:, 75:90, 15:45] += 10  # half of the boxed pixels off: MSE 50
    assert hand_psnr(half, real, _hand_poses(2)) == pytest.approx(10 * np.log10(255**2 / 50), abs=1e-9)
    assert np.isnan(hand_psnr(inside, real, _hand_poses(2, seen=False)))
