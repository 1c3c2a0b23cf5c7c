"""Figure rendering: known poses -> known pixels (mouth, eyes, shirt, background), sizes, speed, errors."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from mmgt.constants import BODY_INDEX, FACE_OFFSET, LIPS
from mmgt.data.synthetic.body import BodyShape
from mmgt.data.synthetic.figure import Appearance, background, draw_figure, draw_frames, random_appearance
from mmgt.data.synthetic.speaker import NOISE_CURVES, AudioDrive, MotionPlan, pose_from_plan, rest_pose
from mmgt.errors import MmgtError

FLAT = Appearance(background=(200, 210, 220), background_pattern="flat")


def _mouth_poses(size: int):
    """Two frames of the rest pose: mouth closed (envelope 0) and fully open (envelope 1)."""
    drive = AudioDrive(
        np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0], np.float32), *(np.zeros(0, np.int64),) * 2, *(np.zeros(0),) * 2
    )
    plan = MotionPlan([], [], [], {k: np.zeros(6) for k in NOISE_CURVES}, (0.3, 0.3))
    pose = pose_from_plan(drive, plan, BodyShape(), size)
    return pose[1], pose[4]  # away from the smoothing edges


def _luma(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ [0.299, 0.587, 0.114]


def test_open_mouth_is_darker_than_closed():
    closed, opened = _mouth_poses(128)
    img_c = draw_figure(closed.keypoints[0], closed.scores[0], FLAT, 128)
    img_o = draw_figure(opened.keypoints[0], opened.scores[0], FLAT, 128)
    lips = opened.keypoints[0, list(LIPS)]
    (x0, y0), (x1, y1) = np.floor(lips.min(0)).astype(int), np.ceil(lips.max(0)).astype(int)
    dark_c = _luma(img_c[y0 : y1 + 1, x0 : x1 + 1]).mean()
    dark_o = _luma(img_o[y0 : y1 + 1, x0 : x1 + 1]).mean()
    assert dark_o < dark_c - 15, (dark_o, dark_c)
    # Away from the face the two frames are identical.
    np.testing.assert_array_equal(img_c[: y0 - 20], img_o[: y0 - 20])


def test_shirt_and_background_pixels_match_the_appearance():
    pose = rest_pose(BodyShape(), 128)
    kp = pose.keypoints[0]
    img = draw_figure(kp, pose.scores[0], FLAT, 128)
    chest = 0.5 * (kp[BODY_INDEX["neck"]] + 0.5 * (kp[BODY_INDEX["right_hip"]] + kp[BODY_INDEX["left_hip"]]))
    x, y = int(chest[0]) + 12, int(chest[1]) - 10  # beside the hands, below the neck
    assert tuple(img[y, x]) == FLAT.shirt
    assert tuple(img[2, 2]) == FLAT.background and tuple(img[-3, 2]) == FLAT.background
    face_centre = kp[FACE_OFFSET + 30]  # nose tip, between nostril lines and eyes: plain skin around it
    assert tuple(img[int(face_centre[1]) - 1, int(face_centre[0]) + 4]) == FLAT.skin


def test_two_identities_have_different_shirt_pixels():
    a = random_appearance(np.random.default_rng(0), shirt_hue=0.0)
    b = random_appearance(np.random.default_rng(1), shirt_hue=0.618)
    pose = rest_pose(BodyShape(), 96)
    kp = pose.keypoints[0]
    x, y = int(kp[BODY_INDEX["neck"], 0]) + 9, int(kp[BODY_INDEX["neck"], 1]) + 15
    pa, pb = draw_figure(kp, pose.scores[0], a, 96)[y, x], draw_figure(kp, pose.scores[0], b, 96)[y, x]
    assert tuple(pa) == a.shirt and tuple(pb) == b.shirt
    assert np.abs(pa.astype(int) - pb.astype(int)).sum() > 100


@pytest.mark.parametrize("size", [64, 512])
def test_sizes(size):
    pose = rest_pose(BodyShape(), size)
    img = draw_figure(pose.keypoints[0], pose.scores[0], FLAT, size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    # The figure covers a similar share of the image at every size (rendering is resolution independent).
    share = np.mean(np.any(img != FLAT.background, axis=2))
    assert 0.25 < share < 0.5


def test_invisible_points_are_not_drawn_and_patterns():
    pose = rest_pose(BodyShape(), 64)
    img = draw_figure(pose.keypoints[0], np.zeros(134), FLAT, 64)
    np.testing.assert_array_equal(img, background(FLAT, 64))
    stripes = background(replace(FLAT, background_pattern="stripes", background_accent=(0, 0, 0)), 64)
    assert tuple(stripes[0, 0]) == FLAT.background and tuple(stripes[0, 4]) == (0, 0, 0)  # 8 px period at 64
    grad = background(replace(FLAT, background_pattern="gradient", background_accent=(0, 0, 0)), 64)
    assert tuple(grad[0, 0]) == FLAT.background and tuple(grad[-1, 0]) == (0, 0, 0)
    with pytest.raises(MmgtError, match="pattern"):
        background(replace(FLAT, background_pattern="plaid"), 64)
    with pytest.raises(MmgtError, match="134"):
        draw_figure(np.zeros((133, 2)), np.zeros(133), FLAT, 64)


def test_draw_frames_matches_draw_figure():
    closed, opened = _mouth_poses(64)
    kp = np.concatenate([closed.keypoints, opened.keypoints])
    sc = np.concatenate([closed.scores, opened.scores])
    frames = draw_frames(kp, sc, FLAT, 64)
    assert frames.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(frames[1], draw_figure(kp[1], sc[1], FLAT, 64))


@pytest.mark.slow
def test_render_speed_128():
    pose = rest_pose(BodyShape(), 128)
    kp, sc = np.repeat(pose.keypoints, 200, axis=0), np.repeat(pose.scores, 200, axis=0)
    start = time.perf_counter()
    draw_frames(kp, sc, FLAT, 128)
    assert 200 / (time.perf_counter() - start) >= 100  # measured ~300 frames/s on one core
