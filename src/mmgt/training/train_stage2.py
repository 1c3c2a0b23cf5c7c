"""``mmgt train stage2 --step image|video``: the two stage-II training steps (spec §5.5, §5.6) on accelerate.

Image step (II-a): the 2D denoising UNet, the ReferenceNet and the pose guider learn to redraw a target frame of the
reference person in the target pose. Video step (II-b): starting from the image step's export, only the AnimateDiff
motion modules, the MM-HAA audio adapter and the audio projection train, on F consecutive frames with audio.

Both steps share one objective: v-prediction on the zero-terminal-SNR schedule of
:func:`mmgt.diffusion.stage2.make_stage2_scheduler`, noise offset, min-SNR weights, condition dropout.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed
from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
from torch import nn
from tqdm.auto import tqdm
from transformers import CLIPVisionModelWithProjection

from mmgt.audio.encoders import SpeechEncoder
from mmgt.audio.features import feature_spec
from mmgt.config import Stage2Train, load_config, save_config
from mmgt.constants import FPS
from mmgt.contracts import PoseSequence
from mmgt.data.manifest import read_manifest
from mmgt.data.stage2_dataset import Stage2ImageDataset, Stage2VideoDataset, crop_resize
from mmgt.diffusion.stage2 import make_stage2_scheduler, min_snr_weights, noise_offset, v_target
from mmgt.errors import MmgtError, ModelFolderError
from mmgt.evaluation.image_quality import psnr, ssim
from mmgt.models.attention_inputs import AttnInputs
from mmgt.models.audio_attention import AudioAttentionAdapter
from mmgt.models.audio_projection import AudioProjection
from mmgt.models.denoising_unet import (
    build_denoising_unet,
    denoise,
    encode_reference,
    freeze_for_step,
    install_stage2_processors,
    zero_init_motion_modules,
)
from mmgt.models.pose_guider import PoseGuider
from mmgt.models.stage2_presets import build_components, load_sd15_components, preset
from mmgt.pipelines.pose_to_video import PoseToVideoPipeline, clip_pixels
from mmgt.training.common import (
    CSVLog,
    batch_indices,
    build_optimizer,
    collate,
    latest_checkpoint,
    log_losses,
    make_run_dir,
    optimizer_step,
    save_checkpoint,
    seed_step,
    setup_accelerator,
    step_generator,
    warmup_lambda,
)
from mmgt.utils.audio_io import load_audio
from mmgt.utils.video_io import read_video_frames
from mmgt.utils.video_writer import save_video

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
        region_masks: list[torch.Tensor] | None = None,
        region_scales: tuple[float, ...] = (1.0, 1.0, 1.0),
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
            region_masks: per UNet level (B*F, 3, h_l, w_l) MM-HAA branch masks.
            region_scales: MM-HAA branch weights (spec §5.3: (1, 1, 1) in training).

        Returns:
            (B, C, F, h, w) v-prediction.
        """
        f = noisy_latents.shape[2]
        pose_features = self.pose_guider(pose_images)  # (B*F, C0, h, w)
        audio_tokens = None if audio is None else self.audio_tokens(audio, keep_audio)  # (B*F, N, D)
        clip = clip_embeds * keep_image.view(-1, 1, 1).to(clip_embeds.dtype)  # zero CLIP for dropped samples
        features = encode_reference(self.reference_unet, ref_latents, clip, AttnInputs())  # layer -> (B, N, C)

        # Dropped samples must not see the reference at all ("skip the ReferenceNet"), so they run as their own
        # group with mode "off"; the UNet treats samples independently, so splitting the batch changes nothing else.
        preds, order = [], []
        for keep in (True, False):
            rows = torch.nonzero(keep_image == keep).flatten()
            if len(rows) == 0:
                continue
            frames = (rows[:, None] * f + torch.arange(f, device=rows.device)).flatten()  # rows of (B*F) tensors
            inputs = AttnInputs(
                mode="read" if keep else "off",
                reference_features={k: v[rows] for k, v in features.items()} if keep else {},
                audio_tokens=None if audio_tokens is None else audio_tokens[frames],
                region_masks=None if region_masks is None else [m[frames] for m in region_masks],
                region_scales=tuple(region_scales),
                num_frames=f,
            )
            preds.append(
                denoise(self.unet, noisy_latents[rows], timesteps[rows], clip[rows], pose_features[frames], inputs)
            )
            order.append(rows)
        pred = torch.cat(preds)[torch.argsort(torch.cat(order))]  # back to batch order, (B, C, F, h, w)
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
# Components
# ---------------------------------------------------------------------------------------------------------------------
def image_step_components(cfg: Stage2Train) -> dict[str, nn.Module]:
    """Image step: ``preset: sd15`` from ``cfg.folders``; ``tiny`` random init with the VAE from ``cfg.vae``."""
    if cfg.preset == "sd15":
        folders = {k: v for k, v in vars(cfg.folders).items() if v}
        parts = load_sd15_components(folders)
    else:
        parts = build_components(cfg.preset)
        parts["vae"] = _load(AutoencoderKL, cfg.vae, "vae (the <run>/final folder of `mmgt train vae`)")
    return {name: parts[name] for name in IMAGE_EXPORTS}


