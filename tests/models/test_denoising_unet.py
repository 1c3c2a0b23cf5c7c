from __future__ import annotations

import pytest
import torch
from diffusers import MotionAdapter, UNet2DConditionModel
from torch.nn import functional as F

from mmgt.errors import MmgtError
from mmgt.models.attention_inputs import AttnInputs
from mmgt.models.audio_attention import AudioAttentionAdapter
from mmgt.models.audio_projection import AudioProjection
from mmgt.models.denoising_unet import (
    FrameGroupNorm,
    build_denoising_unet,
    denoise,
    freeze_for_step,
    install_stage2_processors,
    motion_norm,
    pose_residual,
    set_motion_norm,
)
from mmgt.models.pose_guider import PoseGuider
from mmgt.models.reference_attention import install_processors
from mmgt.models.stage2_presets import preset

CFG = preset("tiny")


@pytest.fixture(scope="module")
def unet2d():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**CFG["unet"]).eval()
    install_processors(unet, lambda name: None)  # pass-through processors that accept `mmgt`
    return unet


@pytest.fixture(scope="module")
def motion_adapter():
    torch.manual_seed(1)
    return MotionAdapter(**CFG["motion_adapter"])


def _latents(batch: int, frames: int, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, frames, 16, 16, generator=g), torch.randn(batch, 1, 64, generator=g)


def test_build_copies_every_2d_and_motion_weight_exactly(unet2d, motion_adapter):
    unet = build_denoising_unet(unet2d, motion_adapter)
    state = unet.state_dict()
    for key, value in unet2d.state_dict().items():
        assert torch.equal(state[key], value), key
    for key, value in motion_adapter.state_dict().items():
        assert torch.equal(state[key], value), key
    assert set(state) == set(unet2d.state_dict()) | set(motion_adapter.state_dict())


@torch.no_grad()
def test_fresh_motion_modules_are_an_identity(unet2d):
    unet = build_denoising_unet(unet2d)
    install_processors(unet, lambda name: None)
    latents, clip = _latents(2, 3)
    inputs = AttnInputs(num_frames=3)
    video = denoise(unet, latents, torch.tensor([10, 900]), clip, None, inputs)
    per_frame = denoise(unet2d, latents, torch.tensor([10, 900]), clip, None, inputs)  # 2D path: frames alone
    torch.testing.assert_close(video, per_frame, rtol=0, atol=1e-5)


def test_norm_group_mismatch_is_refused(unet2d):
    adapter = MotionAdapter(**{**CFG["motion_adapter"], "motion_norm_num_groups": 4})
    with pytest.raises(MmgtError, match="motion adapter uses 4 norm groups, the UNet 8"):
        build_denoising_unet(unet2d, adapter)


@torch.no_grad()
def test_pose_features_use_the_unet_frame_order(unet2d, motion_adapter):
    unet = build_denoising_unet(unet2d, motion_adapter)
    install_processors(unet, lambda name: None)
    latents, clip = _latents(2, 3)
    seen = []
    unet.down_blocks[0].register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["hidden_states"]), with_kwargs=True
    )

    def first_layer(latents, pose_features):
        seen.clear()
        denoise(unet, latents, 10, clip, pose_features, AttnInputs(num_frames=3))
        return seen[0]  # (B*F, 32, 16, 16): conv_in output (+ pose residual)

    base = first_layer(latents, None)
    nudged = latents.clone()
    nudged[0, :, 1] += 1.0  # sample 0, frame 1, via UNetMotionModel's own reshape
    pose = torch.zeros(6, 32, 16, 16)
    pose[0 * 3 + 1] = 1.0  # row b*F + f of the pose features
    rows_latent = (first_layer(nudged, None) != base).flatten(1).any(1)
    rows_pose = (first_layer(latents, pose) != base).flatten(1).any(1)
    assert rows_pose.tolist() == rows_latent.tolist() == [False, True, False, False, False, False]


@torch.no_grad()
def test_pose_feature_of_one_frame_changes_only_that_frame_without_temporal_mixing(unet2d):
    unet = build_denoising_unet(unet2d)  # identity motion modules: frames do not interact
    install_processors(unet, lambda name: None)
    latents, clip = _latents(2, 3)
    pose = torch.zeros(6, 32, 16, 16)
    pose[1, :, 4:8, 4:8] = 0.5
    delta = denoise(unet, latents, 10, clip, pose, AttnInputs(num_frames=3)) - denoise(
        unet, latents, 10, clip, None, AttnInputs(num_frames=3)
    )
    changed = delta.abs().amax(dim=(1, 3, 4)) > 0  # (B, F)
    assert changed.tolist() == [[False, True, False], [False, False, False]]


def test_pose_residual_hook_is_removed_even_on_error(unet2d):
    with pytest.raises(
        MmgtError, match=r"pose features \(2, 8, 16, 16\) do not match conv_in output \(2, 32, 16, 16\)"
    ):
        with pose_residual(unet2d, torch.zeros(2, 8, 16, 16)):
            assert len(unet2d.conv_in._forward_hooks) == 1
            unet2d(torch.zeros(2, 4, 16, 16), 1, encoder_hidden_states=torch.zeros(2, 1, 64))
    assert len(unet2d.conv_in._forward_hooks) == 0


def test_denoise_checks_num_frames(unet2d):
    latents, clip = _latents(1, 2)
    with pytest.raises(MmgtError, match="num_frames=3 but the latents have 2 frames"):
        denoise(unet2d, latents, 1, clip, None, AttnInputs(num_frames=3))


