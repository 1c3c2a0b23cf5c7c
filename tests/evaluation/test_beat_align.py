"""Beat alignment: exact and lagged beats give the Gaussian score; beats sit where motion turns and sound starts."""

from __future__ import annotations

import numpy as np
import pytest

from mmgt.constants import FPS, NUM_KEYPOINTS, SAMPLE_RATE
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError
from mmgt.evaluation.beat_align import (
    BEAT_JOINTS,
    audio_onsets,
    beat_alignment,
    beat_alignment_score,
    kinematic_beats,
)

TURNS = [10, 30, 50, 70]  # frames where the swinging pose below reverses


def _swinging_pose(frames: int = 90) -> PoseSequence:
    """Upper body and hands swing with x = 300 + 40 cos(2 pi (t - 10) / 40): speed is 0 at TURNS."""
    t = np.arange(frames)
    keypoints = np.full((frames, NUM_KEYPOINTS, 2), 200.0)
    keypoints[:, BEAT_JOINTS, 0] = (300 + 40 * np.cos(2 * np.pi * (t - 10) / 40))[:, None]
    return PoseSequence(keypoints, np.ones((frames, NUM_KEYPOINTS)), 512, 512)


def _bursts(frames: list[int], seconds: float = 3.6, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Quiet noise floor with a decaying noise burst starting at each of ``frames`` (25 fps)."""
    rng = np.random.default_rng(0)
    wave = 1e-3 * rng.standard_normal(int(seconds * sr))
    n = int(0.03 * sr)
    for f in frames:
        start = int(f / FPS * sr)
        wave[start : start + n] += rng.standard_normal(n) * np.exp(-np.arange(n) / (0.005 * sr))
    return wave.astype(np.float32)


def test_beats_on_the_onsets_score_one():
    assert beat_alignment(np.array(TURNS), np.array(TURNS), sigma=3.0) == 1.0


@pytest.mark.parametrize("lag", [1, 2, 5])
def test_lagged_beats_score_the_gaussian_of_the_lag(lag):
    expected = np.exp(-(lag**2) / (2 * 3.0**2))
    assert beat_alignment(np.array(TURNS) + lag, np.array(TURNS), sigma=3.0) == pytest.approx(expected)


def test_no_kinematic_beats_score_zero_and_no_onsets_are_undefined():
    assert beat_alignment(np.array([]), np.array(TURNS)) == 0.0
    assert np.isnan(beat_alignment(np.array(TURNS), np.array([])))


def test_reference_side_decides_what_is_averaged():
    kinematic, audio = np.array([10]), np.array([10, 40])
    assert beat_alignment(kinematic, audio, over="audio") == pytest.approx(0.5 + 0.5 * np.exp(-900 / 18))
    assert beat_alignment(kinematic, audio, over="motion") == pytest.approx(1.0)


def test_kinematic_beats_are_the_turning_frames():
    np.testing.assert_array_equal(kinematic_beats(_swinging_pose()), TURNS)
    np.testing.assert_array_equal(kinematic_beats(_swinging_pose(), smooth_sigma=0.0), TURNS)


def test_a_static_pose_has_no_beats():
    pose = _swinging_pose().replace(keypoints=np.full((90, NUM_KEYPOINTS, 2), 100.0))
    assert kinematic_beats(pose).size == 0


def test_order_and_smoothing_drop_a_shallow_dip():
    # Nudging frame 40 (mid-swing, full speed) makes frame 41 slightly slower than its neighbours: a shallow dip.
    pose = _swinging_pose()
    keypoints = pose.keypoints.copy()
    keypoints[40, BEAT_JOINTS, 0] += 2.0
    wiggly = pose.replace(keypoints=keypoints)
    np.testing.assert_array_equal(kinematic_beats(wiggly, smooth_sigma=0.0, order=1), [10, 30, 41, 50, 70])
    np.testing.assert_array_equal(kinematic_beats(wiggly, smooth_sigma=0.0, order=7), TURNS)  # BEAT's BC order
    np.testing.assert_array_equal(kinematic_beats(wiggly), TURNS)  # default Gaussian smoothing


def test_invisible_joints_do_not_create_beats():
    pose = _swinging_pose()
    scores = pose.scores.copy()
    scores[::3, BEAT_JOINTS[0]] = 0.0  # one joint flickers; the others carry the same motion
    np.testing.assert_array_equal(kinematic_beats(pose.replace(scores=scores)), TURNS)


def test_audio_onsets_find_the_bursts():
    onsets = audio_onsets(_bursts(TURNS), SAMPLE_RATE)
    assert len(onsets) == len(TURNS)
    assert np.abs(onsets - np.array(TURNS)).max() <= 1


def test_score_of_a_pose_with_its_audio():
    pose = _swinging_pose()
    assert beat_alignment_score(pose, _bursts(TURNS), SAMPLE_RATE) > 0.9
    off_beat = beat_alignment_score(pose, _bursts([20, 40, 60]), SAMPLE_RATE)  # 10 frames from every turn
    assert off_beat < 0.01


def test_bad_audio_raises():
    with pytest.raises(MmgtError, match="mono"):
        audio_onsets(np.zeros((2, 1600), np.float32), SAMPLE_RATE)
    with pytest.raises(MmgtError, match="sigma"):
        beat_alignment(np.array([1]), np.array([1]), sigma=0.0)
    with pytest.raises(MmgtError, match="order"):
        kinematic_beats(_swinging_pose(), order=0)
