from __future__ import annotations

import json
import resource
import time

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, ControlNetModel, MotionAdapter, UNet2DConditionModel
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from mmgt.errors import MmgtError, ModelFolderError
from mmgt.models.attention_inputs import AttnInputs
from mmgt.models.audio_attention import AudioAttentionAdapter
from mmgt.models.denoising_unet import (
    build_denoising_unet,
    denoise,
    encode_reference,
    freeze_for_step,
    install_stage2_processors,
)
from mmgt.models.stage2_presets import (
    PRESETS,
    RELEASED_OPTIONS,
    build_components,
    load_sd15_components,
    preset,
)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_presets_are_plain_json():
    assert json.loads(json.dumps(PRESETS)) == PRESETS
    assert set(PRESETS) == {"sd15", "tiny", "released", "released_tiny"}
    assert preset("tiny") is not PRESETS["tiny"] and preset("tiny") == PRESETS["tiny"]
    with pytest.raises(MmgtError, match=r"unknown stage-2 preset 'sd21'; choose one of \['released', 'released_tiny'"):
        preset("sd21")


@pytest.mark.parametrize(("released", "base"), [("released", "sd15"), ("released_tiny", "tiny")])
def test_released_presets_are_their_base_sizes_with_the_released_options(released, base):
    cfg, base_cfg = preset(released), preset(base)
    assert {k: v for k, v in cfg.items() if k not in RELEASED_OPTIONS} == {
        k: v for k, v in base_cfg.items() if k not in RELEASED_OPTIONS
    }
    assert cfg["audio_adapter"] == base_cfg["audio_adapter"] | dict(
        position="transformer_output", inner_width="block_input", released_block=True, adapter_bias=True
    )
    assert cfg["denoising_unet"] == {"motion_norm": "per_frame"}


def test_sd15_preset_has_the_published_sizes():
    # Built on the meta device: no memory, no init time. Reference sizes: SD-1.5 UNet 859,520,964 parameters in 686
    # tensors; SD VAE 83,653,863; CLIP ViT-L/14 vision 303,179,776 + 1024x768 projection.
    cfg = preset("sd15")
    with init_empty_weights():
        unet = UNet2DConditionModel(**cfg["unet"])
        assert (_count(unet), len(unet.state_dict())) == (859_520_964, 686)
        assert _count(AutoencoderKL(**cfg["vae"])) == 83_653_863
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg["image_encoder"]))
        assert _count(clip) == 303_179_776 + 1024 * 768
        # AnimateDiff v2: about 453 M parameters (1.81 GB in fp32, the size of mm_sd_v15_v2.ckpt).
        assert _count(MotionAdapter(**cfg["motion_adapter"])) == 453_209_280
        adapter = AudioAttentionAdapter.for_unet(unet, **cfg["audio_adapter"])
        released = AudioAttentionAdapter.for_unet(unet, **{**cfg["audio_adapter"], "released_block": True})
    # Released placement: two layers in each of down blocks 0-2 (spec §5.3); with the released block's extra
    # SA/FFN/projections the total is the released ~137 M.
    assert adapter.config.layer_channels == [320, 320, 640, 640, 1280, 1280]
    assert round(_count(released) / 1e6) == 137


