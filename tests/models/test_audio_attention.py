from __future__ import annotations

import pytest
import torch
from diffusers import MotionAdapter, UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from mmgt.errors import MmgtError
from mmgt.models.attention_inputs import AttnInputs
from mmgt.models.audio_attention import (
    AudioAttentionAdapter,
    MaskedAudioAttnProcessor,
    audio_layer_names,
    detach_audio_modules,
    install_audio_processors,
)
from mmgt.models.denoising_unet import build_denoising_unet, denoise
from mmgt.models.stage2_presets import preset

FRAMES = 2
LAYER = "layer"


@pytest.fixture(scope="module")
def unet():
    cfg = preset("tiny")
    torch.manual_seed(0)
    return build_denoising_unet(UNet2DConditionModel(**cfg["unet"]), MotionAdapter(**cfg["motion_adapter"])).eval()


@pytest.fixture(scope="module")
def call_inputs():
    """latents (1, 4, F, 16, 16), clip (1, 1, 64), audio tokens (F, 8, 64), masks at 16/8/4/2 (F, 3, s, s)."""
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 4, FRAMES, 16, 16, generator=g)
    clip = torch.randn(1, 1, 64, generator=g)
    audio = torch.randn(FRAMES, 8, 64, generator=g)
    masks = [torch.rand(FRAMES, 3, s, s, generator=g) for s in (16, 8, 4, 2)]
    return latents, clip, audio, masks