def video_step_components(cfg: Stage2Train, audio_spec: dict) -> dict[str, nn.Module]:
    """Video step: the image step's export + motion modules + fresh audio modules sized from ``audio_spec``."""
    if not cfg.init_from:
        raise MmgtError("video step: init_from must name the image step's <run>/final folder")
    root = Path(cfg.init_from)
    missing = [name for name in IMAGE_EXPORTS if not (root / name / "config.json").is_file()]
    if missing:
        raise ModelFolderError(f"{root}: not an image-step export, missing {', '.join(missing)}")
    parts = {name: _load(_LOADERS[name], root / name, name) for name in IMAGE_EXPORTS}
    _warn_pose_mouth_mismatch(root, cfg.data.pose_mouth)
    presets = preset(cfg.preset)
    if cfg.motion_adapter:
        motion_adapter = _load(MotionAdapter, cfg.motion_adapter, "motion_adapter")
    else:  # fresh temporal modules that start as an exact identity (AnimateDiff's zero-initialised proj_out)
        motion_adapter = zero_init_motion_modules(MotionAdapter(**presets["motion_adapter"]))
    parts["unet"] = build_denoising_unet(parts["unet"], motion_adapter)
    parts["motion_adapter"] = motion_adapter  # kept to export the motion modules in checkpoints
    # Deviation from a fixed preset size: the projection reads whatever the feature recipe gives (L, D per frame).
    parts["audio_projection"] = AudioProjection(
        **{**presets["audio_projection"], "num_layers": audio_spec["num_layers"], "input_dim": audio_spec["dim"]}
    )
    parts["audio_adapter"] = AudioAttentionAdapter.for_unet(
        parts["unet"], **{**presets["audio_adapter"], "placement": cfg.audio_placement}
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


def _load(cls, folder, what: str):
    """``cls.from_pretrained(folder)`` from a local folder, with a one-line error naming ``what`` when it is absent."""
    if not folder or not (Path(folder) / "config.json").is_file():
        raise ModelFolderError(f"{what}: no model folder at {folder!r} (expected a config.json there)")
    return cls.from_pretrained(folder, local_files_only=True)


# ---------------------------------------------------------------------------------------------------------------------
# One training step
# ---------------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def encode_batch(batch: dict, vae: AutoencoderKL, image_encoder, generator: torch.Generator | None) -> dict:
    """Frozen encoders: target latents (posterior sample), reference latent (posterior mode, as at inference), CLIP.

    Returns:
        ``latents`` (B, C, F, h, w), ``ref_latents`` (B, C, h, w), ``clip_embeds`` (B, 1, D), ``pose_images``
        (B*F, 3, H, W), ``audio`` (B, F, 5, L, D) or None, ``region_masks`` list of (B*F, 3, h, w) or None.
    """
    device, dtype, scale = vae.device, vae.dtype, vae.config.scaling_factor
    video = "frames" in batch
    pixels = batch["frames"] if video else batch["target"][:, :, None]  # (B, 3, F, H, W) in [-1, 1]
    poses = batch["poses"] if video else batch["pose"][:, :, None]  # (B, 3, F, H, W) in [0, 1]
    b, _, f, h, w = pixels.shape
    frames = pixels.permute(0, 2, 1, 3, 4).reshape(b * f, 3, h, w).to(device, dtype)  # (B*F, 3, H, W), b-major
    latents = vae.encode(frames).latent_dist.sample(generator=generator).float() * scale  # (B*F, C, h, w)
    reference = batch["reference"].to(device, dtype)  # (B, 3, H, W)
    clip_in = clip_pixels(reference, image_encoder.config.image_size).to(device, image_encoder.dtype)
    return {
        "latents": latents.reshape(b, f, *latents.shape[1:]).permute(0, 2, 1, 3, 4),  # (B, C, F, h, w)
        "ref_latents": vae.encode(reference).latent_dist.mode().float() * scale,
        "clip_embeds": image_encoder(clip_in).image_embeds[:, None].float(),  # (B, 1, D)
        "pose_images": poses.permute(0, 2, 1, 3, 4).reshape(b * f, 3, h, w).float(),
        "audio": batch["audio"].float() if video else None,
        "region_masks": [m.flatten(0, 1).float() for m in batch["masks"]] if video else None,
    }


def stage2_loss(
    trainee: nn.Module, scheduler, inputs: dict, generator: torch.Generator, cfg: Stage2Train, device
) -> dict[str, torch.Tensor]:
    """Noise, condition dropout, the v-prediction MSE with min-SNR weights (spec §5.5); returns named scalars."""
    obj = cfg.objective
    latents = inputs["latents"].to(device)
    b = latents.shape[0]
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator)
    noise = torch.randn(latents.shape, generator=generator).to(device)
    noise = noise + noise_offset(latents, generator, obj.noise_offset)  # one extra value per (sample, channel)
    keep_image = (torch.rand(b, generator=generator) >= obj.image_drop_prob).to(device)
    keep_audio = (torch.rand(b, generator=generator) >= obj.audio_drop_prob).to(device)
    timesteps = timesteps.to(device)
    noisy = scheduler.add_noise(latents, noise, timesteps)  # x_t = sqrt(ab) x0 + sqrt(1 - ab) eps
    cond = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in inputs.items()}
    masks = None if cond["region_masks"] is None else [m.to(device) for m in cond["region_masks"]]
    pred = trainee(
        noisy,
        timesteps,
        cond["ref_latents"],
        cond["clip_embeds"],
        keep_image,
        cond["pose_images"],
        cond["audio"],
        keep_audio,
        masks,
        obj.region_scales,
    )
    target = v_target(scheduler, latents, noise, timesteps)  # (B, C, F, h, w)
    squared = (pred.float() - target.float()) ** 2  # (B, C, F, h, w)
    mse = squared.mean(dim=(1, 2, 3, 4))  # (B,)
    pixel_weights = lip_loss_weights(masks, latents.shape, obj.lip_loss_weight)
    if pixel_weights is not None:  # a weighted mean: the loss scale stays that of the plain MSE
        squared = squared * pixel_weights
        mse_for_loss = squared.sum(dim=(1, 2, 3, 4)) / (pixel_weights.sum(dim=(1, 2, 3, 4)) * latents.shape[1])
    else:
        mse_for_loss = mse
    weights = min_snr_weights(scheduler, timesteps, obj.snr_gamma).to(device)  # spec §5.5 min-SNR, gamma 5
    return {"loss": (weights * mse_for_loss).mean(), "mse": mse.mean().detach()}


