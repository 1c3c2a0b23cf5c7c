"""PoseSequence: validation, save -> load identity, slicing and the on-disk schema; the constants' index groups."""

from __future__ import annotations

import numpy as np
import pytest

from mmgt import constants as C
from mmgt.contracts import POSE_FORMAT_VERSION, PoseSequence
from mmgt.errors import MediaError


def _pose(f=5, w=64, h=48, seed=0):
    rng = np.random.default_rng(seed)
    return PoseSequence(rng.uniform(0, w, (f, C.NUM_KEYPOINTS, 2)), rng.uniform(0, 1, (f, C.NUM_KEYPOINTS)), w, h)


def test_save_load_is_identical(tmp_path):
    pose = _pose()
    path = pose.save(tmp_path / "sub" / "p.npz")
    back = PoseSequence.load(path)
    assert np.array_equal(back.keypoints, pose.keypoints) and np.array_equal(back.scores, pose.scores)
    assert (back.width, back.height, back.fps) == (64, 48, 25.0)
    with np.load(path) as z:  # the documented schema
        assert set(z.files) == {"format_version", "layout", "keypoints", "scores", "image_size", "fps"}
        assert int(z["format_version"]) == POSE_FORMAT_VERSION and str(z["layout"]) == "mmgt-wholebody-134"
        assert list(z["image_size"]) == [64, 48]
    assert [p.name for p in path.parent.iterdir()] == ["p.npz"]  # no temp file left behind


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(keypoints=np.zeros((2, 133, 2))), "keypoints must have shape"),
        (dict(scores=np.zeros((3, C.NUM_KEYPOINTS))), "scores must have shape"),
        (dict(width=0), "image size"),
        (dict(fps=0), "fps"),
        (dict(keypoints=np.full((2, C.NUM_KEYPOINTS, 2), np.nan)), "finite"),
    ],
)
def test_validation(kwargs, message):
    base = dict(keypoints=np.zeros((2, C.NUM_KEYPOINTS, 2)), scores=np.zeros((2, C.NUM_KEYPOINTS)), width=8, height=8)
    with pytest.raises(ValueError, match=message):
        PoseSequence(**{**base, **kwargs})


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(MediaError, match="missing.npz: pose file not found"):
        PoseSequence.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(MediaError, match="bad.npz: not a valid mmgt pose file"):
        PoseSequence.load(bad)


def test_slicing_concatenate_rescale():
    pose = _pose(f=6)
    assert pose[2].num_frames == 1 and np.array_equal(pose[2].keypoints[0], pose.keypoints[2])
    assert pose[-1].num_frames == 1 and np.array_equal(pose[-1].keypoints[0], pose.keypoints[-1])
    joined = PoseSequence.concatenate([pose[:2], pose[2:]])
    assert np.array_equal(joined.keypoints, pose.keypoints)
    big = pose.rescaled(128, 96)
    assert np.allclose(big.keypoints, pose.keypoints * 2) and (big.width, big.height) == (128, 96)
    with pytest.raises(ValueError, match="cannot concatenate"):
        PoseSequence.concatenate([pose, big])


def test_index_groups_match_the_layout():
    assert C.NUM_KEYPOINTS == 134
    parts = [C.BODY, C.FEET, C.FACE, C.LEFT_HAND, C.RIGHT_HAND]
    assert sorted(i for p in parts for i in p) == list(range(134))  # disjoint and covering
    assert (len(C.BODY), len(C.FEET), len(C.FACE), len(C.LEFT_HAND), len(C.RIGHT_HAND)) == (18, 6, 68, 21, 21)
    assert C.LIPS == tuple(range(72, 92)) and C.EYES == tuple(range(60, 72))  # spec §2
    assert set(C.LIPS) <= set(C.FACE) and C.BODY_INDEX["neck"] == 1 and C.LEGS == (9, 10, 12, 13)


@pytest.mark.parametrize(
    "samples, sr, frames",
    [(16000, 16000, 25), (16001, 16000, 26), (1600, 16000, 3), (51200, 16000, 80), (1, 16000, 1), (0, 16000, 0)],
)
def test_num_frames_is_ceil_of_duration(samples, sr, frames):
    assert C.num_frames_for(samples, sr) == frames
    assert C.duration_frames(3.2) == 80 and C.duration_frames(60) == 1500
