"""The 35-d librosa block: 25 fps alignment, column layout, onsets/beats at known click times, silence."""

from __future__ import annotations

import numpy as np
import pytest

from mmgt.audio.librosa_features import FEATURE_NAMES, LIBROSA_FEATURE_DIM, librosa_features
from mmgt.errors import MmgtError

from .conftest import speech_like

SR = 16000
CLICK_TIMES = (0.5, 1.3, 2.1, 3.0, 3.6)  # seconds; click k starts at video frame 25 t


def _click_track(duration: float, times=CLICK_TIMES) -> np.ndarray:
    """Short noise bursts (4 ms) at known times over near-silence."""
    rng = np.random.default_rng(0)
    wave = np.zeros(int(round(duration * SR)), dtype=np.float32)
    for t in times:
        start = int(t * SR)
        wave[start : start + 64] = rng.uniform(-1, 1, 64)
    return wave


@pytest.fixture(scope="module")
def clicks() -> np.ndarray:
    # 4.03 s: an awkward duration, T = ceil(100.75) = 101. Computed once: librosa's first beat_track call compiles.
    return librosa_features(_click_track(4.03), SR)


def test_layout_constants():
    assert LIBROSA_FEATURE_DIM == 35
    widths = {name: s.stop - s.start for name, s in FEATURE_NAMES.items()}
    assert widths == {"onset_envelope": 1, "mfcc": 20, "chroma_cens": 12, "onset_peak": 1, "beat": 1}
    assert list(FEATURE_NAMES) == ["onset_envelope", "mfcc", "chroma_cens", "onset_peak", "beat"]
    assert FEATURE_NAMES["beat"].stop == 35


def test_shape_and_finite(clicks):
    assert clicks.shape == (101, 35) and clicks.dtype == np.float32
    assert np.isfinite(clicks).all()
    for name in ("onset_peak", "beat"):
        assert set(np.unique(clicks[:, FEATURE_NAMES[name]])) <= {0.0, 1.0}


def test_onset_peaks_fire_within_one_frame_of_each_click(clicks):
    peaks = np.flatnonzero(clicks[:, FEATURE_NAMES["onset_peak"]][:, 0])
    expected = np.array(CLICK_TIMES) * 25
    for frame in expected:
        assert np.min(np.abs(peaks - frame)) <= 1, (peaks, expected)
    envelope = clicks[:, 0]
    strongest = np.sort(np.argsort(envelope)[-len(CLICK_TIMES) :])
    assert np.all(np.abs(strongest - np.round(expected)) <= 1), strongest


def test_beats_land_on_clicks(clicks):
    beats = np.flatnonzero(clicks[:, FEATURE_NAMES["beat"]][:, 0])
    assert len(beats) >= 2
    click_frames = np.array(CLICK_TIMES) * 25
    for b in beats:
        assert np.min(np.abs(click_frames - b)) <= 1.5, (beats, click_frames)


def test_silence_gives_zero_envelope_and_no_events():
    feats = librosa_features(np.zeros(int(1.3 * SR), dtype=np.float32), SR)
    assert feats.shape == (33, 35)  # ceil(32.5)
    assert np.isfinite(feats).all()
    np.testing.assert_array_equal(feats[:, FEATURE_NAMES["onset_envelope"]], 0.0)
    np.testing.assert_array_equal(feats[:, FEATURE_NAMES["onset_peak"]], 0.0)
    np.testing.assert_array_equal(feats[:, FEATURE_NAMES["beat"]], 0.0)
    np.testing.assert_array_equal(feats[:, FEATURE_NAMES["chroma_cens"]], 0.0)


def test_very_short_input_and_other_sample_rates():
    feats = librosa_features(np.random.default_rng(2).uniform(-0.1, 0.1, 300).astype(np.float32), SR)  # 1 frame
    assert feats.shape == (1, 35) and np.isfinite(feats).all()
    # 44.1 kHz input, 0.1 s -> exactly 3 frames (integer frame arithmetic, no float round-up).
    feats = librosa_features(np.random.default_rng(1).uniform(-0.1, 0.1, 4410).astype(np.float32), 44100)
    assert feats.shape == (3, 35)


def test_start_tempo_changes_only_where_beat_tracking_starts():
    # Seed 4: the two starting tempos lead beat tracking to different beats (6 vs 7 beats in 3.2 s).
    wave = speech_like(4)
    envelope, reload = librosa_features(wave, SR), librosa_features(wave, SR, start_tempo="reload")
    beat = FEATURE_NAMES["beat"]
    np.testing.assert_array_equal(envelope[:, : beat.start], reload[:, : beat.start])
    assert (envelope[:, beat].sum(), reload[:, beat].sum()) == (6, 7)
    with pytest.raises(MmgtError, match="start_tempo must be one of"):
        librosa_features(wave, SR, start_tempo="guess")
