"""GestureDenoiser (SMGA): presets, serialisation, CFG null condition, face/body split, stacking, rotary, overfit."""

from __future__ import annotations

import pytest
import torch

from mmgt.constants import FACE, NUM_KEYPOINTS
from mmgt.diffusion import make_stage1_scheduler, sample_window, smga_loss
from mmgt.errors import MmgtError
from mmgt.models.gesture_denoiser import PRESETS, Attention, FiLM, GestureDenoiser
from mmgt.models.rotary import RotaryEmbedding

K = NUM_KEYPOINTS
SMALL = dict(audio_dim=12, hidden_dim=32, num_layers=2, num_heads=2, ff_dim=64, window_frames=8, dropout=0.0)
FACE_DIMS = torch.zeros(K, 3, dtype=torch.bool)
FACE_DIMS[list(FACE)] = True
FACE_DIMS = FACE_DIMS.flatten()  # (K*3,) keypoint-major frame vector: face = dims 72-275


def _inputs(batch=2, frames=8, audio_dim=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.rand(batch, frames, K, 3, generator=g) * 2 - 1
    cond_pose = torch.rand(batch, K, 3, generator=g) * 2 - 1
    audio = torch.randn(batch, frames, audio_dim, generator=g)
    timestep = torch.randint(0, 1000, (batch,), generator=g)
    return sample, timestep, cond_pose, audio


def _live(model: GestureDenoiser, seed: int = 0) -> GestureDenoiser:
    """Randomise the zero-initialised layers (FiLM, output) so every conditioning path reaches the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, FiLM):
                module.proj.weight.normal_(0, 0.05, generator=g)
        model.proj_out.weight.normal_(0, 0.05, generator=g)
    return model.eval()


def _small(**overrides) -> GestureDenoiser:
    torch.manual_seed(0)
    return GestureDenoiser(**{**SMALL, **overrides})


# -- construction and presets -----------------------------------------------------------------------------------------


def test_tiny_preset_forward_shape():
    torch.manual_seed(0)
    model = GestureDenoiser.from_preset("tiny").eval()
    assert (model.config.hidden_dim, model.config.window_frames, model.config.audio_dim) == (128, 80, 1059)
    with torch.no_grad():
        assert model(*_inputs(2, 80, 1059)).shape == (2, 80, K, 3)


def test_any_window_length_works_with_the_null_sequence():
    model = _live(_small())  # window_frames = 8
    for frames in (5, 8, 19):  # shorter (null sequence sliced), equal, longer (tiled)
        sample, timestep, cond_pose, audio = _inputs(2, frames)
        with torch.no_grad():
            out = model(sample, timestep, cond_pose, audio, force_uncond=True)
        assert out.shape == (2, frames, K, 3) and torch.isfinite(out).all()
    assert torch.equal(
        model.null_audio_tokens.repeat(1, 3, 1)[:, :19],
        model._apply_null_condition(torch.zeros(1, 19, 32), torch.zeros(1, 32), torch.tensor([True]))[0],
    )


def test_paper_preset_parameter_count():
    # Built on the meta device: shapes only, no memory or init cost. 73.6 M trainable parameters; the released
    # checkpoint's ~90 M also counts modules its forward never uses (see the model docstring / report).
    with torch.device("meta"):
        paper = GestureDenoiser.from_preset("paper")
        released = GestureDenoiser.from_preset("released")
    assert paper.num_parameters() == 73_619_858
    encoder = 2 * K * 3 * 512 + 512  # one Linear(804 -> 512)
    assert paper.num_parameters() - released.num_parameters() == encoder
    assert PRESETS["paper"] == dict(hidden_dim=512, num_layers=8, num_heads=8, ff_dim=1024, window_frames=80)


def test_fresh_model_predicts_zero_and_film_is_identity():
    model = _small().eval()
    films = [m for m in model.modules() if isinstance(m, FiLM)]
    assert len(films) == 2 * 2 * 2 + 2  # per layer: 2 per Motion block x 2 blocks + 1 Merge
    assert all(not f.proj.weight.any() and not f.proj.bias.any() for f in films)
    with torch.no_grad():
        assert not model(*_inputs()).any()  # zero output layer: x̂0 = 0 at init


def test_config_errors_are_mmgt_errors():
    with pytest.raises(MmgtError, match="body_stream"):
        GestureDenoiser(**SMALL, body_stream="sideways")
    with pytest.raises(MmgtError, match="num_heads=3"):
        GestureDenoiser(**{**SMALL, "num_heads": 3})
    with pytest.raises(MmgtError, match="face_indices"):
        GestureDenoiser(**SMALL, face_indices=[0, 134])
    with pytest.raises(MmgtError, match="'huge'"):
        GestureDenoiser.from_preset("huge")


def test_input_errors_name_the_argument():
    model = _small().eval()
    sample, timestep, cond_pose, audio = _inputs()
    with pytest.raises(MmgtError, match=r"sample must have shape \(B, F, 134, 3\), got \(2, 8, 133, 3\)"):
        model(sample[:, :, :-1], timestep, cond_pose, audio)
    with pytest.raises(MmgtError, match=r"audio must have shape \(2, 8, 12\), got \(2, 7, 12\)"):
        model(sample, timestep, cond_pose, audio[:, :-1])
    with pytest.raises(MmgtError, match="cond_pose"):
        model(sample, timestep, cond_pose[:1], audio)


# -- serialisation ----------------------------------------------------------------------------------------------------


def test_save_pretrained_round_trip_gives_identical_output(tmp_path):
    model = _live(_small(share_motion_encoder=True, body_stream="carry"))
    inputs = _inputs()
    with torch.no_grad():
        expected = model(*inputs)
    model.save_pretrained(tmp_path / "denoiser")
    loaded = GestureDenoiser.from_pretrained(tmp_path / "denoiser").eval()
    assert loaded.config.face_indices == list(FACE)
    assert (loaded.config.share_motion_encoder, loaded.config.body_stream) == (True, "carry")
    with torch.no_grad():
        assert torch.equal(loaded(*inputs), expected)


# -- classifier-free guidance condition -------------------------------------------------------------------------------


def test_force_uncond_ignores_audio_and_different_audio_changes_the_output():
    model = _live(_small())
    sample, timestep, cond_pose, audio = _inputs()
    other_audio = torch.randn_like(audio)
    with torch.no_grad():
        uncond_a = model(sample, timestep, cond_pose, audio, force_uncond=True)
        uncond_b = model(sample, timestep, cond_pose, other_audio, force_uncond=True)
        cond_a = model(sample, timestep, cond_pose, audio)
        cond_b = model(sample, timestep, cond_pose, other_audio)
    assert torch.equal(uncond_a, uncond_b)
    assert (cond_a - cond_b).abs().max() > 1e-3
    assert (cond_a - uncond_a).abs().max() > 1e-3


def test_training_dropout_uses_null_condition_and_drop_audio_overrides_it():
    model = _live(_small(cond_drop_prob=1.0))  # dropout=0: train mode differs only by the condition draw
    sample, timestep, cond_pose, audio = _inputs()
    with torch.no_grad():
        uncond = model(sample, timestep, cond_pose, audio, force_uncond=True)
        cond = model(sample, timestep, cond_pose, audio)
        model.train()
        drawn = model(sample, timestep, cond_pose, torch.randn_like(audio))  # p = 1: every sample dropped
        mixed = model(sample, timestep, cond_pose, audio, drop_audio=torch.tensor([True, False]))
    assert torch.equal(drawn, uncond)
    assert torch.equal(mixed[0], uncond[0]) and torch.equal(mixed[1], cond[1])


# -- structure --------------------------------------------------------------------------------------------------------


def _capture(module, store, key):
    return module.register_forward_hook(lambda mod, args, out: store.__setitem__(key, (args[0].detach(), out)))


def _encoder_inputs(model):
    """(x (B, F, K*3), p0 repeated (B, F, K*3), face encoder input, body encoder input) of one forward."""
    sample, timestep, cond_pose, audio = _inputs()
    seen = {}
    hooks = [_capture(model.face_encoder, seen, "face"), _capture(model.body_encoder, seen, "body")]
    with torch.no_grad():
        model(sample, timestep, cond_pose, audio)
    for hook in hooks:
        hook.remove()
    x = sample.flatten(2)
    return x, cond_pose.flatten(1)[:, None].expand_as(x), seen["face"][0], seen["body"][0]


def test_face_and_body_encoders_see_only_their_keypoints():
    x, cond, face_in, body_in = _encoder_inputs(_small().eval())  # inputs (B, F, 2*K*3) = [x_t ⊙ M ; p0 ⊙ M]
    assert torch.equal(face_in, torch.cat([x * FACE_DIMS, cond * FACE_DIMS], dim=-1))
    assert torch.equal(body_in, torch.cat([x * ~FACE_DIMS, cond * ~FACE_DIMS], dim=-1))
    assert not face_in[..., : K * 3][..., ~FACE_DIMS].any() and not body_in[..., K * 3 :][..., FACE_DIMS].any()


def test_one_stream_ablation_feeds_every_keypoint_to_both_encoders():
    split, one = _small().eval(), _small(split_streams=False).eval()
    assert one.num_parameters() == split.num_parameters()
    x, cond, face_in, body_in = _encoder_inputs(one)
    both = torch.cat([x, cond], dim=-1)
    assert torch.equal(face_in, both) and torch.equal(body_in, both)


def test_shared_motion_encoder_has_one_linear():
    separate, shared = _small(), _small(share_motion_encoder=True)
    assert shared.body_encoder is None
    assert separate.num_parameters() - shared.num_parameters() == 2 * K * 3 * 32 + 32


@pytest.mark.parametrize("body_stream", ["merged", "carry", "static"])
def test_body_stream_decides_what_the_next_layer_receives(body_stream):
    model = _small(body_stream=body_stream).eval()
    seen = {}
    hooks = [
        _capture(model.body_encoder, seen, "body_embedding"),
        _capture(model.layers[0].face_block, seen, "face0"),
        _capture(model.layers[0].body_block, seen, "body0"),
        _capture(model.layers[0].merge, seen, "merge0"),
        _capture(model.layers[1].face_block, seen, "face1"),
        _capture(model.layers[1].body_block, seen, "body1"),
    ]
    with torch.no_grad():
        model(*_inputs())
    for hook in hooks:
        hook.remove()
    face1_in, body1_in = seen["face1"][0], seen["body1"][0]
    expected = {
        "merged": (seen["merge0"][1], seen["merge0"][1]),
        "carry": (seen["face0"][1], seen["body0"][1]),
        "static": (seen["merge0"][1], seen["body_embedding"][1]),
    }[body_stream]
    assert torch.equal(face1_in, expected[0]) and torch.equal(body1_in, expected[1])


def test_rotary_scores_depend_on_relative_position_only():
    rotary = RotaryEmbedding(8)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 8, generator=g), torch.randn(1, 8, generator=g)

    def score(m, n):
        return (rotary(q, torch.tensor([m])) * rotary(k, torch.tensor([n]))).sum()

    assert torch.allclose(score(3, 1), score(10, 8), atol=1e-5)
    assert not torch.allclose(score(3, 1), score(3, 2), atol=1e-3)
    assert torch.equal(rotary(q, torch.tensor([0])), q)  # position 0 is the identity


def test_time_tokens_look_the_same_from_every_frame():
    torch.manual_seed(0)
    attn = Attention(16, num_heads=2, dropout=0.0, rotary_theta=10_000.0)
    query = torch.randn(1, 1, 16).expand(1, 6, 16)  # the same content at frames 0..5
    time_tokens = torch.randn(1, 2, 16)
    with torch.no_grad():
        free = attn(query, time_tokens, num_free_keys=2)  # (1, 6, 16)
        rotated = attn(query, time_tokens, num_free_keys=0)  # keys rotated as positions 0, 1
    assert torch.allclose(free, free[:, :1].expand_as(free), atol=1e-6)
    assert not torch.allclose(rotated, rotated[:, :1].expand_as(rotated), atol=1e-4)


def _rotate_adjacent_pairs(x: torch.Tensor, positions: torch.Tensor, theta: float = 10_000.0) -> torch.Tensor:
    """The released rotary in float64: pair (x_2i, x_2i+1) turned by position * theta^(-2i/D).

    The frequencies are float32 values, like the release's ``freqs`` buffer and mmgt's ``inv_freq``; the rest is
    float64.
    """
    dim = x.shape[-1]
    inv_freq = (theta ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)).double()  # (D/2,)
    angles = positions.double()[:, None] * inv_freq  # (N, D/2)
    even, odd = x.double()[..., 0::2], x.double()[..., 1::2]
    out = torch.stack([even * angles.cos() - odd * angles.sin(), even * angles.sin() + odd * angles.cos()], dim=-1)
    return out.flatten(-2)


def test_interleaved_rotary_turns_adjacent_pairs_in_float64():
    x = torch.randn(2, 90, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rotary = RotaryEmbedding(16, interleaved=True)
    # Float64 angles for float64 inputs: at position 89 float32 angles would be off by up to ~5e-6.
    torch.testing.assert_close(rotary(x), _rotate_adjacent_pairs(x, torch.arange(90)), rtol=0, atol=1e-12)
    # The same maths as the half split on permuted features: (x0, x1, x2, x3) <-> (x0, x2 | x1, x3).
    perm = torch.cat([torch.arange(0, 16, 2), torch.arange(1, 16, 2)])
    half_split = RotaryEmbedding(16)(x[..., perm])
    torch.testing.assert_close(rotary(x)[..., perm], half_split, rtol=0, atol=1e-12)


def test_token_rotary_rotates_whole_tokens_before_the_projections():
    torch.manual_seed(0)
    attn = Attention(16, num_heads=2, dropout=0.0, rotary_theta=10_000.0, rotary="token").double()
    x, memory = torch.randn(1, 5, 16, dtype=torch.float64), torch.randn(1, 7, 16, dtype=torch.float64)
    for context in (None, memory):  # self-attention; cross-attention to 5 audio + 2 time tokens at positions 5, 6
        keys = x if context is None else context
        q = attn.to_q(_rotate_adjacent_pairs(x, torch.arange(5)))
        k = attn.to_k(_rotate_adjacent_pairs(keys, torch.arange(keys.shape[1])))
        v = attn.to_v(keys)  # values from the unrotated tokens
        heads = [slice(0, 8), slice(8, 16)]
        out = torch.cat([(q[..., h] @ k[..., h].mT / 8**0.5).softmax(-1) @ v[..., h] for h in heads], dim=-1)
        with torch.no_grad():
            torch.testing.assert_close(attn(x, context, num_free_keys=2), attn.to_out(out), rtol=0, atol=1e-12)


def test_released_preset_rotates_tokens_and_mmgt_presets_rotate_heads():
    with torch.device("meta"):
        released = GestureDenoiser.from_preset("released")
        paper = GestureDenoiser.from_preset("paper")
    assert released.config.rotary == "token" and released.layers[0].face_block.cross_attn.rotary.interleaved
    assert paper.config.rotary == "head" and GestureDenoiser.from_preset("tiny").config.rotary == "head"
    with pytest.raises(MmgtError, match="rotary must be one of"):
        GestureDenoiser(**SMALL, rotary="heads")


# -- training -----------------------------------------------------------------------------------------------------


def test_twenty_steps_overfit_a_tiny_batch():
    model = _small().train()
    scheduler = make_stage1_scheduler()
    target, timestep, cond_pose, audio = _inputs(batch=2, frames=8)
    noisy = scheduler.add_noise(
        target, torch.randn(target.shape, generator=torch.Generator().manual_seed(1)), timestep
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = smga_loss(model(noisy, timestep, cond_pose, audio), target, model.config.face_indices)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.slow
def test_paper_preset_trains_and_samples():
    torch.manual_seed(0)
    model = GestureDenoiser.from_preset("paper")
    sample, timestep, cond_pose, audio = _inputs(batch=2, frames=80, audio_dim=1059)
    loss = smga_loss(model(sample, timestep, cond_pose, audio), sample, model.config.face_indices)["loss"]
    loss.backward()
    torch.optim.AdamW(model.parameters(), lr=2e-4).step()
    out = sample_window(model.eval(), make_stage1_scheduler(), cond_pose, audio, 2, 2.0, 1.0)
    assert out.shape == (2, 80, K, 3) and out.abs().max() <= 1.0 and torch.isfinite(loss)
