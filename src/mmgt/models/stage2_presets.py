"""Stage-2 component presets (`sd15`, `tiny`, `released`, `released_tiny`) as plain JSON-friendly dicts, and
builders/loaders for them.

Each section's keys are the constructor arguments of its component (``audio_adapter``: those of
``AudioAttentionAdapter.for_unet``; ``denoising_unet``: those of ``build_denoising_unet`` after the UNet and the
motion adapter), so ``Class(**section)`` works and a misspelt key raises ``TypeError``. ``unet`` is used for both the
ReferenceNet and the denoising UNet (spec §5.2).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from mmgt.errors import MmgtError, ModelFolderError
from mmgt.models.audio_attention import AudioAttentionAdapter
from mmgt.models.audio_projection import AudioProjection
from mmgt.models.denoising_unet import zero_init_motion_modules
from mmgt.models.pose_guider import PoseGuider

_DOWN_SD = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
_UP_SD = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]

PRESETS: dict[str, dict[str, dict]] = {
    # The released model's backbone: SD-1.5 UNet, sd-vae-ft-mse, AnimateDiff mm_sd_v15_v2, CLIP ViT-L/14 vision with
    # the 768-d projection of sd-image-variations, ControlNet-openpose-shaped pose guider (spec §5.2, §12).
    "sd15": {
        "unet": dict(
            sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
            freq_shift=0, down_block_types=_DOWN_SD, up_block_types=_UP_SD, block_out_channels=[320, 640, 1280, 1280],
            layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32,
            norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8,  # diffusers' legacy name: 8 HEADS
        ),
        "motion_adapter": dict(
            block_out_channels=[320, 640, 1280, 1280], motion_layers_per_block=2,
            motion_transformer_layers_per_block=1, motion_mid_block_layers_per_block=1,
            motion_transformer_layers_per_mid_block=1, motion_num_attention_heads=8, motion_norm_num_groups=32,
            motion_max_seq_length=32, use_motion_mid_block=True, conv_in_channels=None,
        ),
        "vae": dict(
            in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
            act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=512, scaling_factor=0.18215,
        ),
        "image_encoder": dict(
            hidden_size=1024, intermediate_size=4096, projection_dim=768, num_hidden_layers=24,
            num_attention_heads=16, num_channels=3, image_size=224, patch_size=14, hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
        ),
        "pose_guider": dict(conditioning_channels=3, block_out_channels=[16, 32, 96, 256], out_channels=320),
        "audio_projection": dict(
            seq_len=5, num_layers=12, input_dim=768, intermediate_dim=512, output_dim=768, num_tokens=32
        ),
        "audio_adapter": dict(placement="down", audio_dim=768, num_heads=8, released_block=False, norm_num_groups=32),
        "denoising_unet": dict(motion_norm="per_frame"),  # AnimateDiff's statistics (docs/stage2.md: the measurement)
    },
    # Same wiring, sized to train on 2 CPU cores: 128x128 images -> 16x16 latents (8x VAE), 8 audio tokens x 64.
    "tiny": {
        "unet": dict(
            sample_size=16, in_channels=4, out_channels=4, down_block_types=_DOWN_SD[1:], up_block_types=_UP_SD[:-1],
            block_out_channels=[32, 64, 64], layers_per_block=1, norm_num_groups=8, cross_attention_dim=64,
            attention_head_dim=4,
        ),
        "motion_adapter": dict(
            block_out_channels=[32, 64, 64], motion_layers_per_block=1, motion_transformer_layers_per_block=1,
            motion_mid_block_layers_per_block=1, motion_transformer_layers_per_mid_block=1,
            motion_num_attention_heads=4, motion_norm_num_groups=8, motion_max_seq_length=32,
            use_motion_mid_block=True, conv_in_channels=None,
        ),
        "vae": dict(
            in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[16, 32, 32, 32], layers_per_block=1,
            act_fn="silu", latent_channels=4, norm_num_groups=8, sample_size=128, scaling_factor=0.18215,
        ),
        "image_encoder": dict(
            hidden_size=32, intermediate_size=64, projection_dim=64, num_hidden_layers=2, num_attention_heads=4,
            num_channels=3, image_size=32, patch_size=8, hidden_act="quick_gelu", layer_norm_eps=1e-5,
        ),
        "pose_guider": dict(conditioning_channels=3, block_out_channels=[8, 16, 16, 32], out_channels=32),
        "audio_projection": dict(
            seq_len=5, num_layers=4, input_dim=32, intermediate_dim=64, output_dim=64, num_tokens=8
        ),
        "audio_adapter": dict(placement="down", audio_dim=64, num_heads=4, released_block=False, norm_num_groups=8),
        "denoising_unet": dict(motion_norm="pooled"),  # what the bundled demo was trained with
    },
}  # fmt: skip

# The network of the authors' released checkpoint (spec §5.2, §5.3, verified against their code): MM-HAA as a separate
# residual module on each down-block spatial transformer's output, inner width = the block's input width in the first
# module, biased 1x1 adapters; motion-module GroupNorm statistics per frame. `released` has the SD-1.5 sizes the
# checkpoint has; `released_tiny` the same network at the `tiny` sizes (tests, `mmgt weights convert-released` checks).
RELEASED_OPTIONS: dict[str, dict] = {
    "audio_adapter": dict(
        position="transformer_output", inner_width="block_input", released_block=True, adapter_bias=True
    ),
    "denoising_unet": dict(motion_norm="per_frame"),
}
for _name, _base in (("released", "sd15"), ("released_tiny", "tiny")):
    PRESETS[_name] = {k: {**v, **RELEASED_OPTIONS.get(k, {})} for k, v in copy.deepcopy(PRESETS[_base]).items()}

# Component -> files that make a local folder loadable (any one weights file suffices).
_WEIGHTS = {
    "diffusers": (
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.safetensors.index.json",
        "diffusion_pytorch_model.bin",
    ),
    "transformers": ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"),
}
_FOLDERS = {"unet": "diffusers", "vae": "diffusers", "motion_adapter": "diffusers", "image_encoder": "transformers"}
_OPTIONAL_FOLDERS = {"controlnet": "diffusers"}


def preset(name: str) -> dict[str, dict]:
    """A deep copy of preset ``name`` (safe to modify)."""
    if name not in PRESETS:
        raise MmgtError(f"unknown stage-2 preset {name!r}; choose one of {sorted(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def build_components(name: str, audio_spec: dict | None = None, placement: str | None = None) -> dict[str, object]:
    """Random-init stage-2 components of preset ``name``.

    Args:
        name: a key of :data:`PRESETS`.
        audio_spec, placement: passed to :func:`build_audio_modules` (defaults: the preset's own sizes).

    Returns:
        dict with ``unet`` (2D denoising UNet; inflate with ``build_denoising_unet``), ``reference_unet`` (same
        weights as ``unet``, as both start from SD-1.5), ``motion_adapter`` (temporal outputs zeroed, as AnimateDiff
        initialises them), ``vae``, ``image_encoder``, ``pose_guider``, ``audio_projection``, ``audio_adapter``.
    """
    cfg = preset(name)
    unet = UNet2DConditionModel(**cfg["unet"])
    reference_unet = UNet2DConditionModel(**cfg["unet"])
    reference_unet.load_state_dict(unet.state_dict())
    return {
        "unet": unet,
        "reference_unet": reference_unet,
        "motion_adapter": zero_init_motion_modules(MotionAdapter(**cfg["motion_adapter"])),
        "vae": AutoencoderKL(**cfg["vae"]),
        "image_encoder": CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg["image_encoder"])),
        **_new_modules(name, unet, audio_spec, placement),
    }


def load_sd15_components(folders: dict[str, str | os.PathLike], new_modules_preset: str = "sd15") -> dict[str, object]:
    """Stage-2 components from local diffusers/transformers folders; the modules MMGT adds start fresh.

    Args:
        folders: ``unet`` (SD-1.5 or sd-image-variations UNet), ``vae`` (sd-vae-ft-mse), ``image_encoder`` (CLIP
            vision with projection), ``motion_adapter`` (AnimateDiff v2) and optionally ``controlnet`` (openpose; its
            condition embedding initialises the pose guider). Nothing is downloaded.
        new_modules_preset: preset for the fresh pose guider, audio projection and audio adapter (its pose-guider
            ``out_channels`` follows the loaded UNet).

    Returns:
        The same keys as :func:`build_components`.

    Raises:
        ModelFolderError: listing every missing folder/file and unknown key at once.
    """
    check_sd15_folders(folders)
    preset(new_modules_preset)  # an unknown name fails before anything loads
    unet = UNet2DConditionModel.from_pretrained(folders["unet"], local_files_only=True)
    components = {
        "unet": unet,
        "reference_unet": UNet2DConditionModel.from_pretrained(folders["unet"], local_files_only=True),
        "motion_adapter": MotionAdapter.from_pretrained(folders["motion_adapter"], local_files_only=True),
        "vae": AutoencoderKL.from_pretrained(folders["vae"], local_files_only=True),
        "image_encoder": CLIPVisionModelWithProjection.from_pretrained(
            folders["image_encoder"], local_files_only=True
        ),
        **_new_modules(new_modules_preset, unet),
    }
    if folders.get("controlnet"):
        components["pose_guider"] = PoseGuider.from_controlnet(
            folders["controlnet"], unet.config.block_out_channels[0]
        )
    return components


def build_audio_modules(
    name: str, unet: nn.Module, audio_spec: dict | None = None, placement: str | None = None
) -> tuple[AudioProjection, AudioAttentionAdapter]:
    """The fresh audio modules of preset ``name``: the audio projection and the MM-HAA adapter for ``unet``.

    Args:
        name: a key of :data:`PRESETS` (the modules' widths, heads and token count).
        unet: the denoising UNet, 2D or inflated (the adapter's layers are its spatial ``attn2`` layers, whose names
            and widths are the same in both).
        audio_spec: the audio feature recipe (``mmgt.audio.features.feature_spec``): the projection reads its
            ``num_layers`` x ``dim`` features per frame. ``None`` keeps the preset's sizes.
        placement: MM-HAA placement (``down`` | ``down_up_mid``); ``None`` keeps the preset's.

    Returns:
        (projection, adapter), built in that order (the random init depends on it). Deviation from a fixed preset
        size: the projection reads whatever the feature recipe gives.
    """
    cfg = preset(name)
    projection_cfg = cfg["audio_projection"]
    if audio_spec is not None:
        projection_cfg |= {"num_layers": audio_spec["num_layers"], "input_dim": audio_spec["dim"]}
    adapter_cfg = cfg["audio_adapter"] | ({} if placement is None else {"placement": placement})
    return AudioProjection(**projection_cfg), AudioAttentionAdapter.for_unet(unet, **adapter_cfg)


def _new_modules(
    name: str, unet: UNet2DConditionModel, audio_spec: dict | None = None, placement: str | None = None
) -> dict[str, object]:
    """The modules MMGT adds, sized to ``unet``: pose guider, audio projection, audio adapter."""
    pose_cfg = {**preset(name)["pose_guider"], "out_channels": unet.config.block_out_channels[0]}
    pose_guider = PoseGuider(**pose_cfg)  # first: the random init follows the construction order
    projection, adapter = build_audio_modules(name, unet, audio_spec, placement)
    return {"pose_guider": pose_guider, "audio_projection": projection, "audio_adapter": adapter}


def check_sd15_folders(folders: dict[str, str | os.PathLike]) -> None:
    """Raise one ModelFolderError naming every problem (missing key, folder, config or weights; unknown key)."""
    problems = [f"unknown component {key!r}" for key in folders if key not in _FOLDERS | _OPTIONAL_FOLDERS]
    wanted = dict(_FOLDERS)
    wanted.update({k: v for k, v in _OPTIONAL_FOLDERS.items() if folders.get(k)})
    for key, library in wanted.items():
        if not folders.get(key):
            problems.append(f"{key}: no folder given")
            continue
        folder = Path(folders[key])
        if not folder.is_dir():
            problems.append(f"{key}: folder {folder} does not exist")
            continue
        if not (folder / "config.json").is_file():
            problems.append(f"{key}: {folder / 'config.json'} is missing")
        if not any((folder / name).is_file() for name in _WEIGHTS[library]):
            problems.append(f"{key}: no weights in {folder} (expected {' or '.join(_WEIGHTS[library])})")
    if problems:
        raise ModelFolderError("stage-2 model folders incomplete: " + "; ".join(problems))
