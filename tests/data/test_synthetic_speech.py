"""Procedural speech: exact lengths, levels, stress structure, determinism, and the syllable detector."""

from __future__ import annotations

import numpy as np
import pytest

from mmgt.data.synthetic.speech import (
    VOICES,
    detect_syllables,
    espeak_available,
    espeak_speech,
    mix_tts,
    random_voice,
    synthesize_speech,
)
from mmgt.errors import MediaError, MmgtError

SR = 16_000


def _match_rate(reference: np.ndarray, found: np.ndarray, tol: float) -> float:
    """Share of ``reference`` times that have a ``found`` time within ``tol`` seconds."""
    if len(reference) == 0:
        return 1.0
    if len(found) == 0:
        return 0.0
    return float(np.mean([np.abs(found - t).min() <= tol for t in reference]))


def _f0(segment: np.ndarray) -> float:
    """Fundamental frequency of a voiced segment from the first autocorrelation peak in 60-400 Hz."""
    x = segment - segment.mean()
    ac = np.correlate(x, x, mode="full")[len(x) - 1 :]
    lo, hi = SR // 400, SR // 60
    return SR / (lo + int(np.argmax(ac[lo:hi])))


def test_length_level_and_determinism():
    clip = synthesize_speech(1.2345, np.random.default_rng(5), VOICES["mid"])
    assert clip.wave.dtype == np.float32 and clip.wave.shape == (round(1.2345 * SR),)
    assert clip.sample_rate == SR
    assert np.abs(clip.wave).max() == pytest.approx(10 ** (-3 / 20), abs=1e-4)  # -3 dBFS peak
    again = synthesize_speech(1.2345, np.random.default_rng(5), VOICES["mid"])
    np.testing.assert_array_equal(clip.wave, again.wave)
    assert clip.syllables == again.syllables
    other = synthesize_speech(1.2345, np.random.default_rng(6), VOICES["mid"])
    assert not np.array_equal(clip.wave, other.wave)


def test_stress_is_louder_and_longer_and_pauses_are_silent():
    clip = synthesize_speech(8.0, np.random.default_rng(1), VOICES["low_slow"])
    syl = clip.syllables
    stressed = [s for s in syl if s.stressed]
    plain = [s for s in syl if not s.stressed]
    assert len(stressed) >= 5 and len(plain) >= 5
    gain = np.mean([s.loudness for s in stressed]) - np.mean([s.loudness for s in plain])
    assert 5.0 < gain < 7.0  # +6 dB by construction, small per-syllable variation
    length = lambda group: np.mean([s.offset_s - s.vowel_onset_s for s in group])  # noqa: E731
    assert length(stressed) > 1.15 * length(plain)
    assert all(0.079 <= s.offset_s - s.vowel_onset_s <= 0.251 for s in syl[:-1])  # vowels 80-250 ms
    assert all(0.0 <= s.vowel_onset_s - s.onset_s <= 0.061 for s in syl)  # consonant bursts up to 60 ms
    gaps = np.array([b.onset_s - a.offset_s for a, b in zip(syl, syl[1:])])
    assert gaps.min() >= 0.0 and (gaps >= 0.3).sum() >= 1  # phrase pauses exist
    # Energy lives in the vowels: the middle of a long pause is > 30 dB quieter than the vowels.
    vowel_rms = np.sqrt(
        np.mean(np.concatenate([clip.wave[int(s.vowel_onset_s * SR) : int(s.offset_s * SR)] for s in syl]) ** 2)
    )
    i = int(np.argmax(gaps))
    mid = 0.5 * (syl[i].offset_s + syl[i + 1].onset_s)
    pause = clip.wave[int((mid - 0.05) * SR) : int((mid + 0.05) * SR)]
    assert np.sqrt(np.mean(pause**2)) < vowel_rms * 10 ** (-30 / 20)


def test_voice_pitch_follows_the_voice():
    for name, lo, hi in (("low_slow", 80, 135), ("high_fast", 190, 320)):
        clip = synthesize_speech(3.0, np.random.default_rng(2), VOICES[name])
        f0s = [
            _f0(clip.wave[int(s.vowel_onset_s * SR) + 200 : int(s.vowel_onset_s * SR) + 1000])
            for s in clip.syllables[:-1]
        ]
        assert lo < np.median(f0s) < hi, (name, np.median(f0s))


def test_random_voice_is_deterministic_and_in_range():
    a, b = random_voice(np.random.default_rng(3)), random_voice(np.random.default_rng(3))
    assert a == b
    assert 85 <= a.f0_hz <= 250 and 3.5 <= a.rate_syll_per_s <= 6.0


def test_detector_finds_known_tone_bursts():
    # 150 ms vowel-like tone bursts at known times; the one at 1.3 s is 8 dB louder than the others.
    wave = np.zeros(int(2.5 * SR))
    onsets = [0.2, 0.55, 0.9, 1.3, 1.7, 2.05]
    t = np.arange(int(0.15 * SR)) / SR
    for on in onsets:
        gain = 10 ** (8 / 20) if on == 1.3 else 1.0
        ramp = np.clip(t / 0.01, 0, 1) * np.clip((0.15 - t) / 0.01, 0, 1)
        wave[int(on * SR) : int(on * SR) + len(t)] += 0.1 * gain * ramp * np.sin(2 * np.pi * 500 * t)
    found = detect_syllables(wave, SR)
    assert len(found) == len(onsets)
    np.testing.assert_allclose([s.onset_s for s in found], onsets, atol=0.015)
    assert [s.stressed for s in found] == [on == 1.3 for on in onsets]
    assert all(0.12 < s.offset_s - s.onset_s < 0.2 for s in found)


def test_detector_recovers_synthetic_events():
    recall, stress_recall, stress_precision = [], [], []
    for seed, voice in enumerate(VOICES.values()):
        clip = synthesize_speech(4.0, np.random.default_rng(seed), voice)
        found = detect_syllables(clip.wave, SR)
        true_on = np.array([s.vowel_onset_s for s in clip.syllables])
        recall.append(_match_rate(true_on, np.array([s.onset_s for s in found]), 0.05))
        true_st = clip.stressed_onsets_s
        found_st = np.array([s.onset_s for s in found if s.stressed])
        stress_recall.append(_match_rate(true_st, found_st, 0.05))
        stress_precision.append(_match_rate(found_st, true_st, 0.05))
    # Measured over 20 clips: onset recall 0.93, stressed recall 0.96, stressed precision 0.94.
    assert np.mean(recall) >= 0.85
    assert np.mean(stress_recall) >= 0.85 and np.mean(stress_precision) >= 0.85


def test_detector_edge_cases_and_errors():
    assert detect_syllables(np.zeros(SR), SR) == []
    assert detect_syllables(np.ones(100), SR) == []  # shorter than 100 ms
    with pytest.raises(MediaError, match="mono"):
        detect_syllables(np.zeros((2, SR)), SR)
    with pytest.raises(MmgtError, match="sample rate"):
        detect_syllables(np.zeros(SR), 0)
    with pytest.raises(MmgtError, match="seconds"):
        synthesize_speech(0.0, np.random.default_rng(0))


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")
def test_espeak_tts():
    wave = espeak_speech("hello there, this is a test", voice="en")
    assert wave.dtype == np.float32 and len(wave) > SR // 2
    clip = mix_tts(2.0, np.random.default_rng(0))
    assert len(clip.wave) == 2 * SR and len(clip.syllables) >= 3