def test_sd15_and_animatediff_key_layouts_load_strictly_into_the_built_models():
    cfg = preset("sd15")
    with init_empty_weights(include_buffers=True):  # everything on the meta device, so copies are free
        unet2d = UNet2DConditionModel(**cfg["unet"])
        motion = MotionAdapter(**cfg["motion_adapter"])
        sd15 = UNet2DConditionModel(**cfg["unet"]).state_dict()
        animatediff = MotionAdapter(**cfg["motion_adapter"]).state_dict()
        unet = build_denoising_unet(unet2d, motion)
    # No missing and no unexpected keys: the denoiser is exactly SD-1.5 + AnimateDiff, and MM-HAA adds none.
    result = unet.load_state_dict({**sd15, **animatediff}, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert not unet2d.load_state_dict(sd15, strict=True, assign=True).missing_keys


def _tiny_step(c: dict, unet, frames: int = 2) -> tuple[torch.Tensor, AttnInputs]:
    """One stage-2 training-style step on tiny components: returns the UNet prediction and the attention inputs."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 128, 128, generator=g) * 2 - 1
    ref_latents = c["vae"].encode(image).latent_dist.mean * c["vae"].config.scaling_factor  # (1, 4, 16, 16)
    clip = c["image_encoder"](torch.rand(1, 3, 32, 32, generator=g)).image_embeds[:, None]  # (1, 1, 64)
    pose = c["pose_guider"](torch.rand(1, 3, frames, 128, 128, generator=g))  # (F, 32, 16, 16)
    audio = c["audio_projection"](torch.randn(1, frames, 5, 4, 32, generator=g))  # (F, 8, 64)
    masks = [torch.rand(frames, 3, s, s, generator=g) for s in (16, 8, 4, 2)]
    inputs = AttnInputs(mode="read", audio_tokens=audio, branch_masks=masks, num_frames=frames)
    encode_reference(c["reference_unet"], ref_latents, clip, inputs)
    latents = torch.randn(1, 4, frames, 16, 16, generator=g)
    return denoise(unet, latents, torch.tensor([500]), clip, pose, inputs), inputs


def test_tiny_components_run_the_whole_stage2_forward_quickly():
    torch.manual_seed(0)
    c = build_components("tiny")
    unet = build_denoising_unet(c["unet"], c["motion_adapter"])
    install_stage2_processors(unet, c["reference_unet"], c["audio_adapter"])
    with torch.no_grad():
        _tiny_step(c, unet)  # warm-up
        elapsed = float("inf")
        for _ in range(3):  # the best of 3: other processes on a shared machine only ever add time
            start = time.perf_counter()
            out, inputs = _tiny_step(c, unet)
            elapsed = min(elapsed, time.perf_counter() - start)
    assert out.shape == (1, 4, 2, 16, 16) and torch.isfinite(out).all()
    assert len(inputs.reference_features) == 7
    print(f"tiny stage-2 forward (VAE, CLIP, ReferenceNet, guider, audio, UNet): {elapsed:.3f} s")
    assert elapsed < 2.0, f"tiny stage-2 forward took {elapsed:.2f} s"  # ~0.1 s; generous for a shared machine


@pytest.mark.parametrize("step", ["image", "video"])
def test_tiny_gradients_reach_exactly_the_trainable_modules(step):
    torch.manual_seed(0)
    c = build_components("tiny")
    unet = build_denoising_unet(c["unet"], c["motion_adapter"])
    install_stage2_processors(unet, c["reference_unet"], c["audio_adapter"])
    for name in ("vae", "image_encoder"):
        c[name].requires_grad_(False)
    freeze_for_step(unet, c["reference_unet"], c["pose_guider"], c["audio_adapter"], c["audio_projection"], step)
    out, _ = _tiny_step(c, unet)
    out.square().mean().backward()

    def has_grad(module):
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    if step == "image":
        # The ReferenceNet learns through the denoiser's reference attention; the zero-init guider output conv
        # gets a gradient (the rest of the guider only after that conv becomes non-zero).
        assert has_grad(c["reference_unet"].down_blocks[0]) and has_grad(c["pose_guider"].conv_out)
        assert not has_grad(c["audio_adapter"]) and not has_grad(unet.down_blocks[0].motion_modules)
    else:
        # Zero-init adapters: only they (not the audio cross-attentions behind them) get a first gradient.
        layer = c["audio_adapter"].layer(c["audio_adapter"].config.layer_names[0])
        assert all(has_grad(branch.adapter) for branch in layer.branches.values())
        assert has_grad(unet.down_blocks[0].motion_modules) and not has_grad(c["pose_guider"])


def test_load_sd15_components_lists_every_problem_at_once(tmp_path):
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text("{}")
    folders = {"unet": tmp_path / "unet", "vae": tmp_path / "vae", "motion_adaptor": tmp_path / "m"}
    with pytest.raises(ModelFolderError) as err:
        load_sd15_components(folders)
    message = str(err.value)
    assert "\n" not in message
    for part in (
        "unknown component 'motion_adaptor'",
        f"unet: folder {tmp_path / 'unet'} does not exist",
        f"vae: no weights in {tmp_path / 'vae'}",
        "image_encoder: no folder given",
        "motion_adapter: no folder given",
    ):
        assert part in message


def test_load_sd15_components_reads_local_folders(tmp_path):
    torch.manual_seed(0)
    c = build_components("tiny")
    for name in ("unet", "vae", "image_encoder", "motion_adapter"):
        c[name].save_pretrained(tmp_path / name)
    controlnet = ControlNetModel.from_unet(c["unet"], conditioning_embedding_out_channels=(8, 16, 16, 32))
    controlnet.save_pretrained(tmp_path / "controlnet")
    folders = {name: tmp_path / name for name in ("unet", "vae", "image_encoder", "motion_adapter", "controlnet")}
    loaded = load_sd15_components(folders, new_modules_preset="tiny")
    assert set(loaded) == set(c)
    assert torch.equal(loaded["unet"].conv_in.weight, c["unet"].conv_in.weight)
    assert torch.equal(loaded["reference_unet"].conv_in.weight, c["unet"].conv_in.weight)
    assert loaded["reference_unet"] is not loaded["unet"]
    emb = controlnet.controlnet_cond_embedding
    assert torch.equal(loaded["pose_guider"].blocks[0].conv.weight, emb.blocks[0].weight)
    assert loaded["audio_adapter"].config.layer_channels == [32, 64]


@pytest.mark.slow
def test_sd15_random_init_runs_one_denoising_step_at_256(record_property):
    torch.manual_seed(0)
    cfg = preset("sd15")
    # Built one at a time (peak = the motion UNet + one 2D UNet, about 8.6 GB of fp32 weights).
    unet = build_denoising_unet(UNet2DConditionModel(**cfg["unet"]), MotionAdapter(**cfg["motion_adapter"])).eval()
    reference = UNet2DConditionModel(**cfg["unet"]).eval()
    adapter = AudioAttentionAdapter.for_unet(unet, **cfg["audio_adapter"])
    install_stage2_processors(unet, reference, adapter)
    frames, g = 2, torch.Generator().manual_seed(0)
    masks = [torch.rand(frames, 3, s, s, generator=g) for s in (32, 16, 8, 4)]
    inputs = AttnInputs(
        mode="read", audio_tokens=torch.randn(frames, 32, 768, generator=g), branch_masks=masks, num_frames=frames
    )
    clip = torch.randn(1, 1, 768, generator=g)
    start = time.perf_counter()
    with torch.no_grad():
        encode_reference(reference, torch.randn(1, 4, 32, 32, generator=g), clip, inputs)
        pose = torch.randn(frames, 320, 32, 32, generator=g)
        out = denoise(unet, torch.randn(1, 4, frames, 32, 32, generator=g), torch.tensor([999]), clip, pose, inputs)
    elapsed = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux
    record_property("sd15_step_s", round(elapsed, 1))
    record_property("peak_rss_gib", round(peak_gib, 2))
    print(f"sd15 one step, 2 frames at 256x256: {elapsed:.1f} s, peak RSS {peak_gib:.2f} GiB")
    assert out.shape == (1, 4, frames, 32, 32) and torch.isfinite(out).all()
    assert len(inputs.reference_features) == 16  # SD-1.5: 6 down + 1 mid + 9 up transformer blocks
