"""Stage-II model assembly: the trainable module, the components of each step, their freeze policy (spec §5.5, §5.6),
what a checkpoint exports, and the inference pipeline around the training modules (validation and export).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
from torch import nn
from transformers import CLIPVisionModelWithProjection

from mmgt.audio.encoders import SpeechEncoder
from mmgt.config import Stage2Train, load_config
from mmgt.diffusion.stage2 import make_stage2_scheduler
from mmgt.errors import MmgtError, ModelFolderError
from mmgt.models.attention_inputs import AttnInputs
from mmgt.models.audio_attention import AudioAttentionAdapter
from mmgt.models.audio_projection import AudioProjection
from mmgt.models.denoising_unet import (
    build_denoising_unet,
    denoise_with_reference_dropout,
    encode_reference,
    freeze_for_step,
    install_stage2_processors,
    zero_init_motion_modules,
)
from mmgt.models.pose_guider import PoseGuider
from mmgt.models.stage2_presets import build_audio_modules, build_components, load_sd15_components, preset
from mmgt.pipelines.pose_to_video import PoseToVideoPipeline
from mmgt.pipelines.sampling_defaults import video_sampling
from mmgt.training.common import load_folder

logger = logging.getLogger(__name__)
STEPS = ("image", "video")
IMAGE_EXPORTS = ("unet", "reference_unet", "pose_guider", "vae", "image_encoder")  # <image run>/final/<name>
_LOADERS = {
    "unet": UNet2DConditionModel,
    "reference_unet": UNet2DConditionModel,
    "pose_guider": PoseGuider,
    "vae": AutoencoderKL,
    "image_encoder": CLIPVisionModelWithProjection,
}


# ---------------------------------------------------------------------------------------------------------------------
# The trainable model: one nn.Module, so accelerate/DDP sees a single forward
# ---------------------------------------------------------------------------------------------------------------------
class Stage2Trainee(nn.Module):
    """The stage-II modules of one training step, from noisy latents to the v-prediction (spec §5.1 figure).

    The frozen VAE and CLIP encoder stay outside; their outputs come in as tensors.
    """

    def __init__(
        self,
        unet: nn.Module,
        reference_unet: UNet2DConditionModel,
        pose_guider: PoseGuider,
        audio_projection: AudioProjection | None = None,
        audio_adapter: AudioAttentionAdapter | None = None,
    ):
        super().__init__()
        self.unet, self.reference_unet, self.pose_guider = unet, reference_unet, pose_guider
        self.audio_projection, self.audio_adapter = audio_projection, audio_adapter

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        ref_latents: torch.Tensor,
        clip_embeds: torch.Tensor,
        keep_image: torch.Tensor,
        pose_images: torch.Tensor,
        audio: torch.Tensor | None = None,
        keep_audio: torch.Tensor | None = None,
        branch_masks: list[torch.Tensor] | None = None,
        branch_weights: tuple[float, ...] = (1.0, 1.0, 1.0),
    ) -> torch.Tensor:
        """Predict v for a batch.

        Args:
            noisy_latents: (B, C, F, h, w) x_t (F = 1 in the image step).
            timesteps: (B,) diffusion timesteps.
            ref_latents: (B, C, h, w) scaled VAE latents of the reference images.
            clip_embeds: (B, 1, D) CLIP image embeddings of the references.
            keep_image: (B,) bool; False = image dropout: zero CLIP embedding and no ReferenceNet (spec §5.5).
            pose_images: (B*F, 3, H, W) rendered poses in [0, 1], frames b-major.
            audio: (B, F, 5, L, D) audio windows, or None (image step: MM-HAA absent).
            keep_audio: (B,) bool; False = audio dropout: all-zero tokens (spec §5.4.5).
            branch_masks: per UNet level (B*F, 3, h_l, w_l) MM-HAA branch masks.
            branch_weights: MM-HAA branch weights (spec §5.3: (1, 1, 1) in training).

        Returns:
            (B, C, F, h, w) v-prediction.
        """
        f = noisy_latents.shape[2]
        pose_features = self.pose_guider(pose_images)  # (B*F, C0, h, w)
        audio_tokens = None if audio is None else self.audio_tokens(audio, keep_audio)  # (B*F, N, D)
        clip = clip_embeds * keep_image.view(-1, 1, 1).to(clip_embeds.dtype)  # zero CLIP for dropped samples
        features = encode_reference(self.reference_unet, ref_latents, clip, AttnInputs())  # layer -> (B, N, C)

        inputs = AttnInputs(
            mode="read",
            reference_features=features,
            audio_tokens=audio_tokens,
            branch_masks=branch_masks,
            branch_weights=tuple(branch_weights),
            num_frames=f,
        )
        # Dropped samples must not see the reference at all ("skip the ReferenceNet"): they run as their own group.
        pred = denoise_with_reference_dropout(
            self.unet, noisy_latents, timesteps, clip, pose_features, inputs, keep_image
        )  # (B, C, F, h, w)
        if not bool(keep_image.any()) and features:
            # Why: with every sample dropped the ReferenceNet output is unused, and DDP would wait forever for its
            # gradients. A zero-weighted term keeps it in the graph; values and gradients stay exactly unchanged.
            pred = pred + 0.0 * sum(v.float().mean() for v in features.values())
        return pred

    def audio_tokens(self, audio: torch.Tensor, keep_audio: torch.Tensor) -> torch.Tensor:
        """(B, F, 5, L, D) windows -> (B*F, N, D) tokens; all-zero for dropped samples (spec §5.4.5)."""
        tokens = self.audio_projection(audio)  # (B*F, N, D), b-major
        # Multiplying by 0 gives exactly the all-zero unconditional tokens and keeps the projection in the graph.
        return tokens * keep_audio.repeat_interleave(audio.shape[1]).view(-1, 1, 1).to(tokens.dtype)


def video_audio_encoder(cfg: Stage2Train) -> SpeechEncoder | None:
    """The video step's speech encoder: all wav2vec2 layers from ``data.encoder``, or None for the mel fallback."""
    if cfg.step != "video" or not cfg.data.encoder:
        return None
    return SpeechEncoder.from_pretrained(cfg.data.encoder, layers="all", interpolate="before_transformer")


