"""``mmgt train ...``: training entry points (accelerate: run under ``accelerate launch`` for several processes)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgt.cli._common import add_group

_CHECKED = (
    "Everything the run needs (values, dataset, model folders, output folder, disk space) is checked before the first "
    "step; a validation split without clips skips validation with one warning. The final model is exported before "
    "the final validation."
)


def register(subparsers) -> None:
    commands = add_group(
        subparsers,
        "train",
        "Train the models (stage 1 SMGA, the FGD pose autoencoder, the stage-2 VAE and steps, the lip-sync expert).",
    )

    p = commands.add_parser(
        "stage1",
        help="Train the stage-1 SMGA audio-to-pose diffusion model.",
        description="Train SMGA on a dataset folder. Settings: dataclass defaults <- --config YAML <- key=value "
        "overrides (e.g. max_steps=2000 data.root=synth-data model.preset=tiny). Several CPU processes: "
        "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N -m mmgt train stage1 ... " + _CHECKED,
    )
    p.add_argument("--config", type=Path, default=None, help="YAML file with values that differ from the defaults")
    p.add_argument(
        "--resume", action="store_true", help="continue the run <output_root>/stage1/<name> from its latest checkpoint"
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides, applied after the YAML file")
    p.set_defaults(func=_stage1)

    p = commands.add_parser(
        "pose-ae",
        help="Train the pose autoencoder whose features define FGD.",
        description="Train the small pose autoencoder (mmgt.evaluation.PoseAutoencoder) on the training split of a "
        "dataset; FGD is the Fréchet distance between its features of real and generated poses.",
    )
    p.add_argument("dataset", type=Path, help="dataset folder (mmgt format)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (config.json + safetensors)")
    p.add_argument("--steps", type=int, default=2000, help="optimisation steps (default 2000)")
    p.add_argument("--batch-size", type=int, default=64, help="windows per batch (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=_pose_ae)

    p = commands.add_parser(
        "vae",
        help="Train the tiny stage-2 VAE (8x AutoencoderKL) on a dataset's frames.",
        description="Train the stage-2 preset's AutoencoderKL from scratch (L1 + MSE + weak KL) on random frames of "
        "the train split; the export <output_root>/vae/<name>/final holds the measured latent scaling_factor. "
        "Settings: VaeTrain defaults <- --config YAML <- key=value overrides (e.g. data.root=synth-data). " + _CHECKED,
    )
    _add_run_arguments(p, "vae")
    p.set_defaults(func=_vae)

    p = commands.add_parser(
        "stage2",
        help="Train a stage-2 step: image (UNet, ReferenceNet, pose guider) or video (motion + audio modules).",
        description="Stage II training (spec §5.5-5.6). --step image trains the 2D UNet, ReferenceNet and pose "
        "guider (tiny preset: needs vae=<mmgt train vae export>); --step video starts from init_from=<image-step "
        "final> and trains the motion modules, MM-HAA and the audio projection, exporting a PoseToVideoPipeline. "
        "Settings: Stage2Train defaults <- --config YAML <- key=value overrides. " + _CHECKED,
    )
    p.add_argument("--step", choices=("image", "video"), default=None, help="overrides the config's step")
    _add_run_arguments(p, "stage2")
    p.set_defaults(func=_stage2)

    p = commands.add_parser(
        "syncnet",
        help="Train the lip-sync expert (mouth crops of 5 frames against their audio) for the sync loss and Sync-C/D.",
        description="Train mmgt.models.lipsync.LipSyncExpert on the head-fixed mouth crops and log-mel audio of a "
        "dataset's train split: in-sync windows against audio shifted by data.min_shift..data.max_shift frames or "
        "from another clip. Validation logs the sync accuracy (in sync vs shifted by 5-15 frames) and the share of "
        "clips whose AV offset is found at 0 +- 1 frame. Settings: SyncNetTrain defaults <- --config YAML <- "
        "key=value overrides (e.g. data.root=synth-data). " + _CHECKED,
    )
    _add_run_arguments(p, "syncnet")
    p.set_defaults(func=_syncnet)


def _add_run_arguments(p: argparse.ArgumentParser, stage: str) -> None:
    p.add_argument("--config", type=Path, default=None, help="YAML file with values that differ from the defaults")
    p.add_argument(
        "--resume",
        action="store_true",
        help=f"continue the run <output_root>/{stage}/<name> from its latest checkpoint",
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides, applied after the YAML file")


def _stage1(args: argparse.Namespace) -> int:
    from mmgt.config import Stage1Train, load_config
    from mmgt.training.train_stage1 import main

    cfg = load_config(Stage1Train, args.config, args.overrides)
    final = main(cfg, resume=args.resume)
    print(f"final model: {final}")
    return 0


def _pose_ae(args: argparse.Namespace) -> int:
    from mmgt.training.train_pose_ae import main

    out = main(args.dataset, args.output, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    print(f"pose autoencoder: {out}")
    return 0


def _vae(args: argparse.Namespace) -> int:
    from mmgt.config import VaeTrain, load_config
    from mmgt.training.train_vae import main

    final = main(load_config(VaeTrain, args.config, args.overrides), resume=args.resume)
    print(f"vae: {final}")
    return 0


def _syncnet(args: argparse.Namespace) -> int:
    from mmgt.config import SyncNetTrain, load_config
    from mmgt.training.train_syncnet import main

    final = main(load_config(SyncNetTrain, args.config, args.overrides), resume=args.resume)
    print(f"syncnet: {final}")
    return 0


def _stage2(args: argparse.Namespace) -> int:
    from mmgt.config import Stage2Train, load_config
    from mmgt.training.train_stage2 import main

    cfg = load_config(Stage2Train, args.config, [*args.overrides, *([f"step={args.step}"] if args.step else [])])
    final = main(cfg, resume=args.resume)
    print(f"stage2 {cfg.step} step export: {final}")
    return 0
