"""``mmgt train vae``: the tiny preset's 8x AutoencoderKL, trained from scratch on dataset frames.

SD-1.5's VAE (sd-vae-ft-mse) is a download; the tiny stage-2 preset needs its own. Loss = L1 + MSE + a weak KL
(``VaeTrain`` documents the weights); ``region_weight`` makes the face and hand boxes weigh more, because at 128 px
an unweighted loss spends the latent on the background and body and renders the face as a blob without eyes or
mouth (docs/ablations.md: the measurement). Validation logs the PSNR of the whole frame and of those boxes.

Before the final export the latent scaling factor (1 / std of the latents over training frames, the rule behind SD's
0.18215) is written into ``vae.config.scaling_factor``, so stage 2 reads it from the folder instead of a constant
(STYLE §4.11).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed
from diffusers import AutoencoderKL
from torch import nn
from tqdm.auto import tqdm

from mmgt.config import VaeTrain
from mmgt.data.manifest import read_manifest
from mmgt.data.stage2_dataset import ClipStore, crop_resize, random_crop_box
from mmgt.errors import MmgtError
from mmgt.evaluation.image_quality import masked_psnr, psnr
from mmgt.models.stage2_presets import preset
from mmgt.pose.masks import face_hand_regions
from mmgt.training import preflight
from mmgt.training.common import (
    CSVLog,
    checkpoint_size,
    log_losses,
    optimizer_step,
    prepare_optimisation,
    save_checkpoint,
    seed_step,
    setup_accelerator,
    start_run,
    step_generator,
    validate_or_warn,
)
from mmgt.utils.files import atomic_folder

SCALE_STREAM = 1  # step_generator stream of the scaling-factor estimate (stream 0 is the training steps')


class FrameSource:
    """Frames of one dataset split, decoded per clip on demand (the stage-2 datasets' byte-bounded clip cache)."""

    def __init__(self, root: str | Path, split: str):
        self.root, self.records = Path(root), read_manifest(root, split)
        if not self.records:
            raise MmgtError(f"{self.root}: no clips in split {split!r}")
        self.store = ClipStore(self.root, self.records)

    def frame(self, clip: int, index: int) -> np.ndarray:
        """(H, W, 3) uint8 frame ``index`` of clip ``clip`` (clamped to the decoded length)."""
        frames = self.store.frames(clip)
        return frames[min(index, len(frames) - 1)]

    def regions(self, clip: int, index: int) -> np.ndarray:
        """(H, W) uint8 in {0, 255}: the face and hand boxes of frame ``index`` (``face_hand_regions``)."""
        frames = self.store.frames(clip)
        pose = self.store.pose(clip)
        index = min(index, len(frames) - 1, pose.num_frames - 1)
        return face_hand_regions(pose[index : index + 1], frames.shape[2], frames.shape[1])[0].astype(np.uint8) * 255

    def random_crops(
        self, rng: np.random.Generator, count: int, size: int, crop_scale, hflip: bool, regions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Random frames, square random crops, optional flips.

        Returns:
            pixels (count, 3, size, size) float32 in [-1, 1]; with ``regions`` also (count, 1, size, size) float32
            in [0, 1], the face and hand boxes cropped and flipped with the pixels (else None).
        """
        images, masks = [], []
        for _ in range(count):
            clip = int(rng.integers(len(self.records)))
            index = int(rng.integers(self.records[clip].num_frames))
            frame = self.frame(clip, index)  # (H, W, 3)
            if regions:
                frame = np.concatenate([frame, self.regions(clip, index)[..., None]], axis=-1)  # (H, W, 4)
            box = random_crop_box(rng, *frame.shape[:2], scale=crop_scale, ratio=(1.0, 1.0))
            image = crop_resize(frame[None], box, size)[0]
            if hflip and rng.random() < 0.5:
                image = image[:, ::-1]
            images.append(image[..., :3])
            masks.append(image[..., 3:])
        if not regions:
            return to_pixels(np.stack(images)), None
        return to_pixels(np.stack(images)), torch.from_numpy(np.stack(masks)).permute(0, 3, 1, 2).float() / 255.0

    def _spread(self, count: int) -> list[tuple[int, int]]:
        """``count`` (clip, frame) pairs spread evenly over the split (deterministic)."""
        index = [(c, k) for c, rec in enumerate(self.records) for k in range(rec.num_frames)]
        return [index[i] for i in np.linspace(0, len(index) - 1, min(count, len(index))).round().astype(int)]

    def spread_frames(self, count: int, size: int) -> np.ndarray:
        """(count, size, size, 3) uint8: whole frames resized, spread evenly over the split (deterministic)."""
        frames = [self.frame(*pick) for pick in self._spread(count)]
        return np.stack([crop_resize(f[None], (0, 0, *f.shape[:2]), size)[0] for f in frames])

    def spread_regions(self, count: int, size: int) -> np.ndarray:
        """(count, size, size) bool: the face and hand boxes of :meth:`spread_frames`'s frames, resized alike."""
        masks = [self.regions(*pick)[..., None] for pick in self._spread(count)]
        return np.stack([crop_resize(m[None], (0, 0, *m.shape[:2]), size)[0, ..., 0] for m in masks]) >= 128


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8 (clamped, rounded)."""
    return ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


class VaeObjective(nn.Module):
    """Wraps the VAE so one ``forward`` (the call accelerate/DDP sees) returns the reconstruction and the KL."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, pixels: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) in [-1, 1] -> (reconstruction (B, 3, H, W), KL per latent element (B,))."""
        posterior = self.vae.encode(pixels).latent_dist
        latents = posterior.sample(generator=generator)  # (B, C, H/8, W/8)
        kl = posterior.kl() / latents[0].numel()  # KL(q(z|x) || N(0, I)), summed by diffusers -> per element
        return self.vae.decode(latents).sample, kl


def vae_losses(
    reconstruction: torch.Tensor,
    pixels: torch.Tensor,
    kl: torch.Tensor,
    l1: float,
    mse: float,
    kl_weight: float,
    regions: torch.Tensor | None = None,
    region_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Named loss terms and their weighted sum ``loss`` (all scalars).

    Args:
        reconstruction, pixels: (B, 3, H, W) in [-1, 1].
        kl: (B,) KL per latent element.
        regions: (B, 1, H, W) in [0, 1], the face and hand boxes; a pixel's L1 and MSE weigh
            ``1 + region_weight * regions``, normalised to mean 1 over the batch (so the loss scale stays that of the
            unweighted loss and only the share of the boxes grows). None or ``region_weight`` 0: every pixel weighs 1.
    """
    error = reconstruction.float() - pixels  # (B, 3, H, W)
    if regions is None or region_weight == 0:
        weight = torch.ones_like(error[:, :1])
    else:
        weight = 1.0 + region_weight * regions.to(error)
        weight = weight / weight.mean()
    terms = {
        "l1": (weight * error.abs()).mean(),
        "mse": (weight * error**2).mean(),
        "kl": kl.float().mean(),
    }
    terms["loss"] = l1 * terms["l1"] + mse * terms["mse"] + kl_weight * terms["kl"]
    return terms


@torch.no_grad()
def reconstructions(vae: AutoencoderKL, frames: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """(N, H, W, 3) uint8 ``vae`` reconstructions (posterior mode) of (N, H, W, 3) uint8 frames."""
    p = next(vae.parameters())
    out = []
    for start in range(0, len(frames), batch_size):
        pixels = to_pixels(frames[start : start + batch_size]).to(p.device, p.dtype)
        out.append(to_uint8(vae.decode(vae.encode(pixels).latent_dist.mode()).sample))
    return np.concatenate(out)


@torch.no_grad()
def latent_scaling_factor(vae: AutoencoderKL, pixels: torch.Tensor, generator: torch.Generator | None) -> float:
    """1 / std of posterior samples of (N, 3, H, W) frames: scaled latents then have unit variance (SD's rule)."""
    p = next(vae.parameters())
    latents = vae.encode(pixels.to(p.device, p.dtype)).latent_dist.sample(generator=generator)
    return float(1.0 / latents.float().std())


def main(cfg: VaeTrain, resume: bool = False) -> Path:
    """Train the VAE; returns ``<run>/final`` (an AutoencoderKL folder with the measured ``scaling_factor``)."""
    # 1. Check everything the run needs (values, data, output) before anything is written.
    plan = preflight.check_vae(cfg, resume)
    accelerator = setup_accelerator(plan.run_dir, cfg.mixed_precision)
    rank = accelerator.process_index

    # 2. Data: random crops of training frames; fixed val frames for PSNR (none when the val split is empty).
    train = FrameSource(cfg.data.root, "train")
    val_frames = val_regions = None
    if plan.validate:
        val = FrameSource(cfg.data.root, cfg.validation.split)
        val_frames = val.spread_frames(cfg.validation.num_frames, cfg.data.size)  # (N, S, S, 3) uint8
        val_regions = val.spread_regions(cfg.validation.num_frames, cfg.data.size)  # (N, S, S) bool

    # 3. Model (the preset's VAE section + overrides), optimiser, LR schedule.
    set_seed(cfg.seed)
    vae = AutoencoderKL(**{**preset(cfg.model.preset)["vae"], **cfg.model.overrides})
    model = VaeObjective(vae)
    model, optimizer, lr_scheduler = prepare_optimisation(accelerator, model, cfg.optim)

    # 4. Start: disk space, run folder and config, resume (model, optimiser, LR schedule).
    start_step, log, val_log = start_run(accelerator, cfg, "vae", resume, checkpoint_size(model))
    run_dir, main_process = plan.run_dir, accelerator.is_main_process

    # 5. Loop.
    model.train()
    bar = tqdm(
        range(start_step, cfg.max_steps), initial=start_step, total=cfg.max_steps, disable=not main_process, desc="vae"
    )
    for step in bar:
        seed_step(cfg.seed, step, rank)
        gen = step_generator(cfg.seed, step, rank)
        rng = np.random.default_rng([cfg.seed, step, rank])
        pixels, regions = train.random_crops(
            rng, cfg.batch_size, cfg.data.size, tuple(cfg.data.crop_scale), cfg.data.hflip, cfg.region_weight > 0
        )
        pixels = pixels.to(accelerator.device)  # (B, 3, S, S) in [-1, 1]
        with accelerator.autocast():
            reconstruction, kl = model(pixels, gen)
        losses = vae_losses(
            reconstruction, pixels, kl, cfg.l1_weight, cfg.mse_weight, cfg.kl_weight, regions, cfg.region_weight
        )
        optimizer_step(accelerator, losses["loss"], model.parameters(), optimizer, lr_scheduler, cfg.optim.grad_clip)

        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.max_steps:
            log_losses(accelerator, log, bar, done, losses, lr_scheduler)
        if done % cfg.checkpoint_every == 0 or done == cfg.max_steps:
            save_checkpoint(accelerator, run_dir, done, {"vae": _vae(accelerator, model)}, cfg.checkpoints_total_limit)
        periodic = plan.validate and cfg.validation.every and done % cfg.validation.every == 0
        if main_process and periodic and done < cfg.max_steps:  # the last step is validated after the export
            _validate(_vae(accelerator, model), val_frames, val_regions, done, val_log)

    # 6. Latent scale from training frames, export, THEN the final PSNR: a validation failure is a warning and cannot
    # lose the export.
    final = run_dir / "final"
    if main_process:
        vae = _vae(accelerator, model).eval()
        sample_rng = np.random.default_rng([cfg.seed, cfg.max_steps, SCALE_STREAM])
        frames, _ = train.random_crops(sample_rng, cfg.scaling_frames, cfg.data.size, (1.0, 1.0), hflip=False)
        scale = latent_scaling_factor(vae, frames, step_generator(cfg.seed, cfg.max_steps, 0, SCALE_STREAM))
        vae.register_to_config(scaling_factor=scale)
        with atomic_folder(final) as tmp:
            vae.save_pretrained(tmp)
        print(f"vae: scaling_factor {scale:.5f}; exported to {final}")
        if plan.validate:
            _validate(vae, val_frames, val_regions, cfg.max_steps, val_log)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def _vae(accelerator, model: nn.Module) -> AutoencoderKL:
    return accelerator.unwrap_model(model).vae


def _validate(vae: AutoencoderKL, frames: np.ndarray, regions: np.ndarray, step: int, log: CSVLog | None) -> None:
    """Reconstruction PSNR of the val frames and of their (N, S, S) face and hand boxes, logged; a failure is one
    warning, never the end of the run."""

    def run() -> None:
        was_training = vae.training
        out = reconstructions(vae.eval(), frames)
        vae.train(was_training)
        value, region = psnr(out, frames), masked_psnr(out, frames, regions)
        print(f"vae step {step}: val PSNR {value:.2f} dB, face+hands {region:.2f} dB over {len(frames)} frames")
        if log is not None:
            log.log(step, {"val_psnr": value, "val_region_psnr": region})

    validate_or_warn("vae", step, run)