def _perturb(adapter: AudioAttentionAdapter, seed: int = 2) -> AudioAttentionAdapter:
    """Make every weight (adapters and proj_out included) non-zero so branches really contribute."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return adapter


@torch.no_grad()
def _run(unet, call_inputs, adapter=None, scales=(1.0, 1.0, 1.0), masks=None, audio="given"):
    latents, clip, tokens, default_masks = call_inputs
    if adapter is None:
        detach_audio_modules(unet)
    else:
        install_audio_processors(unet, adapter)
    inputs = AttnInputs(
        audio_tokens=tokens if audio == "given" else None,
        branch_masks=default_masks if masks is None else masks,
        branch_weights=scales,
        num_frames=FRAMES,
    )
    return denoise(unet, latents, 10, clip, None, inputs)


def _adapter(unet, released_block=False, **kwargs):
    torch.manual_seed(3)
    return AudioAttentionAdapter.for_unet(
        unet, audio_dim=64, num_heads=4, released_block=released_block, norm_num_groups=8, **kwargs
    ).eval()


def test_layer_names_by_placement(unet):
    down = audio_layer_names(unet, "down")
    assert down == [
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2",
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2",
    ]
    everywhere = audio_layer_names(unet, "down_up_mid")
    assert len(everywhere) == 7 and set(down) < set(everywhere)
    assert sum(n.startswith("mid_block.") for n in everywhere) == 1
    assert _adapter(unet).config.layer_channels == [32, 64]
    with pytest.raises(MmgtError, match="placement must be one of"):
        audio_layer_names(unet, "up")


def test_unet_state_dict_is_unchanged_and_weights_live_in_the_adapter(unet):
    keys = list(unet.state_dict())
    num_params = sum(p.numel() for p in unet.parameters())
    adapter = _adapter(unet)
    install_audio_processors(unet, adapter)
    assert list(unet.state_dict()) == keys
    assert sum(p.numel() for p in unet.parameters()) == num_params
    adapter_keys = set(adapter.state_dict())
    assert "layers.1.branches.lips.attn.to_k.weight" in adapter_keys
    assert "layers.0.branches.global.adapter.weight" in adapter_keys
    assert len(adapter_keys) == 2 * 3 * 6  # layers x branches x (to_q, to_k, to_v, to_out w/b, adapter)
    assert not any("branches" in k for k in keys)


@pytest.mark.parametrize("released_block", [False, True])
def test_fresh_adapter_leaves_the_unet_output_unchanged(unet, call_inputs, released_block):
    plain = _run(unet, call_inputs)
    with_audio = _run(unet, call_inputs, _adapter(unet, released_block))
    assert torch.equal(with_audio, plain)


@pytest.mark.parametrize("released_block", [False, True])
def test_all_zero_mask_switches_its_branch_off(unet, call_inputs, released_block):
    adapter = _perturb(_adapter(unet, released_block))
    _, _, _, masks = call_inputs
    no_lips = [m * torch.tensor([1.0, 1.0, 0.0]).view(1, 3, 1, 1) for m in masks]
    zero_mask = _run(unet, call_inputs, adapter, masks=no_lips)
    branch_off = _run(unet, call_inputs, adapter, scales=(1.0, 1.0, 0.0))
    assert torch.equal(zero_mask, branch_off)
    # ... and the lips branch does matter when its mask is not zero (so the check above can fail).
    assert (_run(unet, call_inputs, adapter) - branch_off).abs().max() > 1e-4


def test_branch_weights_are_always_applied(unet, call_inputs):
    adapter = _perturb(_adapter(unet))
    plain = _run(unet, call_inputs)
    assert torch.equal(_run(unet, call_inputs, adapter, scales=(0.0, 0.0, 0.0)), plain)
    assert not torch.equal(_run(unet, call_inputs, adapter, scales=(1.0, 1.0, 2.0)), _run(unet, call_inputs, adapter))
    assert torch.equal(_run(unet, call_inputs, adapter, audio=None), plain)  # no audio tokens: MM-HAA off


@pytest.fixture
def layer_setup():
    """An attn2-like Attention (C=32, context 64) and a one-layer adapter with perturbed weights."""
    torch.manual_seed(0)
    attn = Attention(32, cross_attention_dim=64, heads=4, dim_head=8)
    adapter = _perturb(AudioAttentionAdapter([LAYER], [32], audio_dim=64, num_heads=4))
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(2, 16, 32, generator=g)  # (N, HW, C) at a 4x4 level
    clip = torch.randn(2, 1, 64, generator=g)
    audio = torch.randn(2, 8, 64, generator=g)
    masks = [torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 3, 2, 2, generator=g)]
    return attn, adapter, hidden, clip, audio, masks


def _call(setup, scales=(1.0, 1.0, 1.0), masks=None, audio=None):
    attn, adapter, hidden, clip, default_audio, default_masks = setup
    inputs = AttnInputs(
        audio_tokens=default_audio if audio is None else audio,
        branch_masks=default_masks if masks is None else masks,
        branch_weights=scales,
    )
    return MaskedAudioAttnProcessor(LAYER, adapter.layer(LAYER))(attn, hidden, clip, mmgt=inputs)


def test_output_is_cross_attention_plus_weighted_masked_branches(layer_setup):
    attn, adapter, hidden, clip, audio, masks = layer_setup
    ca = AttnProcessor2_0()(attn, hidden, clip)
    layer = adapter.layer(LAYER)
    m = masks[0].flatten(2)  # the 4x4 level matches the 16 tokens
    expected = ca.clone()
    for r, (branch, w) in enumerate(zip(layer.branches.values(), (1.0, 0.5, 3.0))):
        expected += w * branch.adapter(branch.attn(ca, encoder_hidden_states=audio) * m[:, r, :, None])
    # Summed in another order than the processor: outputs reach ~7, where 1 float32 ulp is 4.8e-7; 5e-6 is ~10 ulps.
    torch.testing.assert_close(_call(layer_setup, (1.0, 0.5, 3.0)), expected, rtol=0, atol=5e-6)
    # Scale 2 doubles a branch's contribution, up to the rounding of the cross-attention it is added to and taken from.
    one = _call(layer_setup, (0.0, 1.0, 0.0)) - ca
    two = _call(layer_setup, (0.0, 2.0, 0.0)) - ca
    torch.testing.assert_close(two, 2 * one, rtol=0, atol=5e-6)


def test_mask_scales_the_attention_output_per_pixel(layer_setup):
    attn, _, hidden, clip, _, masks = layer_setup
    only_pixel_5 = torch.zeros(2, 3, 4, 4)
    only_pixel_5[:, 2].view(2, 16)[:, 5] = 1.0  # lips mask: one pixel (row 1, col 1)
    delta = _call(layer_setup, masks=[only_pixel_5, masks[1]]) - AttnProcessor2_0()(attn, hidden, clip)
    changed = delta.abs().amax(-1) > 0  # (N, HW)
    assert changed[:, 5].all() and changed.sum() == 2


def test_cfg_batch_tiles_masks_as_whole_groups(layer_setup):
    attn, adapter, hidden, clip, audio, masks = layer_setup
    proc = MaskedAudioAttnProcessor(LAYER, adapter.layer(LAYER))
    doubled = dict(audio_tokens=torch.cat([torch.zeros_like(audio), audio]), num_frames=1)
    hidden2, clip2 = torch.cat([hidden, hidden]), torch.cat([torch.zeros_like(clip), clip])
    shared = proc(attn, hidden2, clip2, mmgt=AttnInputs(branch_masks=masks, **doubled))
    explicit = proc(attn, hidden2, clip2, mmgt=AttnInputs(branch_masks=[torch.cat([m, m]) for m in masks], **doubled))
    assert torch.equal(shared, explicit)


def test_errors_name_the_layer(layer_setup):
    attn, adapter, hidden, clip, audio, masks = layer_setup
    with pytest.raises(MmgtError, match=r"layer: no branch mask level has 16 pixels \(levels: \[\(2, 2\)\]\)"):
        _call(layer_setup, masks=[masks[1]])
    with pytest.raises(MmgtError, match="layer: 2 branch_weights for 3 branches"):
        _call(layer_setup, scales=(1.0, 1.0))
    with pytest.raises(MmgtError, match="layer: masks have 2 branches, the adapter has 3"):
        _call(layer_setup, masks=[masks[0][:, :2]])
    proc = MaskedAudioAttnProcessor(LAYER, adapter.layer(LAYER))
    with pytest.raises(MmgtError, match="layer: audio_tokens were given without branch_masks"):
        proc(attn, hidden, clip, mmgt=AttnInputs(audio_tokens=audio))
    with pytest.raises(MmgtError, match="got 1 layer_names but 2 layer_channels"):
        AudioAttentionAdapter(["a"], [32, 64])
    with pytest.raises(MmgtError, match=r"layer channels \[30\] are not divisible by num_heads=8"):
        AudioAttentionAdapter(["a"], [30])


def test_adapter_save_load_round_trip_gives_identical_unet_output(unet, call_inputs, tmp_path):
    adapter = _perturb(_adapter(unet, released_block=True))
    adapter.save_pretrained(tmp_path / "audio")
    loaded = AudioAttentionAdapter.from_pretrained(tmp_path / "audio").eval()
    assert loaded.config.layer_names == adapter.config.layer_names and loaded.config.released_block
    assert torch.equal(_run(unet, call_inputs, loaded), _run(unet, call_inputs, adapter))


def test_install_checks_names_and_channels(unet):
    with pytest.raises(MmgtError, match=r"the UNet has no attention layers named \['nope.attn2'\]"):
        install_audio_processors(unet, AudioAttentionAdapter(["nope.attn2"], [32]))
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn2"
    with pytest.raises(MmgtError, match=f"{name}: UNet has 64 channels, adapter 32"):
        install_audio_processors(unet, AudioAttentionAdapter([name], [32]))


# ---------------------------------------------------------------------------------------------------------------------
# The released placement: a residual module on each spatial transformer's output (forward hooks)
# ---------------------------------------------------------------------------------------------------------------------
def _released(unet, bias=True, seed=3):
    torch.manual_seed(seed)
    return AudioAttentionAdapter.for_unet(
        unet,
        audio_dim=64,
        num_heads=4,
        norm_num_groups=8,
        released_block=True,
        position="transformer_output",
        inner_width="block_input",
        adapter_bias=bias,
    ).eval()


def test_released_layers_are_the_down_transformers_at_the_block_input_width(unet):
    adapter = _released(unet)
    assert adapter.config.layer_names == ["down_blocks.0.attentions.0", "down_blocks.1.attentions.0"]
    assert adapter.config.layer_channels == [32, 64]  # the feature map
    assert adapter.config.inner_channels == [32, 32]  # down block 1 takes 32 channels in (tiny: 32 -> 64)
    layer = adapter.layer("down_blocks.1.attentions.0")
    assert tuple(layer.proj_in.weight.shape) == (32, 64) and tuple(layer.proj_out.weight.shape) == (64, 32)
    assert tuple(layer.branches["lips"].adapter.bias.shape) == (32,)
    assert tuple(layer.branches["lips"].attn.to_q.weight.shape) == (32, 32)
    with pytest.raises(MmgtError, match="inner_width='block_input' is defined for down-block layers only"):
        AudioAttentionAdapter.for_unet(
            unet, "down_up_mid", position="transformer_output", inner_width="block_input", released_block=True
        )
    with pytest.raises(MmgtError, match="position 'transformer_output' need released_block"):
        AudioAttentionAdapter.for_unet(unet, position="transformer_output")


def test_released_hook_adds_the_layer_to_the_transformer_output(unet, call_inputs):
    adapter = _perturb(_released(unet))
    name = "down_blocks.1.attentions.0"
    transformer, layer = unet.get_submodule(name), adapter.layer(name)
    install_audio_processors(unet, adapter)
    seen = {}
    handles = [  # one hook before the audio hook, one after it
        transformer.register_forward_hook(lambda m, a, k, out: seen.update(x=out[0]), with_kwargs=True, prepend=True),
        transformer.register_forward_hook(lambda m, a, k, out: seen.update(y=out[0]), with_kwargs=True),
    ]
    try:
        with torch.no_grad():
            latents, clip, tokens, masks = call_inputs
            inputs = AttnInputs(audio_tokens=tokens, branch_masks=masks, num_frames=FRAMES)
            denoise(unet, latents, 10, clip, None, inputs)
    finally:
        for handle in handles:
            handle.remove()
        detach_audio_modules(unet)
    x, y = seen["x"], seen["y"]
    n, c, h, w = x.shape
    mask = masks[1].flatten(2)  # the 8x8 level of down block 1
    with torch.no_grad():
        tokens_out = layer(x.flatten(2).transpose(1, 2), tokens, mask, (1.0, 1.0, 1.0))
    expected = tokens_out.transpose(1, 2).reshape(n, c, h, w)
    assert (y - x).abs().max() > 1e-3  # the layer really adds something
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-5)


def test_fresh_released_adapter_leaves_the_unet_output_unchanged(unet, call_inputs):
    assert torch.equal(_run(unet, call_inputs, _released(unet)), _run(unet, call_inputs))


def test_released_bias_leaks_through_a_zero_mask_and_the_bias_free_adapter_does_not(unet, call_inputs):
    _, _, _, masks = call_inputs
    no_lips = [m * torch.tensor([1.0, 1.0, 0.0]).view(1, 3, 1, 1) for m in masks]
    gaps = {}
    for bias in (True, False):
        adapter = _perturb(_released(unet, bias=bias))
        zero_mask = _run(unet, call_inputs, adapter, masks=no_lips)
        gaps[bias] = (zero_mask - _run(unet, call_inputs, adapter, scales=(1.0, 1.0, 0.0))).abs().max()
    assert gaps[False] < 1e-5 < 1e-3 < gaps[True]  # Official code: the lips adapter's bias reaches every pixel


def test_reinstalling_or_switching_positions_never_stacks_audio_modules(unet, call_inputs):
    released, figure = _perturb(_released(unet)), _perturb(_adapter(unet))
    once = _run(unet, call_inputs, released)
    install_audio_processors(unet, released)  # installed twice now (the _run call installs again)
    assert torch.equal(_run(unet, call_inputs, released), once)
    via_attn2 = _run(unet, call_inputs, figure)
    only_attn2 = _run(unet, call_inputs, figure)
    assert torch.equal(via_attn2, only_attn2) and not torch.equal(via_attn2, once)
    assert torch.equal(_run(unet, call_inputs, released), once)  # the attn2 processors are gone again
    detach_audio_modules(unet)
    assert torch.equal(_run(unet, call_inputs, released, audio=None), _run(unet, call_inputs))
    detach_audio_modules(unet)


def test_released_adapter_round_trips_and_names_missing_transformers(unet, call_inputs, tmp_path):
    adapter = _perturb(_released(unet))
    adapter.save_pretrained(tmp_path / "audio")
    loaded = AudioAttentionAdapter.from_pretrained(tmp_path / "audio").eval()
    assert loaded.config.inner_channels == [32, 32] and loaded.config.position == "transformer_output"
    assert torch.equal(_run(unet, call_inputs, loaded), _run(unet, call_inputs, adapter))
    bad = AudioAttentionAdapter(
        ["down_blocks.5.attentions.0"], [32], released_block=True, position="transformer_output", num_heads=4
    )
    with pytest.raises(MmgtError, match=r"the UNet has no transformers named \['down_blocks.5.attentions.0'\]"):
        install_audio_processors(unet, bad)
