"""Pose rendering: known keypoints -> known pixel colours (OpenPose/ControlNet style)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from mmgt.constants import BODY_INDEX, FACE, FEET, JAW, LEFT_HAND, LIPS, NUM_KEYPOINTS, RIGHT_HAND
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError
from mmgt.pose.render import MOUTH_POINTS, iter_pose_frames, render_pose, render_pose_sequence

NECK, R_SHOULDER = BODY_INDEX["neck"], BODY_INDEX["right_shoulder"]
BLACK, WHITE, BLUE = [0, 0, 0], [255, 255, 255], [0, 0, 255]
NECK_SHOULDER_LIMB = [153, 0, 0]  # limb 0's colour (255, 0, 0) dimmed to 60 %, as ControlNet draws it
NECK_JOINT, R_SHOULDER_JOINT = [255, 85, 0], [255, 170, 0]  # OpenPose colours 1 and 2


def arrays(points: dict[int, tuple[float, float]], score: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    keypoints = np.zeros((NUM_KEYPOINTS, 2), dtype=np.float32)
    scores = np.zeros(NUM_KEYPOINTS, dtype=np.float32)
    for index, xy in points.items():
        keypoints[index], scores[index] = xy, score
    return keypoints, scores


def px(image: np.ndarray, x: int, y: int) -> list[int]:
    return image[y, x].tolist()


def test_horizontal_limb_colours_its_midpoint_and_nothing_far_away():
    image = render_pose(*arrays({NECK: (200, 256), R_SHOULDER: (312, 256)}), 512, 512)
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    assert px(image, 256, 256) == NECK_SHOULDER_LIMB
    assert px(image, 256, 260) == NECK_SHOULDER_LIMB  # half-width 4 at 512 px
    assert px(image, 256, 262) == BLACK
    assert px(image, 200, 256) == NECK_JOINT and px(image, 312, 256) == R_SHOULDER_JOINT
    assert px(image, 50, 50) == BLACK and px(image, 256, 400) == BLACK
    # Exactly three colours: black, the limb and the two joints.
    colours = {tuple(c) for c in image.reshape(-1, 3).tolist()}
    assert colours == {(0, 0, 0), tuple(NECK_SHOULDER_LIMB), tuple(NECK_JOINT), tuple(R_SHOULDER_JOINT)}


def test_invisible_endpoint_draws_no_limb():
    keypoints, scores = arrays({NECK: (200, 256), R_SHOULDER: (312, 256)})
    scores[R_SHOULDER] = 0.3  # visible means > 0.3
    image = render_pose(keypoints, scores, 512, 512)
    assert px(image, 256, 256) == BLACK and px(image, 312, 256) == BLACK
    assert px(image, 200, 256) == NECK_JOINT
    assert render_pose(keypoints, scores, 512, 512, threshold=0.2)[256, 256].tolist() == NECK_SHOULDER_LIMB


def test_legs_and_feet_are_never_drawn():
    hip, knee, ankle = BODY_INDEX["right_hip"], BODY_INDEX["right_knee"], BODY_INDEX["right_ankle"]
    points = {
        hip: (200, 300),
        knee: (200, 400),
        ankle: (200, 480),
        **{i: (300 + 10 * k, 470) for k, i in enumerate(FEET)},
    }
    image = render_pose(*arrays(points), 512, 512)
    assert px(image, 200, 300) == [0, 255, 170]  # the hip joint (OpenPose colour 8) is drawn
    assert not image[310:].any()  # but nothing below it: no thigh, shin, knee, ankle or feet


def test_face_landmarks_are_white_dots():
    keypoints, scores = arrays({FACE[0]: (100, 100), FACE[40]: (300, 120)})
    image = render_pose(keypoints, scores, 512, 512)
    assert px(image, 100, 100) == WHITE and px(image, 103, 100) == WHITE and px(image, 300, 120) == WHITE
    assert px(image, 105, 100) == BLACK
    assert image.sum() == 2 * image[90:111, 90:111].sum()  # two identical dots, nothing else
    assert not render_pose(keypoints, scores, 512, 512, draw_face=False).any()


def test_mouth_false_leaves_out_exactly_the_jaw_and_lip_dots():
    # A lip point (face 48) and a chin point (face 8, on the jaw line) at y = 300, an eye point (face 40), a hand
    # joint between them: only the two mouth dots may go.
    points = {LIPS[0]: (200, 300), JAW[8]: (220, 300), FACE[40]: (300, 120), LEFT_HAND[0]: (210, 300)}
    keypoints, scores = arrays(points)
    full = render_pose(keypoints, scores, 512, 512)
    bare = render_pose(keypoints, scores, 512, 512, mouth=False)
    assert px(full, 200, 300) == WHITE and px(full, 220, 300) == WHITE
    assert px(bare, 200, 300) == BLACK and px(bare, 220, 300) == BLACK  # the lip and chin dots are gone
    assert px(bare, 300, 120) == WHITE and px(bare, 210, 300) == BLUE  # the eye dot and the hand are not
    changed = np.argwhere((full != bare).any(axis=-1))  # (n, 2) y, x
    assert len(changed) and {tuple(full[y, x]) for y, x in changed} == {(255, 255, 255)}
    assert all(min(abs(x - 200), abs(x - 220)) <= 3 and abs(y - 300) <= 3 for y, x in changed)  # only those dots
    assert sorted(MOUTH_POINTS) == [*range(24, 41), *range(72, 92)]  # jaw line 0-16 and lips 48-67 of the face
    pose = PoseSequence(keypoints[None], scores[None], 512, 512)
    np.testing.assert_array_equal(render_pose_sequence(pose, mouth=False)[0], bare)
    np.testing.assert_array_equal(next(iter_pose_frames(pose, mouth=False)), bare)


def test_hand_edges_in_rainbow_colours_with_blue_joints():
    points = {LEFT_HAND[0]: (100, 400), LEFT_HAND[1]: (160, 400), RIGHT_HAND[0]: (300, 400), RIGHT_HAND[5]: (360, 400)}
    keypoints, scores = arrays(points)
    image = render_pose(keypoints, scores, 512, 512)
    assert px(image, 130, 400) == [255, 0, 0]  # edge 0 (wrist-thumb): hue 0
    assert px(image, 330, 400) == [204, 255, 0]  # edge 4 (wrist-index): hue 4/20
    assert px(image, 100, 400) == BLUE and px(image, 160, 400) == BLUE and px(image, 360, 400) == BLUE
    assert px(image, 130, 403) == BLACK  # 2 px wide
    assert not render_pose(keypoints, scores, 512, 512, draw_hands=False).any()


def make_sequence(frames: int = 3, width: int = 512, height: int = 512) -> PoseSequence:
    keypoints = np.zeros((frames, NUM_KEYPOINTS, 2), dtype=np.float32)
    scores = np.zeros((frames, NUM_KEYPOINTS), dtype=np.float32)
    for f in range(frames):
        keypoints[f, NECK], keypoints[f, R_SHOULDER] = (200, 256 + 8 * f), (312, 256 + 8 * f)
        keypoints[f, FACE[0]] = (100 + 4 * f, 100)
        scores[f, [NECK, R_SHOULDER, FACE[0]]] = 0.9
    return PoseSequence(keypoints, scores, width, height)


def test_sequence_renders_every_frame_at_the_pose_size_by_default():
    pose = make_sequence()
    frames = render_pose_sequence(pose)
    assert frames.shape == (3, 512, 512, 3) and frames.dtype == np.uint8
    for f in range(3):
        np.testing.assert_array_equal(frames[f], render_pose(pose.keypoints[f], pose.scores[f], 512, 512))
    assert [px(frames[f], 256, 256 + 8 * f) for f in range(3)] == [NECK_SHOULDER_LIMB] * 3


def test_iter_pose_frames_yields_the_same_frames_lazily():
    pose = make_sequence()
    frames = iter_pose_frames(pose, 128, 96)
    assert isinstance(frames, types.GeneratorType)
    np.testing.assert_array_equal(np.stack(list(frames)), render_pose_sequence(pose, 128, 96))


def test_other_size_rescales_coordinates_and_strokes():
    pose = make_sequence(frames=1)
    small = render_pose_sequence(pose, width=128, height=128)
    assert small.shape == (1, 128, 128, 3)
    np.testing.assert_array_equal(small[0], render_pose(pose.keypoints[0] / 4, pose.scores[0], 128, 128))
    # The limb now runs from (50, 64) to (78, 64) with half-width 1 (4 * 128 / 512).
    assert px(small[0], 64, 64) == NECK_SHOULDER_LIMB and px(small[0], 64, 65) == NECK_SHOULDER_LIMB
    assert px(small[0], 64, 67) == BLACK
    wide = render_pose_sequence(pose, width=1024, height=512)  # x doubles, y stays
    assert wide.shape == (1, 512, 1024, 3) and px(wide[0], 512, 256) == NECK_SHOULDER_LIMB


def test_bad_inputs_raise_mmgt_errors():
    with pytest.raises(MmgtError, match="render_pose.*keypoints"):
        render_pose(np.zeros((10, 2)), np.zeros(10), 64, 64)
    with pytest.raises(MmgtError, match="width"):
        render_pose(*arrays({}), 0, 64)
    with pytest.raises(MmgtError, match="height"):
        render_pose_sequence(make_sequence(frames=1), height=-2)
