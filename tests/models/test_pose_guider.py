from __future__ import annotations

import pytest
import torch
from diffusers import ControlNetModel

from mmgt.errors import MmgtError, ModelFolderError
from mmgt.models.pose_guider import PoseGuider

SMALL = dict(conditioning_channels=3, block_out_channels=(4, 8, 8, 16), out_channels=8)


def _tiny_controlnet() -> ControlNetModel:
    torch.manual_seed(0)
    return ControlNetModel(
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=8,
        attention_head_dim=2,
        conditioning_embedding_out_channels=(4, 8, 8, 16),
    )


def _randomise(guider: PoseGuider) -> PoseGuider:
    torch.manual_seed(1)
    for p in guider.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return guider


def test_fresh_guider_outputs_exact_zeros_at_one_eighth_resolution():
    torch.manual_seed(0)
    out = PoseGuider(**SMALL)(torch.rand(3, 3, 64, 48))
    assert out.shape == (3, 8, 8, 6)
    assert torch.equal(out, torch.zeros_like(out))


def test_sd15_defaults_match_the_controlnet_openpose_embedding_layout():
    guider = PoseGuider()
    shapes = {k: tuple(v.shape) for k, v in guider.state_dict().items()}
    assert shapes["conv_in.weight"] == (16, 3, 3, 3)
    assert shapes["blocks.2.down.weight"] == (256, 96, 3, 3)
    assert shapes["conv_out.weight"] == (320, 256, 3, 3)
    assert sum(p.numel() for p in guider.parameters()) == 1_086_480


def test_video_input_is_flattened_b_major():
    guider = _randomise(PoseGuider(**SMALL)).eval()
    video = torch.rand(2, 3, 3, 16, 16)  # (B, 3, F, H, W)
    out = guider(video)
    assert out.shape == (6, 8, 2, 2)
    # Row b*F + f is frame f of sample b.
    # Batch 6 vs batch 1 convs may pick other kernels (per CPU); outputs are ~1, so 5e-6 is ~40 ulps.
    torch.testing.assert_close(out[1 * 3 + 2], guider(video[1, :, 2][None])[0], rtol=0, atol=5e-6)


def test_from_controlnet_copies_the_condition_embedding_and_keeps_conv_out_zero():
    controlnet = _tiny_controlnet()
    guider = PoseGuider.from_controlnet(controlnet)
    emb = controlnet.controlnet_cond_embedding
    assert guider.config.block_out_channels == (4, 8, 8, 16) and guider.config.out_channels == 8
    assert torch.equal(guider.conv_in.weight, emb.conv_in.weight)
    assert torch.equal(guider.blocks[1].conv.bias, emb.blocks[2].bias)
    assert torch.equal(guider.blocks[2].down.weight, emb.blocks[5].weight)
    assert not guider.conv_out.weight.any() and not guider.conv_out.bias.any()
    # With ControlNet's output conv swapped in, the two networks compute the same function.
    guider.conv_out.load_state_dict(emb.conv_out.state_dict())
    torch.nn.init.normal_(guider.conv_out.weight)
    emb.conv_out.load_state_dict(guider.conv_out.state_dict())
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(guider(x), emb(x), rtol=0, atol=0)


def test_from_controlnet_folder_reads_the_safetensors(tmp_path):
    controlnet = _tiny_controlnet()
    controlnet.save_pretrained(tmp_path / "cn")
    from_folder = PoseGuider.from_controlnet(tmp_path / "cn", out_channels=12)
    from_model = PoseGuider.from_controlnet(controlnet)
    assert from_folder.config.out_channels == 12
    assert torch.equal(from_folder.blocks[0].down.weight, from_model.blocks[0].down.weight)


def test_from_controlnet_errors_name_the_folder(tmp_path):
    with pytest.raises(ModelFolderError, match=r"cn: not a diffusers ControlNet folder \(missing config.json, "):
        PoseGuider.from_controlnet(tmp_path / "cn")
    controlnet = _tiny_controlnet()
    controlnet.controlnet_cond_embedding.blocks[0] = torch.nn.Conv2d(4, 4, 1)  # wrong kernel size
    with pytest.raises(ModelFolderError, match=r"blocks.0.weight has shape \(4, 4, 1, 1\), expected \(4, 4, 3, 3\)"):
        PoseGuider.from_controlnet(controlnet)


def test_save_load_round_trip_is_identical(tmp_path):
    guider = _randomise(PoseGuider(**SMALL))
    guider.save_pretrained(tmp_path / "pg")
    loaded = PoseGuider.from_pretrained(tmp_path / "pg")
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(guider(x), loaded(x))


@pytest.mark.parametrize("shape", [(1, 4, 16, 16), (3, 16, 16), (1, 3, 20, 16)])
def test_bad_input_raises(shape):
    with pytest.raises(MmgtError, match="PoseGuider"):
        PoseGuider(**SMALL)(torch.zeros(shape))
