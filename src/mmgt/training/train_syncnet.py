"""``mmgt train syncnet``: the lip-sync expert (:class:`mmgt.models.lipsync.LipSyncExpert`) on a dataset's clips.

Binary cross-entropy on 5-frame mouth windows against audio in sync (half of each batch) or shifted by
``data.min_shift``..``data.max_shift`` frames or from another clip (:func:`~mmgt.training.lipsync_data.training_batch`;
every batch is drawn from (seed, step, process), so a resumed run repeats an uninterrupted one exactly). Validation
logs the acceptance measures (:func:`~mmgt.training.lipsync_data.sync_accuracy`) of the validation split's clips;
the export ``<run>/final`` is a ``save_pretrained`` folder (config.json + safetensors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed
from diffusers import AutoencoderKL
from torch.nn import functional as F
from tqdm.auto import tqdm

from mmgt.config import SyncNetTrain
from mmgt.models.lipsync import LipSyncExpert
from mmgt.training import preflight
from mmgt.training.common import (
    CSVLog,
    checkpoint_size,
    load_folder,
    log_losses,
    optimizer_step,
    prepare_optimisation,
    save_checkpoint,
    seed_step,
    setup_accelerator,
    start_run,
    validate_or_warn,
)
from mmgt.training.lipsync_data import SyncClips, sync_accuracy, training_batch
from mmgt.utils.files import atomic_folder


def sync_losses(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Binary cross-entropy of (B,) sync logits against (B,) labels, and the batch accuracy (logit > 0)."""
    return {
        "loss": F.binary_cross_entropy_with_logits(logits.float(), labels),
        "acc": ((logits.detach() > 0).float() == labels).float().mean(),
    }


def main(cfg: SyncNetTrain, resume: bool = False) -> Path:
    """Train the expert; returns ``<run>/final`` (a :class:`LipSyncExpert` folder)."""
    # 1. Check everything the run needs (values, data, output) before anything is written.
    plan = preflight.check_syncnet(cfg, resume)
    accelerator = setup_accelerator(plan.run_dir, cfg.mixed_precision)
    rank = accelerator.process_index

    # 2. Model (preset + overrides), data (its crop size), optimiser, LR schedule.
    set_seed(cfg.seed)
    expert = LipSyncExpert.from_preset(cfg.model.preset, **cfg.model.overrides)
    crop_size = expert.config.crop_size
    vae = None  # the stage-2 model's VAE, frozen: the expert also learns the mouths of its reconstructions
    if cfg.data.vae is not None:
        vae = load_folder(AutoencoderKL, cfg.data.vae, "data.vae").to(accelerator.device).eval().requires_grad_(False)
    train = SyncClips(cfg.data.root, "train", crop_size=crop_size, jitter=cfg.data.jitter, vae=vae)
    val = SyncClips(cfg.data.root, cfg.validation.split, crop_size=crop_size, vae=vae) if plan.validate else None
    expert, optimizer, lr_scheduler = prepare_optimisation(accelerator, expert, cfg.optim)

    # 3. Start: disk space, run folder and config, resume (model, optimiser, LR schedule).
    start_step, log, val_log = start_run(accelerator, cfg, "syncnet", resume, checkpoint_size(expert))
    run_dir, main_process = plan.run_dir, accelerator.is_main_process

    # 4. Loop.
    expert.train()
    bar = tqdm(
        range(start_step, cfg.max_steps),
        initial=start_step,
        total=cfg.max_steps,
        disable=not main_process,
        desc="syncnet",
    )
    for step in bar:
        seed_step(cfg.seed, step, rank)
        batch = training_batch(train, np.random.default_rng([cfg.seed, step, rank]), cfg.batch_size, cfg.data)
        with accelerator.autocast():
            logits = expert(batch["crops"].to(accelerator.device), batch["audio"].to(accelerator.device))
        losses = sync_losses(logits, batch["labels"].to(accelerator.device))
        optimizer_step(accelerator, losses["loss"], expert.parameters(), optimizer, lr_scheduler, cfg.optim.grad_clip)

        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.max_steps:
            log_losses(accelerator, log, bar, done, losses, lr_scheduler)
        if done % cfg.checkpoint_every == 0 or done == cfg.max_steps:
            unwrapped = accelerator.unwrap_model(expert)
            save_checkpoint(accelerator, run_dir, done, {"expert": unwrapped}, cfg.checkpoints_total_limit)
        periodic = plan.validate and cfg.validation.every and done % cfg.validation.every == 0
        if main_process and periodic and done < cfg.max_steps:  # the last step is validated after the export
            _validate(accelerator.unwrap_model(expert), val, done, val_log)

    # 5. Export, THEN the final validation: a validation failure is a warning and cannot lose the export.
    final = run_dir / "final"
    if main_process:
        model = accelerator.unwrap_model(expert)
        with atomic_folder(final) as tmp:
            model.save_pretrained(tmp)
        print(f"syncnet: exported to {final}")
        if plan.validate:
            _validate(model, val, cfg.max_steps, val_log)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def _validate(expert: LipSyncExpert, clips: SyncClips, step: int, log: CSVLog | None) -> None:
    """The acceptance measures on the validation clips, printed and logged; a failure is one warning."""

    def run() -> None:
        row = {}
        for decoded in (False, True) if clips.vae is not None else (False,):
            metrics, name = sync_accuracy(expert, clips, decoded), "VAE frames" if decoded else "frames"
            print(
                f"syncnet step {step}: val {name}: sync accuracy {metrics['acc']:.3f} (in sync "
                f"{metrics['pos_acc']:.3f}, shifted 5-15 frames {metrics['neg_acc']:.3f}), offset 0+-1 in "
                f"{metrics['offset_acc']:.2f} of {len(clips)} clips, Sync-D {metrics['sync_d']:.3f}, Sync-C "
                f"{metrics['sync_c']:.3f}"
            )
            row |= {f"val_{'vae_' if decoded else ''}{k}": v for k, v in metrics.items()}
        if log is not None:
            log.log(step, row)

    validate_or_warn("syncnet", step, run)
