import numpy as np
import pytest

from mmgt.constants import NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.pose.normalize import denormalize_pose, normalize_pose


def _pose(w, h):
    rng = np.random.default_rng(1)
    return PoseSequence(rng.uniform(0, [w, h], (4, NUM_KEYPOINTS, 2)), rng.uniform(0, 1, (4, NUM_KEYPOINTS)), w, h)


def test_fixed_map_matches_the_spec_on_the_512_canvas():
    kp = np.zeros((1, NUM_KEYPOINTS, 2), np.float32)
    kp[0, :3] = [[-200, -200], [800, 800], [300, 300]]
    sc = np.ones((1, NUM_KEYPOINTS), np.float32)
    arr = normalize_pose(PoseSequence(kp, sc, 512, 512))
    assert np.allclose(arr[0, :3, :2], [[-1, -1], [1, 1], [0, 0]])
    assert np.allclose(arr[0, 0, 2], 2 * 201 / 1000 - 1)  # released convention: scores mapped like coordinates
    # Other image sizes are expressed on the 512 canvas first: the image centre maps to the same value.
    small = PoseSequence(np.full((1, NUM_KEYPOINTS, 2), 64, np.float32), sc, 128, 128)
    assert np.allclose(normalize_pose(small)[..., :2], 2 * (256 + 200) / 1000 - 1)


@pytest.mark.parametrize("mode", ["fixed", "image"])
@pytest.mark.parametrize("normalize_scores", [True, False])
def test_round_trip(mode, normalize_scores):
    pose = _pose(160, 120)
    arr = normalize_pose(pose, mode, normalize_scores)
    assert arr.shape == (4, NUM_KEYPOINTS, 3) and arr.dtype == np.float32
    back = denormalize_pose(arr, 160, 120, mode, normalize_scores)
    assert np.allclose(back.keypoints, pose.keypoints, atol=1e-3) and np.allclose(back.scores, pose.scores, atol=1e-4)


def test_image_map_corners_and_bad_inputs():
    kp = np.zeros((1, NUM_KEYPOINTS, 2), np.float32)
    kp[0, 1] = [200, 100]
    arr = normalize_pose(PoseSequence(kp, np.zeros((1, NUM_KEYPOINTS)), 200, 100), "image")
    assert np.allclose(arr[0, 0, :2], [-1, -1]) and np.allclose(arr[0, 1, :2], [1, 1])
    with pytest.raises(ValueError, match="unknown normalisation mode"):
        normalize_pose(_pose(8, 8), "box")
    with pytest.raises(ValueError, match=r"\(F, K, 3\)"):
        denormalize_pose(np.zeros((3, 2)), 8, 8)
