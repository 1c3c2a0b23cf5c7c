"""``mmgt weights check``: is a local weights folder complete and consistent? (Nothing is downloaded.)"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from mmgt.cli._common import (
    add_group,
    add_pose_sampling_arguments,
    add_video_sampling_arguments,
    pose_sampling,
    video_sampling,
)


def register(subparsers) -> None:
    from mmgt.weights import MODEL_PARTS  # light: the heavy libraries load only when a check runs

    commands = add_group(subparsers, "weights", "Check local weight folders (mmgt never downloads weights).")
    p = commands.add_parser(
        "check",
        help="Check a base-weights folder (full-size sd15 stage 2) or a trained MMGT model folder.",
        description="Check that every part of DIR is present (config and weights files, not empty, not truncated) "
        "and that sizes read from the configs fit together (e.g. UNet cross_attention_dim == CLIP projection_dim). "
        "No weights are loaded. DIR is a trained model folder if it holds mmgt.json, stage1/ or stage2/, else a "
        "base-weights folder. Exit status 0 when every required part is ok, 1 otherwise. Assembling a base folder "
        "from public weights: docs/weights.md.",
        epilog=f"base-weights folder (initialises `mmgt train stage2` with preset sd15):\n  DIR/\n{_base_layout()}\n\n"
        "trained model folder (what `mmgt generate --model DIR` loads):\n  DIR/\n"
        + "".join(f"    {name}{'' if name.endswith('.json') else '/'}\n" for name in MODEL_PARTS)
        + "  encoders/stageN/ is needed when stage N was trained on a speech encoder rather than log-mel features.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", type=Path, metavar="DIR", help="the folder to check")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of the table")
    p.add_argument(
        "--preset",
        default="sd15",
        help="base folders: the stage-2 preset whose audio recipe wav2vec2 must fit (default sd15: 12 layers x 768)",
    )
    p.set_defaults(func=_check)

    p = commands.add_parser(
        "assemble",
        help="Combine a trained stage-1 and stage-2 pipeline into one model folder for `mmgt generate`.",
        description="Write a model folder (mmgt.json, stage1/, stage2/, encoders/ when the stages read speech-encoder "
        "features) from the exports of `mmgt train stage1` and `mmgt train stage2 --step video`. The folder is "
        "built beside OUT and renamed into place.",
    )
    p.add_argument("--stage1", type=Path, required=True, help="stage-1 export (runs/stage1/NAME/final)")
    p.add_argument("--stage2", type=Path, required=True, help="stage-2 video-step export (runs/stage2/NAME/final)")
    p.add_argument("--stage1-encoder", type=Path, default=None, help="WavLM folder, if stage 1 reads WavLM features")
    p.add_argument(
        "--stage2-encoder", type=Path, default=None, help="wav2vec2 folder, if stage 2 reads wav2vec2 features"
    )
    p.add_argument("--size", type=int, required=True, help="output size the model generates at (e.g. 128, 512)")
    add_video_sampling_arguments(p, windows=False)
    add_pose_sampling_arguments(p, prefix="pose-")
    p.add_argument("-o", "--output", type=Path, required=True, help="the model folder to write")
    p.set_defaults(func=_assemble)

    p = commands.add_parser(
        "convert-released",
        help="Convert the authors' released MMGT checkpoints into an mmgt model folder.",
        description="Read RELEASE_DIR (the files of addtime/MMGT_pretrained: stage_1/audio2pose_best_model.pt, "
        "stage_2/process_2/net-32500.pth) with torch.load(weights_only=True), convert every key by explicit rules "
        "(unknown keys, wrong shapes and missing keys are errors), take the VAE, CLIP image encoder, wav2vec2 and "
        "WavLM from the base-weights folder, and write a model folder with the released sampling settings (DDIM 30, "
        "CFG 3.5, linear inference betas, branch weights 1/1/2, target offset 0). Nothing is written on error. "
        "The weights remain the authors' (their repository has no licence); see docs/weights.md.",
    )
    p.add_argument("release", type=Path, metavar="RELEASE_DIR", help="the downloaded release folder")
    p.add_argument(
        "--base", type=Path, required=True, metavar="BASE_WEIGHTS_DIR", help="base-weights folder (docs/weights.md)"
    )
    p.add_argument("-o", "--output", type=Path, required=True, metavar="MODEL_DIR", help="the folder to write (new)")
    only = p.add_mutually_exclusive_group()
    only.add_argument(
        "--stage1-only", action="store_true", help="convert SMGA alone: write its pipeline folder (mmgt audio2pose)"
    )
    only.add_argument(
        "--stage2-only", action="store_true", help="convert the video model alone: its pipeline folder (pose2video)"
    )
    p.add_argument(
        "--preset",
        default="released",
        choices=("released", "released_tiny"),
        help="stage-2 network sizes (released_tiny: the released network at test sizes)",
    )
    p.add_argument("--size", type=int, default=None, help="output size saved in the model folder (default 512)")
    p.set_defaults(func=_convert_released)


def _base_layout() -> str:
    """BASE_LAYOUT as indented lines: folder, role, public source."""
    from mmgt.weights import BASE_LAYOUT

    lines = []
    for p in BASE_LAYOUT:
        source = p.repository + (f" ({p.subfolder}/)" if p.subfolder else "")
        if p.alternative:
            source += f" or {p.alternative}"
        role = p.role if p.required else f"(optional) {p.role}"
        lines += [f"    {p.name + '/':<22}{role}", f"    {'':<22}<- {source}"]
    return "\n".join(lines)


def _check(args: argparse.Namespace) -> int:
    from mmgt.weights import check_folder, folder_kind, summarize

    parts = check_folder(args.folder, preset=args.preset)
    kind = folder_kind(args.folder)
    ok = all(p.acceptable for p in parts)
    summary = summarize(parts)
    if args.json:
        report = {"folder": str(args.folder), "kind": kind, "ok": ok, "summary": summary}
        print(json.dumps({**report, "parts": [asdict(p) for p in parts]}, indent=2))
        return 0 if ok else 1
    print(f"{args.folder}: {'base-weights folder' if kind == 'base' else 'trained MMGT model folder'}")
    rows = [("part", "status", "path", "detail")]
    for p in parts:
        status = p.status if p.required else f"{p.status} (optional)"
        detail = p.detail if p.status == "ok" or not p.source else f"{p.detail}; from {p.source}"
        rows.append((p.name, status, p.path, detail))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
    print(summary)
    return 0 if ok else 1


def _assemble(args: argparse.Namespace) -> int:
    from mmgt.pipelines.mmgt_pipeline import assemble_model

    folder = assemble_model(
        args.stage1,
        args.stage2,
        args.output,
        settings={"size": args.size},
        encoders={"stage1": args.stage1_encoder, "stage2": args.stage2_encoder},
        sampling={"stage1": pose_sampling(args, prefix="pose_"), "stage2": video_sampling(args)},
    )
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    print(f"{folder}: model folder written ({size / 2**20:.1f} MiB)")
    return 0


def _convert_released(args: argparse.Namespace) -> int:
    import time

    from mmgt.weights.released import RELEASED_SIZE, convert_released

    stages = ("stage1",) if args.stage1_only else ("stage2",) if args.stage2_only else ("stage1", "stage2")
    start = time.perf_counter()
    folder, dropped = convert_released(
        args.release, args.base, args.output, stages, args.preset, args.size or RELEASED_SIZE
    )
    for line in dropped:
        print(f"dropped {line}")
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    kind = "model folder" if len(stages) == 2 else f"{stages[0]} pipeline folder"
    print(f"{folder}: {kind} written ({size / 2**20:.1f} MiB) in {time.perf_counter() - start:.0f} s")
    return 0
