"""``mmgt train stage2 --step image|video``: the two stage-II training steps (spec §5.5, §5.6) on accelerate.

Image step (II-a): the 2D denoising UNet, the ReferenceNet and the pose guider learn to redraw a target frame of the
reference person in the target pose. Video step (II-b): starting from the image step's export, only the AnimateDiff
motion modules, the MM-HAA audio adapter and the audio projection train, on F consecutive frames with audio.

Reads top to bottom like DiT's train.py. The pieces live next to it: the objective shared by both steps in
:mod:`~mmgt.training.stage2_objective`, the model assembly and freeze policy in
:mod:`~mmgt.training.stage2_components`, the validation clip in :mod:`~mmgt.training.validate_stage2`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from mmgt.audio.features import feature_spec
from mmgt.config import Stage2Train
from mmgt.data.stage2_dataset import Stage2ImageDataset, Stage2VideoDataset
from mmgt.diffusion.stage2 import make_stage2_scheduler
from mmgt.training import preflight
from mmgt.training.common import (
    CSVLog,
    batch_indices,
    checkpoint_size,
    collate,
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
from mmgt.training.stage2_components import (
    build_pipeline,
    build_trainee,
    checkpoint_exports,
    image_step_components,
    parameter_groups,
    placed,
    trainable_counts,
    video_audio_encoder,
    video_step_components,
)
from mmgt.training.stage2_objective import SyncTerm, encode_batch, stage2_loss
from mmgt.training.validate_stage2 import validate_stage2
from mmgt.utils.files import atomic_folder

logger = logging.getLogger(__name__)


def main(cfg: Stage2Train, resume: bool = False) -> Path:
    """Train one stage-II step; returns ``<run>/final`` (image: component folders; video: a PoseToVideoPipeline)."""
    # 1. Check everything the run needs (values, folders, data, output) before anything is written.
    plan = preflight.check_stage2(cfg, resume)
    accelerator = setup_accelerator(plan.run_dir, cfg.mixed_precision)
    rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device

    # 2. Audio recipe (video step): wav2vec2 from a local folder, or the mel fallback (L = 1, D = 81).
    encoder = video_audio_encoder(cfg)
    audio_spec = feature_spec(encoder, stage=2)

    # 3. Components and freeze policy; the frozen VAE and CLIP run in the mixed-precision dtype.
    set_seed(cfg.seed)  # fresh weights depend only on the seed
    parts = image_step_components(cfg) if cfg.step == "image" else video_step_components(cfg, audio_spec)
    trainee = build_trainee(cfg, parts)
    logger.info("trainable parameters: %s", trainable_counts(trainee))
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision, torch.float32)
    vae, image_encoder = (placed(parts[name], device, weight_dtype) for name in ("vae", "image_encoder"))
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
            cfg.data.mask_variant,
        )

    # Beyond the paper (video step, objective.sync_loss_weight > 0): the frozen lip-sync expert's term.
    sync = None
    if cfg.objective.sync_loss_weight > 0:
        sync = SyncTerm.load(cfg.objective.sync_expert, vae, cfg.data.root, train_set.records, cfg.data.size)

    # 5. Optimiser (trainable parameters only), constant LR after warm-up (spec §5.5).
    groups = parameter_groups(trainee, cfg.audio_lr)
    trainee, optimizer, lr_scheduler = prepare_optimisation(accelerator, trainee, cfg.optim, groups)

    # 6. Start: disk space, run folder and config, resume (model, optimiser, LR schedule).
    start_step, log, val_log = start_run(accelerator, cfg, "stage2", resume, checkpoint_size(trainee))
    run_dir, main_process = plan.run_dir, accelerator.is_main_process

    def validate(step: int, vae, image_encoder) -> None:  # main process only; a failure is a warning
        pipe = build_pipeline(accelerator.unwrap_model(trainee), vae, image_encoder, cfg, audio_spec, encoder)
        validate_or_warn(f"stage2 {cfg.step}", step, lambda: _validate(pipe, cfg, run_dir, step, val_log))

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
        gen = step_generator(cfg.seed, step)  # draws for the whole global batch, this process takes its rows
        train_set.set_epoch(step * cfg.batch_size * world // len(train_set))
        batch = collate(
            [train_set[i] for i in batch_indices(len(train_set), cfg.batch_size, step, cfg.seed, world, rank)]
        )
        inputs = encode_batch(batch, vae, image_encoder, gen, (rank, world)) | (
            sync.batch_inputs(batch) if sync else {}
        )
        with accelerator.autocast():
            losses = stage2_loss(trainee, scheduler, inputs, gen, cfg, device, share=(rank, world), sync=sync)
        optimizer_step(accelerator, losses["loss"], trainee.parameters(), optimizer, lr_scheduler, cfg.optim.grad_clip)

        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.max_steps:
            log_losses(accelerator, log, bar, done, losses, lr_scheduler)
        if done % cfg.checkpoint_every == 0 or done == cfg.max_steps:
            exports = checkpoint_exports(accelerator.unwrap_model(trainee), parts, cfg.step)
            save_checkpoint(accelerator, run_dir, done, exports, cfg.checkpoints_total_limit)
        if plan.validate and done % cfg.validation.every == 0 and done < cfg.max_steps:
            if main_process:
                validate(done, vae, image_encoder)
            accelerator.wait_for_everyone()

    # 8. Export (image step: component folders; video step: a PoseToVideoPipeline folder), THEN the final validation:
    # a validation failure is a warning and cannot lose the export.
    final = run_dir / "final"
    if main_process:
        model = accelerator.unwrap_model(trainee)
        vae32, clip32 = (placed(m, device, torch.float32) for m in (vae, image_encoder))
        with atomic_folder(final) as tmp:
            if cfg.step == "image":
                exports = checkpoint_exports(model, parts, "image") | {"vae": vae32, "image_encoder": clip32}
                for name, module in exports.items():
                    module.save_pretrained(tmp / name)
            else:
                build_pipeline(model, vae32, clip32, cfg, audio_spec, encoder).save_pretrained(tmp)
        if plan.validate:
            validate(cfg.max_steps, vae32, clip32)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def _validate(pipe, cfg: Stage2Train, run_dir: Path, step: int, log: CSVLog | None) -> None:
    """The first frames of the first clip of the validation split: PSNR/SSIM logged, a side-by-side video written."""
    metrics = validate_stage2(
        pipe,
        cfg.data.root,
        cfg.validation.split,
        run_dir / "validation" / f"step-{step:07d}.mp4",
        size=cfg.data.size,
        num_frames=cfg.validation.num_frames,
        with_audio=cfg.step == "video",
        num_inference_steps=cfg.validation.num_inference_steps,
        guidance_scale=cfg.validation.guidance_scale,
        branch_weights=cfg.validation.branch_weights,
        seed=cfg.seed,
    )
    print(f"stage2 {cfg.step} step {step}: val PSNR {metrics['val_psnr']:.2f} dB, SSIM {metrics['val_ssim']:.4f}")
    if log is not None:
        log.log(step, metrics)
