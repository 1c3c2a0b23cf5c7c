"""SpeechEncoder on tiny random WavLM / wav2vec2 models: frame counts, layers, both recipes, chunking, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmgt.audio.encoders import SpeechEncoder
from mmgt.errors import MmgtError, ModelFolderError

from .conftest import save_tiny_wavlm

SR = 16000


def _noise(duration: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 0.3, int(round(duration * SR))).astype(np.float32)


def test_stage1_recipe_normalises_like_layer_norm(tiny_wavlm):
    """Stage 1's reference code normalises with F.layer_norm (eps 1e-5); transformers' default is 1e-7.

    The two differ on quiet audio only, so the check uses a -80 dB waveform.
    """
    stage1 = SpeechEncoder.for_stage(tiny_wavlm, 1)
    assert (stage1.normalize, stage1.normalize_eps, stage1.config_dict()["normalize_eps"]) == (True, 1e-5, 1e-5)
    assert SpeechEncoder.for_stage(tiny_wavlm, 2).normalize_eps == 1e-7
    quiet = 1e-4 * _noise(3.2, seed=4)
    layer_norm = F.layer_norm(torch.from_numpy(quiet)[None], (len(quiet),))[0].numpy()  # the release's line
    plain = SpeechEncoder.from_pretrained(tiny_wavlm, normalize=False)
    np.testing.assert_allclose(stage1.encode(quiet, SR), plain.encode(layer_norm, SR), rtol=0, atol=1e-5)
    transformers_eps = SpeechEncoder.from_pretrained(tiny_wavlm).encode(quiet, SR)
    assert np.abs(transformers_eps - stage1.encode(quiet, SR)).max() > 1e-3


@pytest.mark.parametrize("interpolate", ["after", "before_transformer"])
def test_frame_counts_layers_and_width(tiny_wavlm, tiny_wav2vec2, interpolate):
    for folder, num_layers in ((tiny_wavlm, 2), (tiny_wav2vec2, 3)):
        last = SpeechEncoder.from_pretrained(folder, layers="last", interpolate=interpolate)
        every = SpeechEncoder.from_pretrained(folder, layers="all", interpolate=interpolate)
        for duration, frames in ((0.5, 13), (1.0, 25), (3.21, 81)):
            out = last.encode(_noise(duration), SR)
            assert out.shape == (frames, 1, 32) and out.dtype == np.float32
        out = every.encode(_noise(1.0), SR)
        assert out.shape == (25, num_layers, 32) and every.num_layers == num_layers and every.hidden_size == 32
        # The last of "all" is the model output, i.e. exactly what "last" returns.
        np.testing.assert_allclose(out[:, -1], last.encode(_noise(1.0), SR)[:, 0], rtol=0, atol=1e-6)


def test_deterministic_and_resamples_other_rates(tiny_wavlm):
    enc = SpeechEncoder.from_pretrained(tiny_wavlm)
    wave = _noise(1.3)
    np.testing.assert_array_equal(enc.encode(wave, SR), enc.encode(wave, SR))
    assert enc.encode(np.zeros(4410, dtype=np.float32), 44100).shape == (3, 1, 32)  # 0.1 s -> 3 frames
    assert enc.encode(np.zeros(100, dtype=np.float32), SR).shape == (1, 1, 32)  # shorter than one conv window


def test_after_matches_the_official_recipe(tiny_wavlm):
    """Run the model, append the last 50 Hz frame, interpolate linearly (align_corners) to T = 80 for 3.2 s."""
    enc = SpeechEncoder.from_pretrained(tiny_wavlm, layers="last", interpolate="after")
    assert enc.normalize  # "layer" feature norm -> waveform normalisation, as the official WavLM-Large code
    wave = _noise(3.2, seed=3)
    x = torch.from_numpy(wave)
    x = ((x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7))[None]
    with torch.no_grad():
        hidden = enc.model(x).last_hidden_state  # (1, 159, D)
    assert hidden.shape[1] == 159
    hidden = torch.cat([hidden, hidden[:, -1:]], dim=1).transpose(1, 2)  # (1, D, 160)
    expected = F.interpolate(hidden, size=80, mode="linear", align_corners=True).transpose(1, 2)[0]
    np.testing.assert_allclose(enc.encode(wave, SR)[:, 0], expected.numpy(), rtol=0, atol=1e-5)


def test_before_transformer_matches_explicit_composition(tiny_wav2vec2):
    """Conv features -> interpolate to T -> feature_projection -> encoder, composed by hand."""
    enc = SpeechEncoder.from_pretrained(tiny_wav2vec2, layers="last", interpolate="before_transformer")
    assert not enc.normalize  # "group" feature norm and no preprocessor config
    wave = _noise(2.03, seed=4)  # T = ceil(50.75) = 51
    model = enc.model
    with torch.no_grad():
        conv = model.feature_extractor(torch.from_numpy(wave)[None])  # (1, C, F50)
        conv = F.interpolate(conv, size=51, mode="linear", align_corners=True).transpose(1, 2)
        hidden, _ = model.feature_projection(conv)
        expected = model.encoder(hidden).last_hidden_state[0]  # (51, D)
    out = enc.encode(wave, SR)
    assert out.shape == (51, 1, 32)
    np.testing.assert_allclose(out[:, 0], expected.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("interpolate", ["after", "before_transformer"])
def test_chunked_equals_unchunked_when_the_receptive_field_fits(tmp_path, interpolate):
    # Without transformer layers every output frame depends on a bounded stretch of audio (conv front end +
    # positional conv), so chunks with enough context must reproduce the one-pass result. 3.2 s is a whole number
    # of 25 fps frames, where per-chunk and global interpolation sample the same conv frames.
    folder = save_tiny_wavlm(tmp_path / "wavlm0", num_hidden_layers=0)
    whole = SpeechEncoder.from_pretrained(folder, interpolate=interpolate, chunk_seconds=60.0)
    chunked = SpeechEncoder.from_pretrained(folder, interpolate=interpolate, chunk_seconds=0.5, context_seconds=0.4)
    wave = _noise(3.2, seed=5)
    np.testing.assert_allclose(chunked.encode(wave, SR), whole.encode(wave, SR), rtol=0, atol=1e-5)


def test_chunked_transformer_stays_close(tiny_wavlm):
    # With attention layers chunking is an approximation: same shape, frames near chunk centres nearly equal.
    whole = SpeechEncoder.from_pretrained(tiny_wavlm, layers="all")
    chunked = SpeechEncoder.from_pretrained(tiny_wavlm, layers="all", chunk_seconds=1.0, context_seconds=0.5)
    wave = _noise(3.0, seed=6)
    a, b = whole.encode(wave, SR), chunked.encode(wave, SR)
    assert a.shape == b.shape == (75, 2, 32)
    assert np.isfinite(b).all()
    assert np.abs(a - b).mean() < 0.01 * np.abs(a).mean()  # about 0.001 on this model


def test_config_dict_is_json_and_describes_the_recipe(tiny_wavlm, tiny_wav2vec2):
    enc = SpeechEncoder.from_pretrained(tiny_wavlm, layers="all", interpolate="before_transformer")
    cfg = json.loads(json.dumps(enc.config_dict()))
    assert cfg["folder"] == "wavlm" and cfg["model_type"] == "wavlm"
    assert (cfg["layers"], cfg["interpolate"], cfg["hidden_size"], cfg["num_layers"]) == (
        "all",
        "before_transformer",
        32,
        2,
    )
    other = SpeechEncoder.from_pretrained(tiny_wav2vec2).config_dict()
    assert other["fingerprint"] != cfg["fingerprint"]


def test_preprocessor_config_controls_normalisation(tmp_path, tiny_wav2vec2):
    import shutil

    folder = shutil.copytree(tiny_wav2vec2, tmp_path / "w2v")
    (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True, "sampling_rate": 16000}))
    assert SpeechEncoder.from_pretrained(folder).normalize
    assert not SpeechEncoder.from_pretrained(folder, normalize=False).normalize


def test_missing_folder_config_or_weights(tmp_path, tiny_wav2vec2):
    with pytest.raises(ModelFolderError, match=r"WavLM folder .*nowhere: does not exist"):
        SpeechEncoder.from_pretrained(tmp_path / "nowhere", what="WavLM")
    empty = tmp_path / "wavlm"
    empty.mkdir()
    with pytest.raises(ModelFolderError, match=r"WavLM folder .*wavlm: no config\.json"):
        SpeechEncoder.from_pretrained(empty, what="WavLM")
    (empty / "config.json").write_text((tiny_wav2vec2 / "config.json").read_text())
    with pytest.raises(ModelFolderError, match=r"speech encoder folder .*wavlm: no weights"):
        SpeechEncoder.from_pretrained(empty)
    (empty / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelFolderError, match=r"speech encoder folder .*wavlm: cannot load the model \("):
        SpeechEncoder.from_pretrained(empty)
    (empty / "config.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match=r"cannot read config\.json"):
        SpeechEncoder.from_pretrained(empty)


def test_bad_modes_are_rejected(tiny_wavlm):
    with pytest.raises(MmgtError, match="layers"):
        SpeechEncoder.from_pretrained(tiny_wavlm, layers="middle")
    with pytest.raises(MmgtError, match="interpolate"):
        SpeechEncoder.from_pretrained(tiny_wavlm, interpolate="before")
