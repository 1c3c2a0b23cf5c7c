"""The stage-1 audio condition against the release's own feature code (opt-in: ``pytest -m official``).

``$MMGT_OFFICIAL_SRC/data/audio_extraction/{wavlm_features,baseline_features}.py`` are what the release's inference
script (``scripts/audio2vid.py``) calls per 3.2-s slice: the WavLM block (waveform ``layer_norm``, last layer, last
50 Hz frame repeated, linear interpolation to 25 fps) and the 35 librosa features, concatenated as [WavLM ; librosa].
The speech network on both sides is the same tiny random transformers WavLM (the release's WavLM-Large checkpoint is
the one transformers ports as ``microsoft/wavlm-large``), so these tests check the recipe around it.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from audio.conftest import save_tiny_wavlm, speech_like
from mmgt.audio.encoders import SpeechEncoder
from mmgt.audio.features import stage1_audio_features
from mmgt.audio.librosa_features import FEATURE_NAMES, LIBROSA_FEATURE_DIM, librosa_features
from mmgt.weights.released_stage1 import ReleaseSizes, convert_stage1, release_layout

OFFICIAL_SRC = os.environ.get("MMGT_OFFICIAL_SRC", "")
pytestmark = [
    pytest.mark.official,
    pytest.mark.skipif(
        not OFFICIAL_SRC,
        reason="MMGT_OFFICIAL_SRC is not set: point it at a checkout of the authors' repository (SIA-IDE/MMGT)",
    ),
]
SR = 16_000
SECONDS = 3.2  # the release's slice length: its librosa code asserts exactly 80 frames


@pytest.fixture(scope="module")
def release():
    """The release's two feature modules; its WavLM module must be importable for wavlm_features to load."""
    data = Path(OFFICIAL_SRC) / "data"
    if not (data / "audio_extraction" / "wavlm_features.py").is_file():
        pytest.fail(f"MMGT_OFFICIAL_SRC={OFFICIAL_SRC}: no data/audio_extraction/wavlm_features.py there")
    sys.path[:0] = [str(data / "audio_extraction"), str(data / "wavlm")]
    import baseline_features
    import wavlm_features

    return types.SimpleNamespace(wavlm=wavlm_features, baseline=baseline_features)


@pytest.fixture(scope="module")
def wavlm(tmp_path_factory):
    """A tiny WavLM-Large-like model, loaded by mmgt's stage-1 recipe."""
    return SpeechEncoder.for_stage(save_tiny_wavlm(tmp_path_factory.mktemp("official") / "wavlm"), 1)


class _CpuTorch(types.ModuleType):
    """``torch`` for the release's wavlm_features module, whose ``torch.device("cuda:0")`` is hard-coded."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def device(*args, **kwargs):
        return torch.device("cpu")


RELEASE_WAVLM_CONFIG = types.SimpleNamespace(normalize=True)  # WavLM-Large's cfg.normalize


class _ReleaseModel:
    """The release calls ``model.extract_features(wave)[0]``: the last layer of the same transformers model."""

    def __init__(self, model):
        self.model = model

    def extract_features(self, wave):
        with torch.no_grad():
            return (self.model(wave.float()).last_hidden_state,)


def _write(tmp_path: Path, wave: np.ndarray, name: str = "slice.wav") -> tuple[Path, np.ndarray]:
    """The slice as the release reads it (a 16 kHz wav file) and the samples mmgt gets from the same file."""
    path = tmp_path / name
    sf.write(path, wave, SR)
    return path, sf.read(path, dtype="float32")[0]


@pytest.mark.parametrize("amplitude", [0.1, 1e-4])  # speech level, and -80 dB where the normalisation epsilon counts
def test_wavlm_block_follows_the_release_recipe(release, wavlm, tmp_path, monkeypatch, amplitude):
    monkeypatch.setattr(release.wavlm, "torch", _CpuTorch("torch"))
    path, wave = _write(tmp_path, speech_like(0, amplitude=amplitude))
    expected, _ = release.wavlm.extract_wo_init(_ReleaseModel(wavlm.model), RELEASE_WAVLM_CONFIG, path)
    actual = wavlm.encode(wave, SR)[:, 0]
    error = np.linalg.norm(actual - expected) / np.linalg.norm(expected)
    print(f"WavLM block at amplitude {amplitude}: relative error {error:.2e}")
    assert actual.shape == expected.shape == (80, 32) and error < 1e-5


def test_librosa_block_matches_the_release(release, tmp_path):
    """All 35 columns with ``start_tempo="reload"``; mmgt's default "envelope" start differs in the beats only."""
    beat = FEATURE_NAMES["beat"]
    envelope_mismatches = 0
    for seed in range(10):  # seeds 4, 5, 6 and 9 are slices where the two starting tempos give different beats
        path, wave = _write(tmp_path, speech_like(seed), f"slice{seed}.wav")
        expected, _ = release.baseline.extract(str(path))  # (80, 35)
        actual = librosa_features(wave, SR, start_tempo="reload")
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)
        envelope = librosa_features(wave, SR)
        np.testing.assert_array_equal(envelope[:, : beat.start], actual[:, : beat.start])
        envelope_mismatches += int(not np.array_equal(envelope[:, beat], expected[:, beat]))
    print(f"librosa block: start_tempo='envelope' changes the beats of {envelope_mismatches} of 10 slices")
    assert envelope_mismatches >= 1


def test_condition_reaches_the_converted_projection_unchanged(release, wavlm, tmp_path, monkeypatch):
    """[WavLM ; librosa] through the release's cond_projection = mmgt's condition through the converted one."""
    monkeypatch.setattr(release.wavlm, "torch", _CpuTorch("torch"))
    path, wave = _write(tmp_path, speech_like(7))
    speech, _ = release.wavlm.extract_wo_init(_ReleaseModel(wavlm.model), RELEASE_WAVLM_CONFIG, path)
    music, _ = release.baseline.extract(str(path))
    release_condition = torch.from_numpy(np.concatenate((speech, music), axis=1)).double()  # scripts/audio2vid.py
    mmgt_condition = torch.from_numpy(stage1_audio_features(wave, SR, wavlm, start_tempo="reload")).double()
    assert release_condition.shape == mmgt_condition.shape == (80, LIBROSA_FEATURE_DIM + 32)

    sizes = ReleaseSizes(hidden_dim=16, num_layers=1, ff_dim=8, audio_dim=LIBROSA_FEATURE_DIM + 32)
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=g, dtype=torch.float64) for k, s in release_layout(sizes).items()}
    freqs = 1.0 / (10_000 ** (torch.arange(0, 16, 2).float() / 16))
    state.update({k: freqs for k in state if k.endswith(".freqs")})
    converted, _, _ = convert_stage1(state, num_heads=2)
    expected = F.linear(release_condition, state["cond_projection.weight"], state["cond_projection.bias"])
    actual = F.linear(mmgt_condition, converted["audio_proj.weight"], converted["audio_proj.bias"])
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4 * expected.abs().max().item())
