"""Keypoint converters: index maps on known ids, neck insertion, MediaPipe mapping, PATS placement/resampling."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mmgt.constants import BODY_INDEX, BODY_NAMES, FACE, FEET, LEFT_HAND, NUM_KEYPOINTS, RIGHT_HAND
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError
from mmgt.pose.convert import (
    COCO_TO_OPENPOSE,
    FACE_MESH_TO_IBUG68,
    OPENPOSE_FROM_COCO,
    PATS_TO_MMGT,
    from_coco_wholebody,
    from_mediapipe_holistic,
    from_pats,
    pats_joints_from_flat,
    to_pose_sequence,
)

COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# COCO-WholeBody
# ---------------------------------------------------------------------------------------------------------------------
def test_coco_to_openpose_known_ids():
    assert COCO_TO_OPENPOSE[0] == 0  # nose
    assert COCO_TO_OPENPOSE[5] == 5  # left shoulder
    assert COCO_TO_OPENPOSE[6] == 2  # right shoulder
    assert COCO_TO_OPENPOSE[9] == 7  # left wrist
    assert COCO_TO_OPENPOSE[10] == 4  # right wrist
    assert COCO_TO_OPENPOSE[1] == 15 and COCO_TO_OPENPOSE[2] == 14  # eyes
    assert COCO_TO_OPENPOSE[16] == 10  # right ankle


def test_coco_to_openpose_matches_names_everywhere():
    assert len(COCO_TO_OPENPOSE) == 17 and len(set(COCO_TO_OPENPOSE)) == 17
    assert [BODY_NAMES[op] for op in COCO_TO_OPENPOSE] == list(COCO17_NAMES)
    assert OPENPOSE_FROM_COCO[BODY_INDEX["neck"]] == -1
    assert all(COCO_TO_OPENPOSE[OPENPOSE_FROM_COCO[op]] == op for op in range(18) if op != BODY_INDEX["neck"])


def _coco_frame() -> tuple[np.ndarray, np.ndarray]:
    """Point i sits at (i, 1000 + i) with score i / 200, so every output can be traced to its source index."""
    idx = np.arange(133, dtype=np.float32)
    return np.stack([idx, 1000 + idx], axis=-1), idx / 200


def test_from_coco_wholebody_places_every_part():
    kp, sc = from_coco_wholebody(*_coco_frame())
    assert kp.shape == (1, NUM_KEYPOINTS, 2) and sc.shape == (1, NUM_KEYPOINTS)
    assert kp.dtype == np.float32 and sc.dtype == np.float32
    src = np.full(NUM_KEYPOINTS, -1.0)  # source COCO index per output point
    src[list(COCO_TO_OPENPOSE)] = np.arange(17)
    src[list(FEET)] = np.arange(17, 23)
    src[list(FACE)] = np.arange(23, 91)
    src[list(LEFT_HAND)] = np.arange(91, 112)
    src[list(RIGHT_HAND)] = np.arange(112, 133)
    neck = BODY_INDEX["neck"]
    others = np.arange(NUM_KEYPOINTS) != neck
    np.testing.assert_array_equal(kp[0, others, 0], src[others])
    np.testing.assert_array_equal(kp[0, others, 1], 1000 + src[others])
    np.testing.assert_allclose(sc[0, others], src[others] / 200, rtol=1e-6)


def test_neck_is_mean_of_shoulders_with_min_score():
    kp, sc = _coco_frame()
    kp[5], kp[6] = (300.0, 210.0), (100.0, 190.0)  # COCO left, right shoulder
    sc[5], sc[6] = 0.9, 0.4
    out_kp, out_sc = from_coco_wholebody(kp, sc)
    np.testing.assert_array_equal(out_kp[0, BODY_INDEX["neck"]], [200.0, 200.0])
    assert out_sc[0, BODY_INDEX["neck"]] == pytest.approx(0.4)


def test_from_coco_wholebody_keeps_frames():
    kp, sc = _coco_frame()
    frames = np.stack([kp, kp + 1, kp + 2]), np.stack([sc, sc, sc])
    out_kp, _ = from_coco_wholebody(*frames)
    assert out_kp.shape == (3, NUM_KEYPOINTS, 2)
    np.testing.assert_array_equal(out_kp[2, 0], [2.0, 1002.0])  # nose of frame 2


def test_from_coco_wholebody_rejects_wrong_shape():
    with pytest.raises(MmgtError, match=r"COCO-WholeBody: keypoints must have shape \(F, 133, 2\)"):
        from_coco_wholebody(np.zeros((17, 2)), np.zeros(17))
    with pytest.raises(MmgtError, match="COCO-WholeBody: scores"):
        from_coco_wholebody(np.zeros((133, 2)), np.zeros(17))


def test_to_pose_sequence():
    pose = to_pose_sequence(*from_coco_wholebody(*_coco_frame()), width=640, height=480, fps=30)
    assert isinstance(pose, PoseSequence) and (pose.width, pose.height, pose.fps, pose.num_frames) == (640, 480, 30, 1)


# ---------------------------------------------------------------------------------------------------------------------
# MediaPipe Holistic
# ---------------------------------------------------------------------------------------------------------------------
def _pose33() -> np.ndarray:
    """Landmark i at normalised (i / 100, 0.5 + i / 1000) with visibility 0.5 + i / 100."""
    i = np.arange(33, dtype=np.float32)
    return np.stack([i / 100, 0.5 + i / 1000, np.zeros(33), 0.5 + i / 100], axis=-1)


def test_mediapipe_body_and_feet_mapping():
    kp, sc = from_mediapipe_holistic(_pose33(), None, None, None, width=1000, height=2000)
    expected = {  # mmgt index -> mediapipe pose index
        0: 0,
        2: 12,
        3: 14,
        4: 16,
        5: 11,
        6: 13,
        7: 15,
        8: 24,
        9: 26,
        10: 28,
        11: 23,
        12: 25,
        13: 27,
        14: 5,
        15: 2,
        16: 8,
        17: 7,
        FEET[0]: 31,
        FEET[2]: 29,
        FEET[3]: 32,
        FEET[5]: 30,
    }
    for ours, mp_index in expected.items():
        np.testing.assert_allclose(kp[0, ours], [mp_index * 10, 1000 + 2 * mp_index], rtol=1e-5)
        assert sc[0, ours] == pytest.approx(0.5 + mp_index / 100)
    neck = BODY_INDEX["neck"]
    np.testing.assert_allclose(kp[0, neck], [115.0, 1023.0], rtol=1e-5)  # mean of landmarks 11 and 12
    assert sc[0, neck] == pytest.approx(0.61)  # min(0.61, 0.62)
    assert sc[0, FEET[1]] == 0 and sc[0, FEET[4]] == 0  # no small toes in MediaPipe
    assert (sc[0, list(FACE) + list(LEFT_HAND) + list(RIGHT_HAND)] == 0).all()


def test_mediapipe_face_and_hands():
    face = np.random.default_rng(0).uniform(size=(468, 3)).astype(np.float32)
    left = np.stack([np.arange(21) / 100, np.full(21, 0.25), np.zeros(21)], axis=-1)
    kp, sc = from_mediapipe_holistic(None, face, left, None, width=200, height=100)
    np.testing.assert_allclose(kp[0, list(FACE)], face[list(FACE_MESH_TO_IBUG68), :2] * [200, 100], rtol=1e-6)
    assert (sc[0, list(FACE)] == 1).all()
    np.testing.assert_allclose(kp[0, LEFT_HAND[20]], [40.0, 25.0], rtol=1e-6)  # little-finger tip, 1:1 order
    assert (sc[0, list(LEFT_HAND)] == 1).all() and (sc[0, list(RIGHT_HAND)] == 0).all()
    assert (sc[0, :24] == 0).all()  # no pose -> no body, no neck, no feet


def test_mediapipe_accepts_landmark_lists_and_478_point_mesh():
    pose = SimpleNamespace(landmark=[SimpleNamespace(x=x, y=y, z=z, visibility=v) for x, y, z, v in _pose33()])
    from_array = from_mediapipe_holistic(_pose33(), np.zeros((478, 3)), None, None, 100, 100)
    from_list = from_mediapipe_holistic(pose, np.zeros((478, 3)), None, None, 100, 100)
    np.testing.assert_array_equal(from_array[0], from_list[0])
    np.testing.assert_array_equal(from_array[1], from_list[1])


def test_mediapipe_rejects_bad_landmarks():
    with pytest.raises(MmgtError, match="face_landmarks: expected 468 or 478 landmarks, got 68"):
        from_mediapipe_holistic(None, np.zeros((68, 3)), None, None, 100, 100)
    with pytest.raises(MmgtError, match="right_hand_landmarks"):
        from_mediapipe_holistic(None, None, None, np.zeros((21, 2)), 100, 100)


def test_face_mesh_table_is_68_unique_mesh_vertices():
    assert len(FACE_MESH_TO_IBUG68) == 68
    assert len(set(FACE_MESH_TO_IBUG68)) == 68
    assert all(0 <= i < 468 for i in FACE_MESH_TO_IBUG68)
    # Landmarks on the face's vertical midline: chin, nose bridge/tip, subnasale, lip centres.
    assert [FACE_MESH_TO_IBUG68[j] for j in (8, 27, 33, 51, 57, 62, 66)] == [152, 168, 2, 0, 17, 13, 14]


# ---------------------------------------------------------------------------------------------------------------------
# PATS
# ---------------------------------------------------------------------------------------------------------------------
def _pats_frames(num_frames: int = 15) -> np.ndarray:
    """Shoulders at x = -1 / +1 (right / left); the right wrist moves right by 0.1 unit per frame."""
    data = np.zeros((num_frames, 52, 2), dtype=np.float32)
    data[:, 1] = (-1.0, 0.0)  # right shoulder
    data[:, 4] = (1.0, 0.0)  # left shoulder
    data[:, 3, 0] = -1.0 + 0.1 * np.arange(num_frames)  # right wrist x
    data[:, 3, 1] = 1.5
    data[:, 7] = (0.0, -1.0)  # nose
    return data


def test_pats_joint_map():
    assert len(PATS_TO_MMGT) == 52 and len(set(PATS_TO_MMGT)) == 52
    assert PATS_TO_MMGT[:10] == (1, 2, 3, 4, 5, 6, 7, 0, 14, 15)
    assert PATS_TO_MMGT[10] == LEFT_HAND[0] and PATS_TO_MMGT[31] == RIGHT_HAND[0]


def test_pats_placement_default_neck_and_scale():
    kp, sc = from_pats(_pats_frames(1)[0], None, width=400, height=600, target_fps=15)
    # neck at (200, 210); shoulder width 2 units -> 0.3 * 400 = 120 px -> 60 px per unit
    np.testing.assert_allclose(kp[0, BODY_INDEX["neck"]], [200.0, 210.0])
    np.testing.assert_allclose(kp[0, BODY_INDEX["right_shoulder"]], [140.0, 210.0])
    np.testing.assert_allclose(kp[0, BODY_INDEX["left_shoulder"]], [260.0, 210.0])
    np.testing.assert_allclose(kp[0, BODY_INDEX["nose"]], [200.0, 150.0])  # y-down: above the neck
    np.testing.assert_allclose(kp[0, BODY_INDEX["right_wrist"]], [140.0, 300.0])


def test_pats_explicit_neck_scale_and_ignored_stored_neck():
    data = _pats_frames(1)[0] + 5.0  # a stored neck of (5, 5): every joint is measured from it
    kp, _ = from_pats(data, None, 100, 100, neck_xy=(10.0, 20.0), scale=2.0, target_fps=15)
    np.testing.assert_allclose(kp[0, BODY_INDEX["left_shoulder"]], [12.0, 20.0])
    np.testing.assert_allclose(kp[0, BODY_INDEX["neck"]], [10.0, 20.0])


def test_pats_resamples_15_to_25_fps():
    conf = np.ones((15, 52), dtype=np.float32)
    conf[:, 8] = np.arange(15) / 14  # right eye confidence ramps over frames, to trace score resampling
    kp, sc = from_pats(_pats_frames(15), conf, 400, 600, neck_xy=(0.0, 0.0), scale=10.0)
    assert kp.shape == (25, NUM_KEYPOINTS, 2) and sc.shape == (25, NUM_KEYPOINTS)
    wrist = BODY_INDEX["right_wrist"]
    # output frame i is at source frame 0.6 i (held at the last frame, 14); the wrist x is -10 + 1 px per frame
    source = np.minimum(0.6 * np.arange(25), 14)
    np.testing.assert_allclose(kp[:, wrist, 0], -10.0 + source, atol=1e-5)
    nearest = np.minimum(np.floor(source + 0.5), 14)
    np.testing.assert_allclose(sc[:, BODY_INDEX["right_eye"]], nearest / 14, rtol=1e-6)
    kp64, _ = from_pats(_pats_frames(64), None, 400, 600)
    assert len(kp64) == 107  # ceil(64 * 25 / 15)


def test_pats_interpolates_only_between_visible_samples():
    conf = np.ones((15, 52), dtype=np.float32)
    data = _pats_frames(15)
    data[1, 3] = 0.0  # frame 1: wrist undetected, stored at the neck
    conf[1, 3] = 0.0
    kp, sc = from_pats(data, conf, 400, 600, neck_xy=(0.0, 0.0), scale=10.0)
    wrist = BODY_INDEX["right_wrist"]
    # output frame 1 (source 0.6) would blend frames 0 and 1; with frame 1 invisible it copies the nearest (1)
    np.testing.assert_allclose(kp[1, wrist], [0.0, 0.0])
    assert sc[1, wrist] == 0
    np.testing.assert_allclose(kp[4, wrist, 0], -10.0 + 2.4, atol=1e-5)  # frames 2 and 3: both visible


def test_pats_points_it_lacks_are_invisible():
    _, sc = from_pats(_pats_frames(15), None, 400, 600)
    missing = [BODY_INDEX[n] for n in ("right_ear", "left_ear", "right_hip", "left_hip", "right_knee")]
    assert (sc[:, missing + list(FACE) + list(FEET)] == 0).all()
    assert (sc[:, list(PATS_TO_MMGT)] == 1).all()


def test_pats_flat_layout():
    flat = np.concatenate([np.arange(52), 100 + np.arange(52)])[None].astype(np.float32)  # [x..., y...]
    joints = pats_joints_from_flat(flat)
    assert joints.shape == (1, 52, 2)
    np.testing.assert_array_equal(joints[0, 7], [7.0, 107.0])
    with pytest.raises(MmgtError, match=r"PATS pose/data: expected shape \(F, 104\)"):
        pats_joints_from_flat(np.zeros((3, 98)))


def test_pats_rejects_degenerate_input():
    with pytest.raises(MmgtError, match="shoulders coincide"):
        from_pats(np.zeros((3, 52, 2)), None, 100, 100)
    with pytest.raises(MmgtError, match=r"PATS: keypoints must have shape \(F, 52, 2\)"):
        from_pats(np.zeros((3, 49, 2)), None, 100, 100)
