"""The authors' released stage-2 modules, built from their own code at an mmgt preset's sizes (opt-in tests only).

Their repository (no licence) is imported from ``MMGT_OFFICIAL_SRC`` at test time; nothing of it is copied here. Its
modules were written for an older diffusers: :func:`import_release` aliases the three names they import that moved,
without touching their files.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mmgt.models.stage2_presets import preset

OFFICIAL_SRC = os.environ.get("MMGT_OFFICIAL_SRC")
requires_release = pytest.mark.skipif(
    not OFFICIAL_SRC,
    reason="MMGT_OFFICIAL_SRC is not set (a local copy of github.com/SIA-IDE/MMGT: the release's own code)",
)


def import_release() -> SimpleNamespace:
    """The release's stage-2 model modules (``src.models.*``), imported from ``MMGT_OFFICIAL_SRC``."""
    import diffusers.models.embeddings as embeddings
    import diffusers.models.transformers.dual_transformer_2d as dual

    if OFFICIAL_SRC not in sys.path:
        sys.path.append(OFFICIAL_SRC)  # appended: its root holds a copy.py that must not shadow the standard library
    # Names their imports expect from diffusers < 0.30 (unused by the modules built here).
    embeddings.PositionNet = getattr(embeddings, "PositionNet", embeddings.GLIGENTextBoundingboxProjection)
    embeddings.CaptionProjection = getattr(embeddings, "CaptionProjection", embeddings.PixArtAlphaTextProjection)
    sys.modules.setdefault("diffusers.models.dual_transformer_2d", dual)
    from src.models import audio_proj, mutual_self_attention, pose_guider, unet_2d_condition, unet_3d

    return SimpleNamespace(
        UNet3DConditionModel=unet_3d.UNet3DConditionModel,
        UNet2DConditionModel=unet_2d_condition.UNet2DConditionModel,
        PoseGuider=pose_guider.PoseGuider,
        AudioProjModel=audio_proj.AudioProjModel,
        ReferenceAttentionControl=mutual_self_attention.ReferenceAttentionControl,
    )


def release_unet3d_kwargs(preset_name: str) -> dict:
    """The release's ``UNet3DConditionModel`` arguments (its animation.yaml) at the sizes of an mmgt preset."""
    cfg = preset(preset_name)
    unet = {k: v for k, v in cfg["unet"].items() if k != "center_input_sample"}  # set after __init__, see below
    motion = cfg["motion_adapter"]
    return dict(
        unet,
        down_block_types=[t.replace("2D", "3D") for t in unet["down_block_types"]],
        up_block_types=[t.replace("2D", "3D") for t in unet["up_block_types"]],
        mid_block_type="UNetMidBlock3DCrossAttn",
        use_inflated_groupnorm=True,
        unet_use_cross_frame_attention=False,
        unet_use_temporal_attention=False,
        use_motion_module=True,
        motion_module_resolutions=[1, 2, 4, 8],
        motion_module_mid_block=True,
        motion_module_decoder_only=False,
        motion_module_type="Vanilla",
        motion_module_kwargs=dict(
            num_attention_heads=motion["motion_num_attention_heads"],
            num_transformer_block=1,
            attention_block_types=["Temporal_Self", "Temporal_Self"],
            temporal_position_encoding=True,
            temporal_position_encoding_max_len=motion["motion_max_seq_length"],
            temporal_attention_dim_div=1,
        ),
        use_audio_module=True,
        audio_attention_dim=cfg["audio_adapter"]["audio_dim"],
        stack_enable_blocks_name=["up", "down", "mid"],
        stack_enable_blocks_depth=[0, 1, 2, 3],
    )


def release_stage2(preset_name: str) -> nn.Module:
    """The release's training wrapper (``net-32500.pth``'s key layout) at a preset's sizes, default init.

    Its motion modules' GroupNorms have 32 groups whatever the width (the release does not pass the UNet's group
    count on); at the ``released`` sizes that is the UNet's own 32. For a preset with another count they are rebuilt
    with it (same shapes; the release's forward code is unchanged), so both networks normalise alike.
    """
    release, cfg = import_release(), preset(preset_name)
    wrapper = nn.Module()
    wrapper.reference_unet = release.UNet2DConditionModel(**cfg["unet"])
    wrapper.denoising_unet = release.UNet3DConditionModel(**release_unet3d_kwargs(preset_name))
    # Its forward reads config.center_input_sample, which its __init__ does not take (the release builds it from
    # SD-1.5's config.json, where the value is False).
    wrapper.denoising_unet.register_to_config(center_input_sample=False)
    groups = cfg["unet"]["norm_num_groups"]
    for module in wrapper.denoising_unet.modules():
        norm = getattr(getattr(module, "temporal_transformer", None), "norm", None)
        if norm is not None and norm.num_groups != groups:
            module.temporal_transformer.norm = nn.GroupNorm(groups, norm.num_channels, eps=norm.eps)
    guider = cfg["pose_guider"]
    wrapper.pose_guider = release.PoseGuider(
        cfg["unet"]["block_out_channels"][0], guider["conditioning_channels"], tuple(guider["block_out_channels"])
    )
    proj = cfg["audio_projection"]
    wrapper.audioproj = release.AudioProjModel(
        seq_len=proj["seq_len"],
        blocks=proj["num_layers"],
        channels=proj["input_dim"],
        intermediate_dim=proj["intermediate_dim"],
        output_dim=proj["output_dim"],
        context_tokens=proj["num_tokens"],
    )
    return wrapper


def key_shapes(module: nn.Module) -> dict[str, list[int]]:
    """key -> shape of a state dict (what the manifest records)."""
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@torch.no_grad()
def randomize(module: nn.Module, seed: int, std: float = 1.0) -> nn.Module:
    """Every parameter random, zero-initialised ones too: matrices ~ N(0, std^2 / fan_in), vectors ~ N(0, 0.1^2)
    around their usual value (1 for norm scales, 0 otherwise)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
        if p.ndim >= 2:
            p.copy_(noise * std / p[0].numel() ** 0.5)
        else:
            base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            p.copy_(base + 0.1 * noise)
    return module


MANIFEST_PRESETS = ("released", "released_tiny")


def manifest_text() -> str:
    """The stage-2 manifest file's text: the release's key -> shape at each preset's sizes, one key per line."""
    from accelerate import init_empty_weights

    lines = [
        "{",
        '  "checkpoint": "stage_2/process_2/net-32500.pth",',
        '  "about": "Key -> shape of the release\'s stage-2 wrapper state dict (data only), built from the authors\' '
        "code at each mmgt stage-2 preset's sizes: released = the checkpoint's own; released_tiny = the same network "
        'at the tiny sizes (tests). Regenerate: tests/official/test_stage2_manifest.py.",',
        '  "shapes": {',
    ]
    for p, name in enumerate(MANIFEST_PRESETS):
        with init_empty_weights(include_buffers=False):  # shapes only: nothing is allocated
            shapes = list(key_shapes(release_stage2(name)).items())
        lines.append(f'    "{name}": {{')
        lines += [f'      "{k}": {v}{"," if i < len(shapes) - 1 else ""}' for i, (k, v) in enumerate(shapes)]
        lines.append("    }" + ("," if p < len(MANIFEST_PRESETS) - 1 else ""))
    return "\n".join([*lines, "  }", "}"]) + "\n"
