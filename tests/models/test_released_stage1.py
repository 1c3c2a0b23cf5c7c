"""Converting the authors' released SMGA checkpoint (mmgt.weights.released_stage1): manifest, rules, errors.

The release's own modules are compared in tests/official/test_stage1_parity.py (opt-in); these tests need only the
committed manifest of its key layout.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audio.conftest import save_tiny_wavlm, speech_like
from builders import random_stage1_release
from mmgt.audio.encoders import SpeechEncoder
from mmgt.audio.features import stage1_audio_features
from mmgt.audio.librosa_features import LIBROSA_FEATURE_DIM
from mmgt.diffusion.stage1 import make_stage1_scheduler
from mmgt.errors import ModelFolderError
from mmgt.models.gesture_denoiser import PRESETS, GestureDenoiser
from mmgt.models.rotary import RotaryEmbedding
from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
from mmgt.pipelines.sampling_defaults import POSE_SAMPLING, PoseSampling
from mmgt.weights.released_stage1 import (
    STAGE1_CHECKPOINT,
    STAGE1_STATE_KEY,
    ReleaseSizes,
    convert_stage1,
    load_manifest,
    release_layout,
    stage1_pipeline_kwargs,
)

SMALL = ReleaseSizes(hidden_dim=16, num_layers=2, ff_dim=24, audio_dim=LIBROSA_FEATURE_DIM + 8, window_frames=6)
SMALL_HEADS = 2


def _random_release(layout: dict[str, tuple[int, ...]], hidden_dim: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict in the release layout: random values, and the rotary frequencies the release computes."""
    release = random_stage1_release(layout, seed)
    assert release["rotary.freqs"].shape == (hidden_dim // 2,)
    return release


def test_manifest_is_the_release_layout_at_full_size():
    manifest = load_manifest()
    assert list(manifest.items()) == list(release_layout().items())  # same keys, shapes and order
    assert len(manifest) == 473
    assert sum(torch.Size(s).numel() for s in manifest.values()) == 90_036_882  # the release's ~90.0 M
    assert (STAGE1_CHECKPOINT, STAGE1_STATE_KEY) == ("stage_1/audio2pose_best_model.pt", "ema_state_dict")


def test_full_size_manifest_converts_and_loads_strictly_into_the_released_preset():
    start = time.perf_counter()
    release = _random_release(load_manifest(), 512)
    converted, config, dropped = convert_stage1(release)
    with torch.device("meta"):
        model = GestureDenoiser(**config)
    model.load_state_dict(converted, strict=True, assign=True)  # raises on any missing or unexpected key
    seconds = time.perf_counter() - start
    print(f"full-size stage-1 fill + convert + strict load: {seconds:.2f} s")

    assert {k: v for k, v in model.config.items() if k in PRESETS["released"]} == PRESETS["released"]
    assert (model.config.audio_dim, model.config.num_keypoints, model.config.rotary) == (1059, 134, "token")
    # 11 rotary buffers (the shared rotary, 2 audio-encoder layers, 8 decoder layers) and, per decoder layer, the
    # merged self-attention (4 tensors), two third norms and two third FiLMs (2 tensors each).
    assert len(dropped) == 11 + 8 * (4 + 2 * 2 + 2 * 2)
    # 34 attentions loaded (4 per decoder layer, 1 per audio-encoder layer): fused q/k/v turns 2 tensors into 6.
    assert len(release) - len(dropped) + (8 * 4 + 2) * 4 == len(converted) == len(model.state_dict())
    assert seconds < 30


def test_rules_by_value_qkv_order_audio_columns_renames():
    release = _random_release(release_layout(SMALL), SMALL.hidden_dim)
    converted, config, dropped = convert_stage1(release, num_heads=SMALL_HEADS)
    d = SMALL.hidden_dim

    # Fused in_proj: q, k, v stacked in that order along the output axis.
    fused = "seqTransDecoder.stack.1.body_cross_attn"
    for i, name in enumerate(("to_q", "to_k", "to_v")):
        target = f"layers.1.body_block.cross_attn.{name}"
        assert torch.equal(converted[f"{target}.weight"], release[f"{fused}.in_proj_weight"][i * d : (i + 1) * d])
        assert torch.equal(converted[f"{target}.bias"], release[f"{fused}.in_proj_bias"][i * d : (i + 1) * d])
    assert torch.equal(converted["layers.1.body_block.cross_attn.to_out.weight"], release[f"{fused}.out_proj.weight"])
    assert torch.equal(
        converted["audio_encoder.1.attn.to_v.weight"], release["cond_encoder.1.self_attn.in_proj_weight"][2 * d :]
    )

    # Audio columns: release [speech ; librosa] -> mmgt [librosa ; speech]; the same audio projects the same.
    release_audio = torch.randn(3, SMALL.audio_dim)
    speech, librosa = release_audio.split([SMALL.audio_dim - LIBROSA_FEATURE_DIM, LIBROSA_FEATURE_DIM], dim=-1)
    mmgt_audio = torch.cat([librosa, speech], dim=-1)
    expected = F.linear(release_audio, release["cond_projection.weight"], release["cond_projection.bias"])
    actual = F.linear(mmgt_audio, converted["audio_proj.weight"], converted["audio_proj.bias"])
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-5)

    # Renames, one per kind of module.
    pairs = {
        "input_projection.weight": "face_encoder.weight",
        "null_cond_embed": "null_audio_tokens",
        "non_attn_cond_projection.3.bias": "audio_pool.3.bias",
        "time_mlp.1.weight": "time_embed.0.weight",
        "to_time_tokens.0.bias": "time_tokens.bias",
        "norm_cond.weight": "memory_norm.weight",
        "seqTransDecoder.stack.0.norm_face_2.bias": "layers.0.face_block.norm_ca.bias",
        "seqTransDecoder.stack.1.film_body_1.block.1.weight": "layers.1.body_block.film_sa.proj.weight",
        "seqTransDecoder.stack.1.film_final.block.1.bias": "layers.1.merge.film.proj.bias",
        "seqTransDecoder.stack.0.linear2.weight": "layers.0.merge.ff.3.weight",
        "cond_encoder.0.linear1.weight": "audio_encoder.0.ff.0.weight",
        "final_layer.bias": "proj_out.bias",
    }
    for source, target in pairs.items():
        assert torch.equal(converted[target], release[source]), source
    assert converted["face_encoder.weight"].data_ptr() != release["input_projection.weight"].data_ptr()  # a copy

    assert "seqTransDecoder.stack.0.self_attn.in_proj_weight: merged self-attention" in "\n".join(dropped)
    assert any(line.startswith("seqTransDecoder.stack.1.film_face_3.block.1.weight: third FiLM") for line in dropped)
    assert any(line.startswith("cond_encoder.1.rotary.freqs: rotary frequencies") for line in dropped)
    model = GestureDenoiser(**config)
    model.load_state_dict(converted, strict=True)
    assert (model.config.hidden_dim, model.config.num_heads, model.config.window_frames) == (16, 2, 6)


