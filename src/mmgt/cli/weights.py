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
