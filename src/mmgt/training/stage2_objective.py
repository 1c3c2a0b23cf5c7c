"""The stage-II objective shared by both training steps (spec §5.5, §5.6): frozen encoders, noise, condition dropout,
v-prediction on the zero-terminal-SNR schedule of :func:`mmgt.diffusion.stage2.make_stage2_scheduler`, min-SNR weights;
and, beyond the paper, the video step's optional lip-sync term (:class:`SyncTerm`, docs/stage2.md).

The model side (what runs between the noisy latents and the prediction) is
:class:`mmgt.training.stage2_components.Stage2Trainee`.
"""

from __future__ import annotations

import os

import torch
from diffusers import AutoencoderKL
from torch import nn
from torch.nn import functional as F

from mmgt.config import Stage2Train
from mmgt.data.manifest import ClipRecord
from mmgt.diffusion.stage2 import min_snr_weights, noise_offset, snr, v_target, x0_from_v
from mmgt.errors import MmgtError
from mmgt.models.lipsync import LipSyncExpert, crop_mouths
from mmgt.pipelines.pose_to_video import clip_pixels
from mmgt.training.common import load_folder, process_rows
from mmgt.training.lipsync_data import SyncClips


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
        (B*F, 3, H, W), ``audio`` (B, F, 5, L, D) or None, ``branch_masks`` list of (B*F, 3, h, w) or None,
        ``regions`` (B, F, H, W) face and hand boxes in [0, 1] or None (a batch without them).
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
        "regions": None if "regions" not in batch else batch["regions"].float(),  # image step: F = 1
    }


