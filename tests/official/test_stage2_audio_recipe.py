"""The stage-2 audio recipe against the release's own feature code (T2, opt-in): a tiny random wav2vec2-base-like
model, features through the release's AudioProcessor and through mmgt's SpeechEncoder + stack_context."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import soundfile as sf
import torch

from mmgt.audio.encoders import SpeechEncoder
from mmgt.audio.features import stage2_audio_features
from mmgt.audio.windows import stack_context

from .stage2_release import import_release, requires_release

pytestmark = [pytest.mark.official, requires_release]
SR = 16000


@pytest.fixture(scope="module")
def wav2vec2(tmp_path_factory):
    """wav2vec2-base's layout (group feature norm, do_normalize) at a tiny width, random weights."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = tmp_path_factory.mktemp("w2v") / "wav2vec2"
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
    )
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, do_normalize=True).save_pretrained(folder)
    return folder


def _release_audio_processor():
    """The release's AudioProcessor; its imports of the vocal separator and video utilities are unused here."""
    import_release()  # puts MMGT_OFFICIAL_SRC on the path
    stubs = {
        "audio_separator": types.ModuleType("audio_separator"),
        "audio_separator.separator": types.SimpleNamespace(Separator=None),
        "src.utils.util": types.SimpleNamespace(resample_audio=None),  # needs torchvision; only used with a separator
    }
    for name, module in stubs.items():
        sys.modules.setdefault(name, module)
    from src.dataset.audio_processor import AudioProcessor

    return AudioProcessor


def _adapt_to_transformers_5(model) -> None:
    """Let the release's Wav2VecModel.forward run unchanged under transformers >= 5.

    It sets ``config.output_attentions = True`` (allowed with eager attention only) and reads ``hidden_states`` from
    ``self.encoder(...)``, which transformers 5 no longer fills when the encoder is called on its own: forward hooks
    record every layer's output and put them where its code reads them (index 0, the encoder input, is never read).
    """
    from transformers.modeling_outputs import BaseModelOutput

    model.set_attn_implementation("eager")
    outputs = []
    for layer in model.encoder.layers:
        layer.register_forward_hook(lambda m, args, out: outputs.append(out[0] if isinstance(out, tuple) else out))

    def with_hidden_states(module, args, kwargs, out):
        first = args[0] if args else kwargs["hidden_states"]
        states, last = (first, *outputs), out[0]
        outputs.clear()
        return BaseModelOutput(last_hidden_state=last, hidden_states=states)

    model.encoder.register_forward_hook(with_hidden_states, with_kwargs=True)


@pytest.mark.parametrize("seconds", [1.0, 1.37])
def test_stage2_features_match_the_release(wav2vec2, tmp_path, seconds, record_property):
    wave = (0.3 * np.random.default_rng(1).standard_normal(int(seconds * SR))).astype(np.float32)
    path = tmp_path / "speech.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    processor = _release_audio_processor()(SR, 25, str(wav2vec2), only_last_features=False, device="cpu")
    _adapt_to_transformers_5(processor.audio_encoder)
    expected, length = processor.preprocess(str(path))  # (T, L, D): hidden states 1..L, T = ceil(s x 25)
    ours = stage2_audio_features(wave, SR, SpeechEncoder.for_stage(wav2vec2, 2))
    assert ours.shape == tuple(expected.shape) == (int(np.ceil(seconds * 25)), 3, 32) and length == len(ours)
    error = float(np.abs(ours - expected.numpy()).max() / np.abs(expected.numpy()).max())
    print(f"stage-2 audio features, {seconds} s: max relative difference {error:.1e}")
    record_property(f"audio_rel_error_{seconds}", error)
    assert error < 1e-4  # float32 on both sides, different attention kernels
    # Official code (its audio2vid's process_audio_emb): frame k reads frames k-2..k+2, clamped at both ends.
    windows = stack_context(ours, 2)
    assert windows.shape == (len(ours), 5, 3, 32)
    np.testing.assert_array_equal(windows[0, :3], ours[[0, 0, 0]])
    np.testing.assert_array_equal(windows[-1, 2:], ours[[-1, -1, -1]])
    np.testing.assert_array_equal(windows[5], ours[3:8])