def test_reference_net_of_another_architecture_is_refused(unet2d):
    other = UNet2DConditionModel(**{**CFG["unet"], "layers_per_block": 2})
    with pytest.raises(MmgtError, match=r"ReferenceNet lacks \d+ self-attention layers of the UNet"):
        install_stage2_processors(other, unet2d)


@pytest.mark.parametrize("step", ["image", "video"])
def test_freeze_for_step_leaves_exactly_the_intended_parameters_trainable(unet2d, motion_adapter, step):
    unet = build_denoising_unet(unet2d, motion_adapter)
    reference = UNet2DConditionModel(**CFG["unet"])
    guider, projection = PoseGuider(**CFG["pose_guider"]), AudioProjection(**CFG["audio_projection"])
    adapter = AudioAttentionAdapter.for_unet(unet, placement="down", audio_dim=64, num_heads=4)
    freeze_for_step(unet, reference, guider, adapter, projection, step)

    def trainable(module):
        return {name for name, p in module.named_parameters() if p.requires_grad}

    unet_names = {name for name, _ in unet.named_parameters()}
    motion = {n for n in unet_names if ".motion_modules." in n}
    assert motion and len(motion) < len(unet_names)
    if step == "image":
        assert trainable(unet) == unet_names - motion
        ref_trainable = trainable(reference)
        assert ref_trainable and all(
            not n.startswith(("up_blocks.2.", "conv_out.", "conv_norm_out.")) for n in ref_trainable
        )
        assert len(ref_trainable) == sum(
            1
            for n, _ in reference.named_parameters()
            if not n.startswith(("up_blocks.2.", "conv_out.", "conv_norm_out."))
        )
        assert trainable(guider) == {n for n, _ in guider.named_parameters()}
        assert trainable(adapter) == trainable(projection) == set()
    else:
        assert trainable(unet) == motion
        assert trainable(reference) == trainable(guider) == set()
        assert trainable(adapter) == {n for n, _ in adapter.named_parameters()}
        assert trainable(projection) == {n for n, _ in projection.named_parameters()}
    with pytest.raises(MmgtError, match="step must be 'image' or 'video'"):
        freeze_for_step(unet, reference, guider, adapter, projection, "audio")


# ---------------------------------------------------------------------------------------------------------------------
# Motion-module GroupNorm statistics: pooled over the window (diffusers) or per frame (AnimateDiff, the release)
# ---------------------------------------------------------------------------------------------------------------------
def test_frame_group_norm_normalises_each_frame_alone():
    torch.manual_seed(0)
    norm = FrameGroupNorm(4, 8, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    x = torch.randn(2, 8, 3, 5, 5) * torch.tensor([1.0, 10.0, 0.1]).view(1, 1, 3, 1, 1)  # frames of unlike scale
    out = norm(x)
    for f in range(3):
        torch.testing.assert_close(out[:, :, f], F.group_norm(x[:, :, f], 4, norm.weight, norm.bias, 1e-6))
    pooled = F.group_norm(x, 4, norm.weight, norm.bias, 1e-6)
    assert (pooled - out).abs().max() > 0.5  # pooling over frames is a different operator
    torch.testing.assert_close(norm(x[:, :, 0]), F.group_norm(x[:, :, 0], 4, norm.weight, norm.bias, 1e-6))


def test_set_motion_norm_keeps_every_parameter_and_changes_only_the_statistics(unet2d, motion_adapter):
    unet = build_denoising_unet(unet2d, motion_adapter)
    install_processors(unet, lambda name: None)
    assert motion_norm(unet) == "pooled"
    params, keys = dict(unet.named_parameters()), list(unet.state_dict())
    latents, clip = _latents(1, 3)
    latents = latents * torch.tensor([1.0, 4.0, 0.25]).view(1, 1, 3, 1, 1)
    with torch.no_grad():
        pooled = denoise(unet, latents, 10, clip, None, AttnInputs(num_frames=3))
        set_motion_norm(unet, "per_frame")
        per_frame = denoise(unet, latents, 10, clip, None, AttnInputs(num_frames=3))
    assert motion_norm(unet) == "per_frame"
    assert all(p is params[name] for name, p in unet.named_parameters()) and list(unet.state_dict()) == keys
    assert (per_frame - pooled).abs().max() > 1e-3
    with torch.no_grad():
        set_motion_norm(unet, "pooled")
        torch.testing.assert_close(denoise(unet, latents, 10, clip, None, AttnInputs(num_frames=3)), pooled)
    built = build_denoising_unet(unet2d, motion_adapter, motion_norm="per_frame")
    assert motion_norm(built) == "per_frame"
    with pytest.raises(MmgtError, match=r"motion_norm must be one of \('pooled', 'per_frame'\), got 'frame'"):
        set_motion_norm(unet, "frame")


def test_one_frame_window_is_the_same_under_both_norms(unet2d, motion_adapter):
    unet = build_denoising_unet(unet2d, motion_adapter)
    install_processors(unet, lambda name: None)
    latents, clip = _latents(2, 1)
    with torch.no_grad():
        pooled = denoise(unet, latents, 10, clip, None, AttnInputs(num_frames=1))
        per_frame = denoise(set_motion_norm(unet, "per_frame"), latents, 10, clip, None, AttnInputs(num_frames=1))
    torch.testing.assert_close(per_frame, pooled, rtol=0, atol=1e-5)