def stage2_loss(
    trainee: nn.Module,
    scheduler,
    inputs: dict,
    generator: torch.Generator,
    cfg: Stage2Train,
    device,
    *,
    share: tuple[int, int] = (0, 1),
    sync: SyncTerm | None = None,
) -> dict[str, torch.Tensor]:
    """Noise, condition dropout, the v-prediction MSE with min-SNR weights (spec §5.5); returns named scalars.

    ``share`` = (process index, number of processes): every draw is made for the whole global batch and this process
    keeps its rows, as in :func:`encode_batch`.

    With ``sync`` (video step, ``objective.sync_loss_weight`` > 0) and its ``sync_squares`` / ``sync_audio`` in
    ``inputs`` (:meth:`SyncTerm.batch_inputs`), the loss adds ``sync_loss_weight`` x the mean over samples of
    alpha_bar_t x the expert's loss on the decoded x0 prediction (0 for samples whose audio was dropped); ``sync``
    is that expert loss averaged over the samples that kept their audio.
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
    pixel_weights = latent_loss_weights(
        masks, cond.get("regions"), latents.shape, obj.lip_loss_weight, obj.region_loss_weight
    )  # (B, 1, F, h, w) or None
    if pixel_weights is not None:  # a weighted mean: the loss scale stays that of the plain MSE
        squared = squared * pixel_weights
        mse_for_loss = squared.sum(dim=(1, 2, 3, 4)) / (pixel_weights.sum(dim=(1, 2, 3, 4)) * latents.shape[1])
    else:
        mse_for_loss = mse
    weights = min_snr_weights(scheduler, timesteps, obj.snr_gamma).to(device)  # spec §5.5 min-SNR, gamma 5
    losses = {"loss": (weights * mse_for_loss).mean(), "mse": mse.mean().detach()}
    if sync is not None and obj.sync_loss_weight > 0:
        x0 = x0_from_v(scheduler, noisy, pred.float(), timesteps)  # (B, C, F, h, w): gradients reach the trainee
        per_sample = sync.loss(x0, cond["sync_squares"], cond["sync_audio"])  # (B,)
        signal = snr(scheduler, timesteps) / (1.0 + snr(scheduler, timesteps))  # alpha_bar_t: 0 at the terminal t
        keep = keep_audio.float()
        losses["loss"] = losses["loss"] + obj.sync_loss_weight * (signal.float().to(device) * keep * per_sample).mean()
        losses["sync"] = ((per_sample * keep).sum() / keep.sum().clamp(min=1)).detach()
    return losses


class SyncTerm:
    """The video step's lip-sync supervision: a frozen expert scores the mouths of the decoded x0 prediction.

    Args:
        expert: a trained :class:`LipSyncExpert` (frozen here: eval mode, no gradients to its weights).
        vae: the frozen VAE that decodes the predicted frames (gradients flow through it to the latents).
        clips: the training clips' mouth squares and audio features (:class:`SyncClips` over the dataset's records).
        size: the training frame side (the dataset resizes frames and poses to it).
    """

    def __init__(self, expert: LipSyncExpert, vae: AutoencoderKL, clips: SyncClips, size: int):
        self.expert = expert.eval().requires_grad_(False)
        self.vae, self.clips, self.size = vae, clips, size
        self.frames = expert.config.num_frames

    @classmethod
    def load(cls, folder: str | os.PathLike, vae: AutoencoderKL, root, records: list[ClipRecord], size: int):
        """The expert saved by ``mmgt train syncnet`` (``<run>/final``), on the VAE's device."""
        expert = load_folder(LipSyncExpert, folder, "objective.sync_expert").to(vae.device)
        return cls(expert, vae, SyncClips(root, records=records, crop_size=expert.config.crop_size), size)

    def batch_inputs(self, batch: dict) -> dict[str, torch.Tensor]:
        """``sync_squares`` (B, F, 7) and ``sync_audio`` (B, F, A) of a video-step batch (``clip_id``, ``start``)."""
        f = batch["frames"].shape[2]
        squares, audio = [], []
        for clip_id, start in zip(batch["clip_id"], batch["start"]):
            clip = self.clips.index[clip_id]
            squares.append(torch.from_numpy(self.clips.squares(clip, self.size, self.size)[start : start + f]))
            audio.append(self.clips.window_audio(clip, start, f))
        return {"sync_squares": torch.stack(squares), "sync_audio": torch.stack(audio)}

    def loss(self, x0: torch.Tensor, squares: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(B,) the expert's sync loss -log sigmoid(logit) over every 5-frame window of each sample.

        Args:
            x0: (B, C, F, h, w) predicted clean latents (VAE-scaled), F >= 5.
            squares: (B, F, 7) mouth squares in the pixels of the size² frames.
            audio: (B, F, A) the expert's audio features of the same frames.
        """
        b, _, f = x0.shape[:3]
        if f < self.frames:
            raise MmgtError(f"the sync loss needs windows of >= {self.frames} frames, got {f} (data.num_frames)")
        crop_size, out = self.expert.config.crop_size, []
        dtype = next(self.vae.parameters()).dtype
        for i in range(b):
            # Whole frames: the decoder's GroupNorm and mid-block attention see the whole latent, so a decoded window
            # around the mouth is not the frame's decode there (measured in docs/lipsync.md).
            latents = x0[i].transpose(0, 1).to(dtype) / self.vae.config.scaling_factor  # (F, C, h, w)
            pixels = self.vae.decode(latents).sample  # (F, 3, H, W), gradients flow to x0
            crops = crop_mouths(pixels, squares[i], crop_size)  # (F, 3, S, S)
            starts = range(f - self.frames + 1)
            windows = torch.stack([crops[t : t + self.frames].transpose(0, 1) for t in starts])  # (W, 3, 5, S, S)
            sounds = torch.stack([audio[i, t : t + self.frames] for t in starts]).to(windows.device)  # (W, 5, A)
            out.append(F.softplus(-self.expert(windows, sounds.float())).mean())  # BCE against "in sync"
        return torch.stack(out)


def latent_loss_weights(
    masks: list[torch.Tensor] | None,
    regions: torch.Tensor | None,
    shape: torch.Size,
    lip_weight: float,
    region_weight: float,
) -> torch.Tensor | None:
    """Per-latent-pixel loss weights 1 + ``lip_weight`` * lip mask + ``region_weight`` * face/hand area share.

    Args:
        masks, regions, shape: as :func:`lip_loss_weights` and :func:`region_loss_weights`.

    Returns:
        (B, 1, F, h, w) weights >= 1, or None when neither term applies (the plain spec MSE).
    """
    lips = lip_loss_weights(masks, shape, lip_weight)
    boxes = region_loss_weights(regions, shape, region_weight)
    if lips is None or boxes is None:
        return boxes if lips is None else lips
    return lips + boxes - 1.0


def region_loss_weights(regions: torch.Tensor | None, shape: torch.Size, weight: float) -> torch.Tensor | None:
    """Per-latent-pixel loss weights 1 + ``weight`` * the share of the pixel's area inside the face and hand boxes.

    Args:
        regions: (B, F, H, W) pixel-size boxes in [0, 1] (the datasets' ``regions``), or None.
        shape: the latents' shape (B, C, F, h, w); H and W are multiples of h and w (the VAE's factor).

    Returns:
        (B, 1, F, h, w) weights >= 1, or None (no regions, or weight 0).
    """
    if regions is None or weight == 0:
        return None
    b, _, f, h, w = shape
    if regions.shape[:2] != (b, f) or regions.shape[-2] % h or regions.shape[-1] % w:
        raise MmgtError(f"regions {tuple(regions.shape)} do not fit latents {tuple(shape)}")
    share = F.adaptive_avg_pool2d(regions.flatten(0, 1).float()[:, None], (h, w))  # (B*F, 1, h, w) area shares
    return 1.0 + weight * share.reshape(b, f, h, w)[:, None]


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
