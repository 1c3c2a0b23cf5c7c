"""Stage-1 / stage-2 recipes: widths, exact T, per-window extraction, recipe checks, feature specs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmgt.audio.encoders import SpeechEncoder
from mmgt.audio.features import (
    feature_spec,
    librosa_start_tempo,
    stage1_audio_features,
    stage1_audio_features_windowed,
    stage1_feature_dim,
    stage2_audio_features,
)
from mmgt.audio.librosa_features import librosa_features
from mmgt.audio.mel import mel_features
from mmgt.errors import MmgtError

SR = 16000


def _speechlike(duration: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(duration * SR))) / SR
    wave = 0.2 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0) + 0.02 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


def test_stage1_mel_fallback_is_librosa_then_mel():
    wave = _speechlike(1.3)
    feats = stage1_audio_features(wave, SR)
    assert feats.shape == (33, 116) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats[:, :35], librosa_features(wave, SR))
    np.testing.assert_array_equal(feats[:, 35:], mel_features(wave, SR))


def test_stage1_with_encoder_uses_its_last_layer(tiny_wavlm):
    encoder = SpeechEncoder.from_pretrained(tiny_wavlm)
    wave = _speechlike(0.7)
    feats = stage1_audio_features(wave, SR, encoder)
    assert feats.shape == (18, 35 + 32)
    np.testing.assert_array_equal(feats[:, 35:], encoder.encode(wave, SR)[:, 0])


def test_windowed_extracts_each_window_alone_and_zero_pads_the_last():
    wave = _speechlike(2.3)  # T = 58 -> windows of 25 frames: [0, 25), [25, 50), [50, 75) trimmed to 58
    feats = stage1_audio_features_windowed(wave, SR, window_frames=25)
    assert feats.shape == (58, 116)
    np.testing.assert_array_equal(feats[:25], stage1_audio_features(wave[:SR], SR))
    np.testing.assert_array_equal(feats[25:50], stage1_audio_features(wave[SR : 2 * SR], SR))
    last = np.pad(wave[2 * SR :], (0, 3 * SR - len(wave)))  # 0.3 s of audio + 0.7 s of zeros
    np.testing.assert_array_equal(feats[50:], stage1_audio_features(last, SR)[:8])
    assert not np.array_equal(feats[25:50], stage1_audio_features(wave, SR)[25:50])  # windows really are separate


def test_stage2_returns_all_layers(tiny_wav2vec2):
    encoder = SpeechEncoder.from_pretrained(tiny_wav2vec2, layers="all", interpolate="before_transformer")
    feats = stage2_audio_features(_speechlike(0.5), SR, encoder)
    assert feats.shape == (13, 3, 32)


def test_recipes_reject_the_wrong_encoder_setup(tiny_wavlm):
    stage1_encoder = SpeechEncoder.from_pretrained(tiny_wavlm)
    with pytest.raises(MmgtError, match="layers='all' and interpolate='before_transformer'"):
        stage2_audio_features(_speechlike(0.2), SR, stage1_encoder)
    # No encoder: the no-weights fallback, the log-mel block as a single layer (T, 1, 81).
    wave = _speechlike(0.2)
    np.testing.assert_array_equal(stage2_audio_features(wave, SR, None), mel_features(wave, SR)[:, None])
    assert feature_spec(None, stage=2)["num_layers"] == 1 and feature_spec(None, stage=2)["dim"] == 81
    stage2_encoder = SpeechEncoder.from_pretrained(tiny_wavlm, layers="all", interpolate="before_transformer")
    with pytest.raises(MmgtError, match="layers='last' and interpolate='after'"):
        stage1_audio_features(_speechlike(0.2), SR, stage2_encoder)


def test_feature_spec_and_dims(tiny_wavlm, tiny_wav2vec2):
    mel_spec = feature_spec(None)
    assert json.loads(json.dumps(mel_spec)) == mel_spec
    assert mel_spec["dim"] == 116 and mel_spec["speech"]["type"] == "mel" and mel_spec["window_frames"] is None
    assert stage1_feature_dim(None) == 116 and stage1_feature_dim(mel_spec) == 116
    wavlm = SpeechEncoder.from_pretrained(tiny_wavlm)
    assert stage1_feature_dim(wavlm) == 67 and feature_spec(wavlm, window_frames=80)["window_frames"] == 80
    assert feature_spec(wavlm) != feature_spec(wavlm, window_frames=80)
    w2v = SpeechEncoder.from_pretrained(tiny_wav2vec2, layers="all", interpolate="before_transformer")
    spec2 = feature_spec(w2v, stage=2)
    assert (spec2["stage"], spec2["dim"], spec2["num_layers"]) == (2, 32, 3)
    with pytest.raises(MmgtError, match="stage-1 feature spec"):
        stage1_feature_dim(spec2)
    with pytest.raises(MmgtError, match="stage must be 1 or 2"):
        feature_spec(None, stage=3)


def test_feature_spec_records_a_non_default_start_tempo_only(tiny_wavlm):
    encoder = SpeechEncoder.for_stage(tiny_wavlm, 1)
    default, reload = feature_spec(encoder), feature_spec(encoder, start_tempo="reload")
    assert "start_tempo" not in default["librosa"] and reload["librosa"]["start_tempo"] == "reload"
    assert (librosa_start_tempo(default), librosa_start_tempo(reload)) == ("envelope", "reload")
    assert {k: v for k, v in reload["librosa"].items() if k != "start_tempo"} == default["librosa"]
    with pytest.raises(MmgtError, match="start_tempo"):
        feature_spec(encoder, start_tempo="guess")
