"""Keypoint lip sync: mouth opening is scale-free, the envelope is a per-frame RMS, correlation finds the lag."""

from __future__ import annotations

import numpy as np
import pytest

from mmgt.constants import FACE, FACE_OFFSET, NUM_KEYPOINTS, SAMPLE_RATE
from mmgt.contracts import PoseSequence
from mmgt.errors import MmgtError
from mmgt.evaluation.sync import audio_envelope, lip_sync, lip_sync_score, mouth_opening

UPPER_INNER = [FACE_OFFSET + j for j in (61, 62, 63)]
LOWER_INNER = [FACE_OFFSET + j for j in (67, 66, 65)]


def _face(gaps: np.ndarray) -> PoseSequence:
    """A face whose landmarks span y = 150..250 (height 100 px) and whose inner lips are ``gaps`` px apart."""
    frames = len(gaps)
    keypoints = np.full((frames, NUM_KEYPOINTS, 2), 256.0)
    keypoints[:, FACE, 0] = np.linspace(200, 300, len(FACE))
    keypoints[:, FACE, 1] = np.linspace(150, 250, len(FACE))
    keypoints[:, UPPER_INNER, 1] = 200.0
    keypoints[:, LOWER_INNER, 1] = 200.0 + gaps[:, None]
    keypoints[:, LOWER_INNER, 0] = keypoints[:, UPPER_INNER, 0]  # lower points straight below the upper ones
    keypoints[:, FACE_OFFSET + 8, 1] = 250.0  # chin, the lowest point (the lips above overwrote the last ones)
    return PoseSequence(keypoints, np.ones((frames, NUM_KEYPOINTS)), 512, 512)


def _speech(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise with a random loudness per 40 ms frame, and that loudness (the RMS the envelope should report)."""
    rng = np.random.default_rng(seed)
    loudness = rng.uniform(0.05, 1.0, frames)
    hop = SAMPLE_RATE // 25
    carrier = np.sign(rng.standard_normal(frames * hop))  # +-1: RMS exactly 1 in every frame
    return (carrier * np.repeat(loudness, hop)).astype(np.float32), loudness


def test_mouth_opening_is_gap_over_face_height():
    np.testing.assert_allclose(mouth_opening(_face(np.array([0.0, 10.0, 25.0]))), [0.0, 0.1, 0.25], atol=1e-6)


def test_mouth_opening_is_scale_free():
    pose = _face(np.array([4.0, 12.0]))
    np.testing.assert_allclose(mouth_opening(pose.rescaled(1024, 1024)), mouth_opening(pose), rtol=1e-6)


def test_mouth_opening_is_nan_where_a_lip_point_is_unseen():
    pose = _face(np.array([4.0, 12.0, 8.0]))
    scores = pose.scores.copy()
    scores[1, LOWER_INNER[2]] = 0.0
    opening = mouth_opening(pose.replace(scores=scores))
    assert np.isnan(opening[1]) and np.isfinite(opening[[0, 2]]).all()


def test_envelope_is_the_rms_of_each_frame():
    wave, loudness = _speech(10)
    np.testing.assert_allclose(audio_envelope(wave, SAMPLE_RATE, 10), loudness, rtol=1e-6)


def test_envelope_handles_other_rates_and_pads_with_silence():
    sr = 22_050  # 882 samples per 25-fps frame
    wave = np.concatenate([np.full(882, 0.5), np.full(882, -2.0)]).astype(np.float32)
    np.testing.assert_allclose(audio_envelope(wave, sr, 4), [0.5, 2.0, 0.0, 0.0], rtol=1e-6)


def test_mouth_following_the_envelope_has_r_one():
    wave, loudness = _speech(100)
    r, lag = lip_sync(_face(5.0 + 20.0 * loudness), wave, SAMPLE_RATE)
    assert r == pytest.approx(1.0, abs=1e-6)
    assert lag == 0


def test_delayed_mouth_is_found_at_its_lag():
    wave, loudness = _speech(100)
    gaps = 5.0 + 20.0 * np.concatenate([[0.5, 0.5], loudness[:-2]])  # mouth[t] follows loudness[t - 2]
    r, lag = lip_sync(_face(gaps), wave, SAMPLE_RATE, max_lag=3)
    assert lag == 2
    assert r == pytest.approx(1.0, abs=1e-6)


def test_shuffled_mouth_barely_correlates():
    wave, loudness = _speech(200)
    shuffled = np.random.default_rng(1).permutation(loudness)
    assert abs(lip_sync_score(_face(5.0 + 20.0 * shuffled), wave, SAMPLE_RATE)) < 0.3


def test_still_mouth_scores_zero():
    wave, _ = _speech(20)
    assert lip_sync(_face(np.full(20, 6.0)), wave, SAMPLE_RATE) == (0.0, 0)


def test_unseen_lips_raise():
    pose = _face(np.full(20, 6.0))
    scores = pose.scores.copy()
    scores[:, UPPER_INNER[0]] = 0.0
    wave, _ = _speech(20)
    with pytest.raises(MmgtError, match="visible inner lips"):
        lip_sync(pose.replace(scores=scores), wave, SAMPLE_RATE)
    with pytest.raises(MmgtError, match="max_lag"):
        lip_sync(_face(np.full(20, 6.0)), wave, SAMPLE_RATE, max_lag=-1)
