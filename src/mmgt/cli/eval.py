"""``mmgt eval ...``: evaluation harnesses (stage 1 against controls; stage 2 against ground-truth frames)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmgt.cli._common import (
    add_group,
    add_pose_sampling_arguments,
    add_video_sampling_arguments,
    load_stage2_pipeline,
    pose_sampling,
    video_sampling,
)


def register(subparsers) -> None:
    commands = add_group(subparsers, "eval", "Evaluate trained models on held-out clips of a dataset.")
    p = commands.add_parser(
        "stage1",
        help="Score an SMGA model against two controls on held-out clips.",
        description="Generate poses for held-out clips (each driven from its first frame and its own audio) and score "
        "them against the clip's true audio and keypoints: lip-sync (mouth opening vs audio envelope), beat "
        "alignment, keypoint L2/PCK and FGD (with --pose-ae). Controls: 'still_reference' (the reference pose held "
        "still) and 'other_audio' (the same model driven by another clip's audio).",
    )
    _dataset_arguments(p, "stage-1")
    p.add_argument("--pose-ae", type=Path, default=None, help="pose autoencoder folder for FGD")
    add_pose_sampling_arguments(p)
    p.add_argument(
        "--conditions",
        nargs="+",
        default=["model", "still_reference", "other_audio"],
        help="which of model, still_reference, other_audio to run",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("-o", "--output", type=Path, default=None, help="write the metrics as JSON here")
    p.set_defaults(func=_stage1)

    p = commands.add_parser(
        "stage2",
        help="Score a stage-2 model on held-out clips driven by their true poses and audio.",
        description="Regenerate held-out clips from their last frame (the reference), their ground-truth keypoints "
        "and their audio, and score them against the real frames: PSNR, SSIM, clothing-colour error and identity "
        "(nearest reference by clothing colour), and mouth_r, the correlation of mouth-region pixel change with the "
        "audio envelope. Conditions: 'audio' (own speech) and 'no_audio' (zero audio tokens); the real frames' "
        "mouth_r is the ceiling.",
    )
    _dataset_arguments(p, "stage-2")
    p.add_argument("--frames", type=int, default=None, help="score only the first N frames of each clip")
    p.add_argument("--size", type=int, default=128, help="output size (default 128)")
    add_video_sampling_arguments(p, windows=False)
    p.add_argument("--conditions", nargs="+", default=["audio", "no_audio"], help="audio and/or no_audio")
    p.add_argument("--encoder", type=Path, default=None, help="wav2vec2 folder, if the model reads wav2vec2 features")
    p.add_argument("--videos", type=Path, default=None, help="write real | generated side-by-side videos here")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("-o", "--output", type=Path, default=None, help="write the metrics as JSON here")
    p.set_defaults(func=_stage2)


def _dataset_arguments(p: argparse.ArgumentParser, stage: str) -> None:
    """--model, --data, --split, --clips, --ids: what every evaluation reads."""
    p.add_argument("--model", type=Path, required=True, help=f"{stage} pipeline folder")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (mmgt format)")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--clips", type=int, default=None, help="evaluate only the first N clips of the split")
    p.add_argument(
        "--ids",
        type=Path,
        default=None,
        metavar="FILE",
        help="evaluate only the clips of this id list (e.g. test_ids.txt of `mmgt data pats`); all must be present",
    )


def _listed(args: argparse.Namespace) -> list | None:
    """The --ids list (None without it), checked against the split before any model is loaded."""
    from mmgt.data.id_list import read_test_ids, select_listed
    from mmgt.data.manifest import read_manifest

    if args.ids is None:
        return None
    listed = read_test_ids(args.ids)
    select_listed(read_manifest(args.data, args.split), listed, f"the {args.split} split of {args.data}")
    return listed


def _write_json(path: Path | None, payload: dict) -> None:
    from mmgt.utils.files import atomic_output

    if path is not None:
        with atomic_output(path) as tmp:  # complete or absent
            tmp.write_text(json.dumps(payload, indent=2))


def _stage1(args: argparse.Namespace) -> int:
    from mmgt.evaluation.pose_autoencoder import PoseAutoencoder
    from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
    from mmgt.training.preflight import check_eval
    from mmgt.training.validate_stage1 import CONDITIONS, generate_for_clips, score_conditions

    check_eval(  # before any clip is generated: model, split, folders, outputs, numbers
        args.model,
        args.data,
        args.split,
        "stage-1 model",
        outputs={"--output": args.output},
        folders={"--pose-ae": args.pose_ae},
        conditions=(tuple(args.conditions), CONDITIONS),
        positive={"--clips": args.clips, "--steps": args.steps},
    )
    ids = _listed(args)
    pipe = AudioToPosePipeline.from_pretrained(args.model)
    pipe.set_sampling(**pose_sampling(args))  # the flags override the model's defaults for this evaluation
    sampling = pipe.sampling
    ae = PoseAutoencoder.from_pretrained(args.pose_ae) if args.pose_ae else None
    generated = generate_for_clips(
        pipe, args.data, args.split, args.clips, tuple(args.conditions), seed=args.seed, ids=ids
    )
    results = score_conditions(generated, tuple(args.conditions), ae)
    metrics = sorted(next(iter(results.values())))
    print(
        f"{len(generated['clips'])} clips of {args.data} ({args.split}), {sampling.sampler} "
        f"{sampling.num_inference_steps} steps, guidance {sampling.guidance_scale:g}"
    )
    print("| condition | " + " | ".join(metrics) + " |")
    print("|---|" + "---|" * len(metrics))
    for cond, row in results.items():
        print(f"| {cond} | " + " | ".join(f"{row[m]:.3f}" for m in metrics) + " |")
    payload = {
        "model": str(args.model),
        "data": str(args.data),
        "split": args.split,
        "ids": None if args.ids is None else str(args.ids),
        "sampling": sampling.to_dict(),
        "clips": generated["clips"],
        "results": results,
    }
    _write_json(args.output, payload)
    return 0


def _stage2(args: argparse.Namespace) -> int:
    from mmgt.training.preflight import check_eval
    from mmgt.training.validate_stage2 import CONDITIONS, evaluate_stage2

    check_eval(  # before any clip is generated: model, split, folders, outputs, numbers
        args.model,
        args.data,
        args.split,
        "stage-2 model",
        outputs={"--output": args.output, "--videos": args.videos},
        folders={"--encoder": args.encoder},
        conditions=(tuple(args.conditions), CONDITIONS),
        positive={"--clips": args.clips, "--steps": args.steps, "--size": args.size, "--frames": args.frames},
    )
    ids = _listed(args)
    pipe = load_stage2_pipeline(args.model, args.encoder)
    pipe.set_sampling(**video_sampling(args))  # the flags override the model's defaults for this evaluation
    sampling = pipe.sampling
    result = evaluate_stage2(
        pipe,
        args.data,
        args.split,
        args.clips,
        args.frames,
        args.size,
        tuple(args.conditions),
        seed=args.seed,
        videos_dir=args.videos,
        ids=ids,
    )
    metrics = ("psnr", "ssim", "colour_error", "identity_ok", "mouth_r")
    print(
        f"{len(result['clips'])} clips of {args.data} ({args.split}) at {args.size}px, "
        f"{sampling.num_inference_steps} steps, guidance {sampling.guidance_scale:g}"
    )
    print("| condition | " + " | ".join(metrics) + " |")
    print("|---|" + "---|" * len(metrics))
    for cond, row in result["mean"].items():
        print(f"| {cond} | " + " | ".join(f"{row[m]:.3f}" if m in row else "-" for m in metrics) + " |")
    payload = {
        "model": str(args.model),
        "data": str(args.data),
        "split": args.split,
        "ids": None if args.ids is None else str(args.ids),
        "size": args.size,
        "sampling": sampling.to_dict(),
        **result,
    }
    _write_json(args.output, payload)
    return 0