def parameter_groups(trainee: Stage2Trainee, audio_lr: float | None) -> list[dict]:
    """Optimiser groups: the audio projection and adapter at ``audio_lr`` (if set), everything else at the base LR."""
    audio = [m for m in (trainee.audio_projection, trainee.audio_adapter) if m is not None]
    if audio_lr is None or not audio:
        return [{"params": list(trainee.parameters())}]
    audio_ids = {id(p) for m in audio for p in m.parameters()}
    rest = [p for p in trainee.parameters() if id(p) not in audio_ids]
    return [{"params": rest}, {"params": [p for m in audio for p in m.parameters()], "lr": audio_lr}]


def trainable_counts(trainee: Stage2Trainee) -> dict[str, int]:
    """Number of trainable parameters per component (for logs and the freeze-policy check)."""
    return {
        name: sum(p.numel() for p in module.parameters() if p.requires_grad)
        for name, module in trainee.named_children()
    }


def check_video_freeze(trainee: Stage2Trainee) -> None:
    """Raise unless exactly the motion modules, the audio adapter and the audio projection are trainable (§5.6)."""
    motion = [
        block.motion_modules
        for block in trainee.unet.modules()
        if isinstance(getattr(block, "motion_modules", None), nn.ModuleList)
    ]
    allowed = {id(p) for m in (*motion, trainee.audio_adapter, trainee.audio_projection) for p in m.parameters()}
    trainable = {id(p) for p in trainee.parameters() if p.requires_grad}
    if trainable != allowed:
        raise MmgtError(
            f"video step: {len(trainable - allowed)} parameters trainable that should be frozen and "
            f"{len(allowed - trainable)} frozen that should train"
        )


# ---------------------------------------------------------------------------------------------------------------------
# Components of each step
# ---------------------------------------------------------------------------------------------------------------------
def image_step_components(cfg: Stage2Train) -> dict[str, nn.Module]:
    """Image step: ``preset: sd15`` from ``cfg.folders``; ``tiny`` random init with the VAE from ``cfg.vae``."""
    if cfg.preset == "sd15":
        folders = {k: v for k, v in vars(cfg.folders).items() if v}
        parts = load_sd15_components(folders)
    else:
        parts = build_components(cfg.preset)
        parts["vae"] = load_folder(AutoencoderKL, cfg.vae, "vae (the <run>/final folder of `mmgt train vae`)")
    return {name: parts[name] for name in IMAGE_EXPORTS}


def video_step_components(cfg: Stage2Train, audio_spec: dict) -> dict[str, nn.Module]:
    """Video step: the image step's export + motion modules + fresh audio modules sized from ``audio_spec``."""
    if not cfg.init_from:
        raise MmgtError("video step: init_from must name the image step's <run>/final folder")
    root = Path(cfg.init_from)
    missing = [name for name in IMAGE_EXPORTS if not (root / name / "config.json").is_file()]
    if missing:
        raise ModelFolderError(f"{root}: not an image-step export, missing {', '.join(missing)}")
    parts = {name: load_folder(_LOADERS[name], root / name, name) for name in IMAGE_EXPORTS}
    _warn_pose_mouth_mismatch(root, cfg.data.pose_mouth)
    if cfg.motion_adapter:
        motion_adapter = load_folder(MotionAdapter, cfg.motion_adapter, "motion_adapter")
    else:  # fresh temporal modules that start as an exact identity (AnimateDiff's zero-initialised proj_out)
        motion_adapter = zero_init_motion_modules(MotionAdapter(**preset(cfg.preset)["motion_adapter"]))
    parts["unet"] = build_denoising_unet(parts["unet"], motion_adapter, **preset(cfg.preset)["denoising_unet"])
    parts["motion_adapter"] = motion_adapter  # kept to export the motion modules in checkpoints
    parts["audio_projection"], parts["audio_adapter"] = build_audio_modules(
        cfg.preset, parts["unet"], audio_spec, cfg.audio_placement
    )
    return parts


