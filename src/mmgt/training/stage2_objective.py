"""The stage-II objective shared by both training steps (spec §5.5, §5.6): frozen encoders, noise, condition dropout,
v-prediction on the zero-terminal-SNR schedule of :func:`mmgt.diffusion.stage2.make_stage2_scheduler`, min-SNR weights.

The model side (what runs between the noisy latents and the prediction) is
:class:`mmgt.training.stage2_components.Stage2Trainee`.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from torch import nn

from mmgt.config import Stage2Train
from mmgt.diffusion.stage2 import min_snr_weights, noise_offset, v_target
from mmgt.errors import MmgtError
from mmgt.pipelines.pose_to_video import clip_pixels
from mmgt.training.common import process_rows


@torch.no_grad()
def encode_batch(
    batch: dict, vae: AutoencoderKL, image_encoder, generator: torch.Generator | None, share: tuple[int, int] = (0, 1)
) -> dict:
    """Frozen encoders: target latents (posterior sample), reference latent (posterior mode, as at inference), CLIP.

    ``share`` = (process index, number of processes): the posterior noise is drawn for the whole global batch and
    this process keeps its rows (:func:`mmgt.training.common.process_rows`), so a sample's latents do not depend on
    the number of processes.

    Returns:
        ``latents`` (B, C, F, h, w), ``ref_latents`` (B, C, h, w), ``clip_embeds`` (B, 1, D), ``pose_images``
        (B*F, 3, H, W), ``audio`` (B, F, 5, L, D) or None, ``branch_masks`` list of (B*F, 3, h, w) or None.
    """
    device, dtype, scale = vae.device, vae.dtype, vae.config.scaling_factor
    video = "frames" in batch
    pixels = batch["frames"] if video else batch["target"][:, :, None]  # (B, 3, F, H, W) in [-1, 1]
    poses = batch["poses"] if video else batch["pose"][:, :, None]  # (B, 3, F, H, W) in [0, 1]
    b, _, f, h, w = pixels.shape
    frames = pixels.permute(0, 2, 1, 3, 4).reshape(b * f, 3, h, w).to(device, dtype)  # (B*F, 3, H, W), b-major
    posterior = vae.encode(frames).latent_dist
    eps = torch.randn((b * f * share[1], *posterior.mean.shape[1:]), generator=generator, dtype=posterior.mean.dtype)
    eps = eps[process_rows(b * f, share[0])].to(device)  # = posterior.sample(generator) for one process
    latents = (posterior.mean + posterior.std * eps).float() * scale  # (B*F, C, h, w)
    reference = batch["reference"].to(device, dtype)  # (B, 3, H, W)
    clip_in = clip_pixels(reference, image_encoder.config.image_size).to(device, image_encoder.dtype)
    return {
        "latents": latents.reshape(b, f, *latents.shape[1:]).permute(0, 2, 1, 3, 4),  # (B, C, F, h, w)
        "ref_latents": vae.encode(reference).latent_dist.mode().float() * scale,
        "clip_embeds": image_encoder(clip_in).image_embeds[:, None].float(),  # (B, 1, D)
        "pose_images": poses.permute(0, 2, 1, 3, 4).reshape(b * f, 3, h, w).float(),
        "audio": batch["audio"].float() if video else None,
        "branch_masks": [m.flatten(0, 1).float() for m in batch["masks"]] if video else None,
    }


def stage2_loss(
    trainee: nn.Module,
    scheduler,
    inputs: dict,
    generator: torch.Generator,
    cfg: Stage2Train,
    device,
    share: tuple[int, int] = (0, 1),
) -> dict[str, torch.Tensor]:
    """Noise, condition dropout, the v-prediction MSE with min-SNR weights (spec §5.5); returns named scalars.

    ``share`` = (process index, number of processes): every draw is made for the whole global batch and this process
    keeps its rows, as in :func:`encode_batch`.
    """
    obj = cfg.objective
    latents = inputs["latents"].to(device)
    b, rows, world = latents.shape[0], process_rows(latents.shape[0], share[0]), share[1]
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (b * world,), generator=generator)[rows]
    noise = torch.randn((b * world, *latents.shape[1:]), generator=generator)[rows].to(device)
    whole = latents[:1].expand(b * world, *latents.shape[1:])  # the global batch's shape (no copy)
    noise = noise + noise_offset(whole, generator, obj.noise_offset)[rows]  # one extra value per (sample, channel)
    keep_image = (torch.rand(b * world, generator=generator)[rows] >= obj.image_drop_prob).to(device)
    keep_audio = (torch.rand(b * world, generator=generator)[rows] >= obj.audio_drop_prob).to(device)
    timesteps = timesteps.to(device)
    noisy = scheduler.add_noise(latents, noise, timesteps)  # x_t = sqrt(ab) x0 + sqrt(1 - ab) eps
    cond = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in inputs.items()}
    masks = None if cond["branch_masks"] is None else [m.to(device) for m in cond["branch_masks"]]
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
        obj.branch_weights,
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