def test_ddp_module_prefix_is_removed():
    release = _random_release(release_layout(SMALL), SMALL.hidden_dim)
    plain = convert_stage1(release, num_heads=SMALL_HEADS)[0]
    prefixed = convert_stage1({f"module.{k}": v for k, v in release.items()}, num_heads=SMALL_HEADS)[0]
    assert plain.keys() == prefixed.keys() and all(torch.equal(plain[k], prefixed[k]) for k in plain)


def _corrupt(change):
    release = _random_release(release_layout(SMALL), SMALL.hidden_dim)
    change(release)
    return release


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda sd: sd.update(extra=torch.zeros(1)), r"1 unknown key\(s\), the first 'extra'"),
        (lambda sd: sd.pop("seqTransDecoder.stack.1.norm_body_3.bias"), r"missing, the first 'seqTransDecoder"),
        (lambda sd: sd.pop("null_cond_hidden"), r"documented key 'null_cond_hidden' is missing"),
        (lambda sd: sd.update({"norm_cond.bias": torch.zeros(17)}), r"norm_cond.bias has shape \(17,\), expected"),
        (lambda sd: sd.update({"final_layer.weight": torch.zeros(300, 16)}), "134 keypoints x 3"),
        (lambda sd: sd["cond_encoder.0.rotary.freqs"].mul_(1.001), r"cond_encoder.0.rotary.freqs differs .* 1.00e-03"),
        (lambda sd: sd.update({"rotary.freqs": [1.0] * 8}), "'rotary.freqs' is a list, not a tensor"),
    ],
)
def test_corrupt_state_dicts_give_one_line_errors(change, message):
    with pytest.raises(ModelFolderError, match=message) as info:
        convert_stage1(_corrupt(change), num_heads=SMALL_HEADS)
    assert "\n" not in str(info.value)


def test_a_checkpoint_without_speech_features_is_refused():
    release = _random_release(release_layout(ReleaseSizes(hidden_dim=16, num_layers=1, ff_dim=8, audio_dim=35)), 16)
    with pytest.raises(ModelFolderError, match="takes 35 features per frame"):
        convert_stage1(release, num_heads=2)
    with pytest.raises(ModelFolderError, match="non-empty state dict"):
        convert_stage1({})


def test_released_sampling_is_the_release_sampler():
    # The release's ddim_sample: 50 steps, eta 1, guidance_weight 2 (src/audio2pose_model/{SMGA,diffusion}.py).
    assert POSE_SAMPLING["released"] == PoseSampling(num_inference_steps=50, guidance_scale=2.0, eta=1.0)


def test_recomputed_frequencies_are_the_token_rotary_ones():
    # The converter checks the checkpoint's buffers against mmgt's own rotary: the two formulas agree to float32.
    release = 1.0 / (10_000 ** (torch.arange(0, 512, 2).float() / 512))
    mmgt = RotaryEmbedding(512, interleaved=True).inv_freq
    assert ((release.double() - mmgt.double()).abs() / release.double()).max() < 1e-6


def test_pipeline_settings_are_the_releases(tmp_path):
    encoder = SpeechEncoder.for_stage(save_tiny_wavlm(tmp_path / "wavlm"), 1)
    kwargs = stage1_pipeline_kwargs(encoder)
    spec = kwargs["audio_features"]
    assert (kwargs["target_offset"], kwargs["normalize_scores"]) == (0, True)
    recipe = (spec["window_frames"], spec["librosa"]["start_tempo"], spec["speech"]["normalize_eps"])
    assert recipe == (80, "reload", 1e-5)

    release = _random_release(release_layout(ReleaseSizes(16, 1, 8, LIBROSA_FEATURE_DIM + 32)), 16)
    converted, config, _ = convert_stage1(release, num_heads=2)
    denoiser = GestureDenoiser(**config)
    denoiser.load_state_dict(converted)
    pipe = AudioToPosePipeline(denoiser, make_stage1_scheduler(), **kwargs)
    pipe.set_audio_encoder(encoder)
    assert pipe.sampling == POSE_SAMPLING["released"]
    # The window features follow the saved recipe: beats from the 22.05 kHz start tempo (seed 4: they differ).
    wave = speech_like(4)
    features = pipe.window_features(wave, 16_000, index=0, window=80)
    np.testing.assert_array_equal(features, stage1_audio_features(wave, 16_000, encoder, start_tempo="reload"))
    assert not np.array_equal(features, stage1_audio_features(wave, 16_000, encoder))