def _warn_pose_mouth_mismatch(image_final: Path, pose_mouth: bool) -> None:
    """Warn when the image step (its run's config.yaml, next to ``final``) drew the mouth points differently."""
    run_config = image_final.parent / "config.yaml"
    if not run_config.is_file():
        return
    image_mouth = load_config(Stage2Train, run_config).data.pose_mouth
    if image_mouth != pose_mouth:
        logger.warning(
            "data.pose_mouth=%s but the image step %s was trained with pose_mouth=%s: its UNet and pose "
            "guider saw different pose images",
            pose_mouth,
            image_final,
            image_mouth,
        )


def build_trainee(cfg: Stage2Train, parts: dict[str, nn.Module]) -> Stage2Trainee:
    """Install the processors, apply the step's freeze policy (spec §5.5/5.6) and wrap the trainable modules."""
    if cfg.step not in STEPS:
        raise MmgtError(f"step must be one of {STEPS}, got {cfg.step!r}")
    video = cfg.step == "video"  # the image step has no audio modules (spec §5.5)
    audio_projection, audio_adapter = (parts[k] if video else None for k in ("audio_projection", "audio_adapter"))
    install_stage2_processors(parts["unet"], parts["reference_unet"], audio_adapter)
    trainee = Stage2Trainee(
        parts["unet"], parts["reference_unet"], parts["pose_guider"], audio_projection, audio_adapter
    )
    freeze_for_step(
        trainee.unet,
        trainee.reference_unet,
        trainee.pose_guider,
        trainee.audio_adapter,
        trainee.audio_projection,
        cfg.step,
    )
    if video:
        check_video_freeze(trainee)
    if cfg.gradient_checkpointing:
        trainee.unet.enable_gradient_checkpointing()
        trainee.reference_unet.enable_gradient_checkpointing()
    for frozen in (parts["vae"], parts["image_encoder"]):
        frozen.requires_grad_(False).eval()
    return trainee


def checkpoint_exports(model: Stage2Trainee, parts: dict, step: str) -> dict[str, nn.Module]:
    """What each checkpoint also holds in ``save_pretrained`` form: the modules this step trains."""
    if step == "image":
        return {"unet": model.unet, "reference_unet": model.reference_unet, "pose_guider": model.pose_guider}
    adapter = parts["motion_adapter"]  # an AnimateDiff MotionAdapter folder of the current motion modules
    unet_state = model.unet.state_dict()
    adapter.load_state_dict({key: unet_state[key] for key in adapter.state_dict()})
    return {
        "motion_adapter": adapter,
        "audio_adapter": model.audio_adapter,
        "audio_projection": model.audio_projection,
    }


def placed(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """``module`` on ``device`` in ``dtype`` (cast only when needed: diffusers warns on every dtype ``.to``)."""
    module = module.to(device)
    return module if module.dtype == dtype else module.to(dtype)


# ---------------------------------------------------------------------------------------------------------------------
# The inference pipeline around the training modules (validation and the video step's export)
# ---------------------------------------------------------------------------------------------------------------------
def build_pipeline(
    model: Stage2Trainee, vae, image_encoder, cfg: Stage2Train, audio_spec: dict, encoder=None
) -> PoseToVideoPipeline:
    """A PoseToVideoPipeline around the training modules (image step: with identity motion and no-op audio modules).

    The scheduler is :func:`make_stage2_scheduler`, saved into the export: inference samples on the training schedule.
    """
    unet, projection, adapter = model.unet, model.audio_projection, model.audio_adapter
    if cfg.step == "image":  # fresh temporal modules are an identity and fresh MM-HAA adapters are zero: per-frame
        motion = zero_init_motion_modules(MotionAdapter(**preset(cfg.preset)["motion_adapter"]))
        unet = build_denoising_unet(model.unet, motion, **preset(cfg.preset)["denoising_unet"])
        projection, adapter = build_audio_modules(cfg.preset, unet, audio_spec, cfg.audio_placement)
        unet, projection, adapter = (m.to(vae.device) for m in (unet, projection, adapter))
    pipe = PoseToVideoPipeline(
        vae,
        image_encoder,
        model.reference_unet,
        unet,
        model.pose_guider,
        projection,
        adapter,
        make_stage2_scheduler(),
        audio_features=audio_spec,
        pose_mouth=cfg.data.pose_mouth,
        mask_variant=cfg.data.mask_variant,
        **video_sampling(cfg.preset, window_frames=cfg.data.num_frames).to_dict(),  # the windows trained on
    )
    if encoder is not None:
        pipe.set_audio_encoder(encoder)
    return pipe
