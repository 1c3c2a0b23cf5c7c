"""``mmgt train stage1``: SMGA training (spec §3.5) on accelerate. Reads top to bottom like DiT's train.py."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from accelerate.utils import set_seed
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from mmgt.audio.encoders import SpeechEncoder
from mmgt.audio.features import feature_spec
from mmgt.config import Stage1Train
from mmgt.data.stage1_dataset import Stage1Dataset
from mmgt.diffusion.stage1 import make_stage1_scheduler, smga_loss
from mmgt.models.gesture_denoiser import GestureDenoiser
from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
from mmgt.pipelines.sampling_defaults import pose_sampling
from mmgt.training import preflight
from mmgt.training.common import (
    batch_indices,
    checkpoint_size,
    collate,
    log_losses,
    optimizer_step,
    prepare_optimisation,
    process_rows,
    save_checkpoint,
    seed_step,
    setup_accelerator,
    start_run,
    step_generator,
    validate_or_warn,
)
from mmgt.training.validate_stage1 import validate_stage1
from mmgt.utils.files import atomic_folder

logger = logging.getLogger(__name__)


def build_pipeline(model: GestureDenoiser, scheduler, cfg: Stage1Train, encoder) -> AudioToPosePipeline:
    pipe = AudioToPosePipeline(
        model,
        scheduler,
        feature_spec(encoder),
        cfg.data.normalize_scores,
        cfg.data.target_offset,
        **pose_sampling(cfg.model.preset).to_dict(),
    )
    pipe.set_audio_encoder(encoder)
    return pipe


def main(cfg: Stage1Train, resume: bool = False) -> Path:
    """Train SMGA; returns the folder of the final exported pipeline (``<run>/final``)."""
    # 1. Check everything the run needs (values, folders, data, output) before anything is written.
    plan = preflight.check_stage1(cfg, resume)
    accelerator = setup_accelerator(plan.run_dir, cfg.mixed_precision)
    rank, world = accelerator.process_index, accelerator.num_processes

    # 2. Data: windows with per-window audio features (cached on disk, computed once).
    encoder = SpeechEncoder.for_stage(cfg.data.encoder, 1) if cfg.data.encoder else None
    cache_dir = cfg.data.cache_dir or str(Path(cfg.data.root) / "features")
    data_kw = dict(
        window_frames=cfg.data.window_frames,
        stride_frames=cfg.data.stride_frames,
        encoder=encoder,
        cache_dir=cache_dir,
        target_offset=cfg.data.target_offset,
        normalize_scores=cfg.data.normalize_scores,
    )
    with accelerator.main_process_first():  # the main process fills the feature cache, the others read it
        train_set = Stage1Dataset(cfg.data.root, "train", **data_kw)
        train_set.precompute(progress=accelerator.is_main_process)
    audio_dim = train_set[0]["audio"].shape[-1]

    # 3. Model (preset + overrides; the audio width comes from the data), EMA, scheduler, optimiser.
    set_seed(cfg.seed)  # the initial weights depend only on the seed
    model = GestureDenoiser.from_preset(
        cfg.model.preset, audio_dim=audio_dim, window_frames=cfg.data.window_frames, **cfg.model.overrides
    )
    ema = EMAModel(model.parameters(), decay=cfg.ema_decay, model_cls=GestureDenoiser, model_config=model.config)
    scheduler = make_stage1_scheduler()
    model, optimizer, lr_scheduler = prepare_optimisation(accelerator, model, cfg.optim)
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema)
    alphas_cumprod = scheduler.alphas_cumprod.to(accelerator.device)

    # 4. Start: disk space, run folder and config, resume (model, optimiser, LR schedule and EMA).
    start_step, log, val_log = start_run(accelerator, cfg, "stage1", resume, checkpoint_size(model, extra_copies=1))
    run_dir = plan.run_dir

    # 5. Loop.
    model.train()
    bar = tqdm(
        range(start_step, cfg.max_steps),
        initial=start_step,
        total=cfg.max_steps,
        disable=not accelerator.is_main_process,
        desc="stage1",
    )
    for step in bar:
        seed_step(cfg.seed, step, rank)
        gen = step_generator(cfg.seed, step)  # draws for the whole global batch, this process takes its rows
        batch = collate(
            [train_set[i] for i in batch_indices(len(train_set), cfg.batch_size, step, cfg.seed, world, rank)]
        )
        x0 = batch["motion"].to(accelerator.device)  # (B, W, K, 3)
        cond, audio = batch["cond_pose"].to(x0), batch["audio"].to(x0)  # (B, K, 3), (B, W, D)
        b, rows = x0.shape[0], process_rows(x0.shape[0], rank)
        # Forward diffusion: x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps (spec §3.1 [decision]); t ~ U{0..T-1}.
        t = torch.randint(0, scheduler.config.num_train_timesteps, (b * world,), generator=gen)[rows].to(x0.device)
        eps = torch.randn((b * world, *x0.shape[1:]), generator=gen)[rows].to(x0)
        a = alphas_cumprod[t].view(b, 1, 1, 1).to(x0)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        drop = torch.rand(b * world, generator=gen)[rows] < accelerator.unwrap_model(model).config.cond_drop_prob
        with accelerator.autocast():
            pred = model(x_t, t, cond, audio, drop_audio=drop.to(x0.device))  # x0 prediction (B, W, K, 3)
        losses = smga_loss(pred.float(), x0, accelerator.unwrap_model(model).config.face_indices, cfg.face_weight)
        optimizer_step(accelerator, losses["loss"], model.parameters(), optimizer, lr_scheduler, cfg.optim.grad_clip)
        ema.step(model.parameters())

        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.max_steps:
            log_losses(accelerator, log, bar, done, losses, lr_scheduler)
        if done % cfg.checkpoint_every == 0 or done == cfg.max_steps:
            save_checkpoint(accelerator, run_dir, done, {"denoiser": model}, cfg.checkpoints_total_limit)
        if plan.validate and done % cfg.validation.every == 0 and done < cfg.max_steps:
            if accelerator.is_main_process:
                _validate(accelerator, model, ema, scheduler, cfg, encoder, run_dir, done, val_log)
            accelerator.wait_for_everyone()

    # 6. Export the EMA weights as a self-describing pipeline folder, THEN the final validation: a validation failure
    # is a warning and cannot lose the export.
    final = run_dir / "final"
    if accelerator.is_main_process:
        with atomic_folder(final) as tmp:
            build_pipeline(_ema_copy(accelerator, model, ema), scheduler, cfg, encoder).save_pretrained(tmp)
        if plan.validate:
            _validate(accelerator, model, ema, scheduler, cfg, encoder, run_dir, cfg.max_steps, val_log)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def _ema_copy(accelerator, model, ema: EMAModel) -> GestureDenoiser:
    """A fresh model holding the EMA weights (the training model keeps its own)."""
    unwrapped = accelerator.unwrap_model(model)
    copy = GestureDenoiser.from_config(unwrapped.config).to(accelerator.device)
    ema.copy_to(copy.parameters())
    return copy.eval()


def _validate(accelerator, model, ema, scheduler, cfg: Stage1Train, encoder, run_dir: Path, step: int, log) -> None:
    """Validate the EMA weights on the val split (main process); a failure is one warning, never the end of the run."""

    def run() -> None:
        pipe = build_pipeline(_ema_copy(accelerator, model, ema), scheduler, cfg, encoder)
        metrics = validate_stage1(
            pipe,
            cfg.data.root,
            run_dir / "validation" / f"step-{step:07d}",
            num_clips=cfg.validation.num_clips,
            num_inference_steps=cfg.validation.num_inference_steps,
            guidance_scale=cfg.validation.guidance_scale,
            pose_autoencoder=cfg.validation.pose_autoencoder,
            seed=cfg.seed,
        )
        if log is not None:
            log.log(step, metrics)

    validate_or_warn("stage1", step, run)