def lip_loss_weights(masks: list[torch.Tensor] | None, shape: torch.Size, lip_weight: float) -> torch.Tensor | None:
    """Per-latent-pixel loss weights 1 + ``lip_weight`` * lip mask, or None (no masks, or weight 0).

    Args:
        masks: per UNet level (B*F, 3, h_l, w_l) region masks (global, face_hands, lips); level 0 is the latent size.
        shape: the latents' shape (B, C, F, h, w).

    Returns:
        (B, 1, F, h, w) weights >= 1.
    """
    if not masks or lip_weight == 0:
        return None
    b, _, f, h, w = shape
    lips = masks[0][:, 2]  # (B*F, h, w), b-major like the frames
    if lips.shape[-2:] != (h, w):
        raise MmgtError(f"lip mask is {tuple(lips.shape[-2:])}, the latents {h}x{w}")
    return 1.0 + lip_weight * lips.reshape(b, f, h, w)[:, None].float()


# ---------------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------------
def main(cfg: Stage2Train, resume: bool = False) -> Path:
    """Train one stage-II step; returns ``<run>/final`` (image: component folders; video: a PoseToVideoPipeline)."""
    # 1. Run folder, accelerator, resolved config.
    if cfg.step not in STEPS:
        raise MmgtError(f"step must be one of {STEPS}, got {cfg.step!r}")
    run_dir = make_run_dir(cfg.output_root, "stage2", cfg.name, resume=resume)
    accelerator = setup_accelerator(run_dir, cfg.mixed_precision)
    rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device
    if accelerator.is_main_process:
        save_config(cfg, run_dir / "config.yaml")

    # 2. Audio recipe (video step): wav2vec2 from a local folder, or the mel fallback (L = 1, D = 81).
    encoder = video_audio_encoder(cfg)
    audio_spec = feature_spec(encoder, stage=2)

    # 3. Components and freeze policy; the frozen VAE and CLIP run in the mixed-precision dtype.
    set_seed(cfg.seed)  # fresh weights depend only on the seed
    parts = image_step_components(cfg) if cfg.step == "image" else video_step_components(cfg, audio_spec)
    trainee = build_trainee(cfg, parts)
    logger.info("trainable parameters: %s", trainable_counts(trainee))
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision, torch.float32)
    vae, image_encoder = (_placed(parts[name], device, weight_dtype) for name in ("vae", "image_encoder"))
    scheduler = make_stage2_scheduler()

    # 4. Data.
    if cfg.step == "image":
        train_set = Stage2ImageDataset(
            cfg.data.root,
            "train",
            cfg.data.size,
            cfg.data.min_gap,
            tuple(cfg.data.crop_scale),
            tuple(cfg.data.crop_ratio),
            cfg.seed,
            cfg.data.samples_per_clip,
            cfg.data.pose_mouth,
        )
    else:
        train_set = Stage2VideoDataset(
            cfg.data.root,
            "train",
            cfg.data.size,
            cfg.data.num_frames,
            encoder,
            cfg.seed,
            cfg.data.samples_per_clip,
            cfg.data.pose_mouth,
        )

    # 5. Optimiser (trainable parameters only), constant LR after warm-up (spec §5.5).
    optimizer = build_optimizer(
        parameter_groups(trainee, cfg.audio_lr),
        cfg.optim.name,
        cfg.optim.lr,
        cfg.optim.weight_decay,
        tuple(cfg.optim.betas),
    )
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_lambda(cfg.optim.warmup_steps))
    trainee, optimizer, lr_scheduler = accelerator.prepare(trainee, optimizer, lr_scheduler)

    # 6. Resume: model, optimiser and LR schedule; every later random draw depends only on (seed, step, process).
    start_step = _resume(accelerator, run_dir) if resume else 0
    main_process = accelerator.is_main_process
    log = CSVLog(run_dir / "train_log.csv", resume_step=start_step if resume else None) if main_process else None
    val_log = CSVLog(run_dir / "val_log.csv", resume_step=start_step if resume else None) if main_process else None

    # 7. Loop.
    trainee.train()
    bar = tqdm(
        range(start_step, cfg.max_steps),
        initial=start_step,
        total=cfg.max_steps,
        disable=not main_process,
        desc=f"stage2 {cfg.step}",
    )
    for step in bar:
        seed_step(cfg.seed, step, rank)
        gen = step_generator(cfg.seed, step, rank)
        train_set.set_epoch(step * cfg.batch_size * world // len(train_set))
        batch = collate(
            [train_set[i] for i in batch_indices(len(train_set), cfg.batch_size, step, cfg.seed, world, rank)]
        )
        inputs = encode_batch(batch, vae, image_encoder, gen)
        with accelerator.autocast():
            losses = stage2_loss(trainee, scheduler, inputs, gen, cfg, device)
        optimizer_step(accelerator, losses["loss"], trainee.parameters(), optimizer, lr_scheduler, cfg.optim.grad_clip)

        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.max_steps:
            log_losses(accelerator, log, bar, done, losses, lr_scheduler)
        if done % cfg.checkpoint_every == 0 or done == cfg.max_steps:
            exports = _checkpoint_exports(accelerator.unwrap_model(trainee), parts, cfg.step)
            save_checkpoint(accelerator, run_dir, done, exports, cfg.checkpoints_total_limit)
        if cfg.validation.every and (done % cfg.validation.every == 0 or done == cfg.max_steps):
            if main_process:
                pipe = build_pipeline(accelerator.unwrap_model(trainee), vae, image_encoder, cfg, audio_spec, encoder)
                validate(pipe, cfg, run_dir, done, val_log)
            accelerator.wait_for_everyone()

    # 8. Export: image step -> component folders; video step -> a PoseToVideoPipeline folder.
    final = run_dir / "final"
    if main_process:
        model = accelerator.unwrap_model(trainee)
        vae, image_encoder = (_placed(m, device, torch.float32) for m in (vae, image_encoder))
        if cfg.step == "image":
            exports = _checkpoint_exports(model, parts, "image") | {"vae": vae, "image_encoder": image_encoder}
            for name, module in exports.items():
                module.save_pretrained(final / name)
        else:
            build_pipeline(model, vae, image_encoder, cfg, audio_spec, encoder).save_pretrained(final)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def _placed(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """``module`` on ``device`` in ``dtype`` (cast only when needed: diffusers warns on every dtype ``.to``)."""
    module = module.to(device)
    return module if module.dtype == dtype else module.to(dtype)


def _resume(accelerator, run_dir: Path) -> int:
    found = latest_checkpoint(run_dir)
    if found is None:
        raise MmgtError(f"--resume: {run_dir} has no complete checkpoint")
    accelerator.load_state(str(found[0]))
    logger.info("resumed from %s", found[0])
    return found[1]


def _checkpoint_exports(model: Stage2Trainee, parts: dict, step: str) -> dict[str, nn.Module]:
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


# ---------------------------------------------------------------------------------------------------------------------
# Validation: a short clip of a held-out video through the inference pipeline
# ---------------------------------------------------------------------------------------------------------------------
def build_pipeline(
    model: Stage2Trainee, vae, image_encoder, cfg: Stage2Train, audio_spec: dict, encoder=None
) -> PoseToVideoPipeline:
    """A PoseToVideoPipeline around the training modules (image step: with identity motion and no-op audio modules).

    The scheduler is :func:`make_stage2_scheduler`, saved into the export: inference samples on the training schedule.
    """
    unet, projection, adapter = model.unet, model.audio_projection, model.audio_adapter
    if cfg.step == "image":  # fresh temporal modules are an identity and fresh MM-HAA adapters are zero: per-frame
        presets = preset(cfg.preset)
        unet = build_denoising_unet(model.unet, zero_init_motion_modules(MotionAdapter(**presets["motion_adapter"])))
        projection = AudioProjection(
            **{**presets["audio_projection"], "num_layers": audio_spec["num_layers"], "input_dim": audio_spec["dim"]}
        )
        adapter = AudioAttentionAdapter.for_unet(
            unet, **{**presets["audio_adapter"], "placement": cfg.audio_placement}
        )
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
        region_scales=tuple(cfg.validation.region_scales),
        window_frames=cfg.data.num_frames,
        overlap=cfg.data.num_frames // 3,  # spec §5.7: 12 / 4
        pose_mouth=cfg.data.pose_mouth,
    )
    if encoder is not None:
        pipe.set_audio_encoder(encoder)
    return pipe


@torch.no_grad()
def validate(pipe: PoseToVideoPipeline, cfg: Stage2Train, run_dir: Path, step: int, log: CSVLog | None) -> dict:
    """Generate the first frames of a held-out clip (reference: its last frame); PSNR/SSIM against the real frames.

    Writes ``validation/step-XXXXXXX.mp4`` (real | generated, with the clip's audio); logs ``val_psnr``, ``val_ssim``.
    """
    records = read_manifest(cfg.data.root, cfg.validation.split)
    if not records:
        raise MmgtError(f"{cfg.data.root}: no clips in validation split {cfg.validation.split!r}")
    rec, size = records[0], cfg.data.size
    frames = read_video_frames(rec.path(cfg.data.root, "video"))
    n = min(cfg.validation.num_frames, len(frames))
    real = crop_resize(frames, (0, 0, *frames.shape[1:3]), size)  # (F, S, S, 3), resized like the video dataset
    poses = PoseSequence.load(rec.path(cfg.data.root, "keypoints"))[:n]
    wave = load_audio(rec.path(cfg.data.root, "audio"), sample_rate=rec.sample_rate)
    wave = wave[: -(-n * rec.sample_rate // FPS)] if cfg.step == "video" else None  # image step: no audio modules
    out = pipe(
        real[-1],
        poses,
        audio=wave,
        sample_rate=rec.sample_rate,
        height=size,
        width=size,
        num_inference_steps=cfg.validation.num_inference_steps,
        guidance_scale=cfg.validation.guidance_scale,
        generator=torch.Generator().manual_seed(cfg.seed),
        progress=False,
    )
    metrics = {"val_psnr": psnr(out.frames, real[:n]), "val_ssim": ssim(out.frames, real[:n])}
    print(f"stage2 {cfg.step} step {step}: val PSNR {metrics['val_psnr']:.2f} dB, SSIM {metrics['val_ssim']:.4f}")
    if log is not None:
        log.log(step, metrics)
        side_by_side = np.concatenate([real[:n], out.frames], axis=2)  # (n, S, 2S, 3)
        out_dir = run_dir / "validation"
        out_dir.mkdir(exist_ok=True)
        save_video(out_dir / f"step-{step:07d}.mp4", side_by_side, fps=FPS, audio=wave, sample_rate=rec.sample_rate)
    return metrics
