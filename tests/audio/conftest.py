"""Tiny random-init speech encoders saved to a temporary folder (built from config; nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from builders import TINY_SPEECH


def speech_like(seed: int, seconds: float = 3.2, amplitude: float = 0.1, sample_rate: int = 16_000) -> np.ndarray:
    """Eight voiced "syllables" (harmonics of a gliding f0 under Hann envelopes) over a faint noise floor; float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / sample_rate) / k for k in range(1, 8))
    envelope = np.zeros(n)
    for start in rng.uniform(0, seconds - 0.3, 8):
        a, b = int(start * sample_rate), int((start + rng.uniform(0.1, 0.3)) * sample_rate)
        envelope[a:b] = np.hanning(b - a)
    return (amplitude * envelope * voiced + 0.05 * amplitude * rng.standard_normal(n)).astype(np.float32)


def save_tiny_wavlm(folder: Path, num_hidden_layers: int = 2) -> Path:
    """WavLM-Large-like ("layer" feature norm, stable layer norm), tiny and seeded."""
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(0)
    config = WavLMConfig(
        num_hidden_layers=num_hidden_layers,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_buckets=16,
        max_bucket_distance=32,
        **TINY_SPEECH,
    )
    WavLMModel(config).save_pretrained(folder)
    return folder


def save_tiny_wav2vec2(folder: Path) -> Path:
    """wav2vec2-base-like ("group" feature norm, post layer norm), tiny and seeded."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(1)
    Wav2Vec2Model(Wav2Vec2Config(num_hidden_layers=3, **TINY_SPEECH)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_wavlm(tmp_path_factory) -> Path:
    return save_tiny_wavlm(tmp_path_factory.mktemp("enc") / "wavlm")


@pytest.fixture(scope="session")
def tiny_wav2vec2(tmp_path_factory) -> Path:
    return save_tiny_wav2vec2(tmp_path_factory.mktemp("enc") / "wav2vec2")
