"""``mmgt generate``: speech + one image of a person -> an mp4 of that person talking and gesturing, with the audio."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgt.cli._common import add_pose_sampling_arguments, add_video_sampling_arguments, pose_sampling, video_sampling


def add_generation_arguments(p: argparse.ArgumentParser) -> None:
    """The generation options shared by ``mmgt generate`` and ``mmgt demo``."""
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_video_sampling_arguments(p, windows=False)
    add_pose_sampling_arguments(p, prefix="pose-")
    p.add_argument("--size", type=int, default=None, help="output size N x N, a multiple of 8 (default: the model's)")
    p.add_argument(
        "--max-seconds", type=float, default=None, help="refuse longer audio (default: the model's; 0 = no limit)"
    )
    p.add_argument(
        "--preview", type=Path, default=None, help="also write a side-by-side video: reference | pose | masks | output"
    )
    p.add_argument(
        "--save-intermediates",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write reference.png, poses.npz, pose.mp4 and masks/*.mp4 here",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="Audio + one image -> a talking, gesturing video with the audio (both stages).",
        description="Generate a video of the person in --image speaking --audio: stage 1 turns the speech into "
        "whole-body keypoints and motion masks, stage 2 renders the person following them. The image is prepared "
        "first (RGBA, grayscale and 16-bit converted; the person detected; a square upper-body crop resized to the "
        "model size). The mp4 has exactly ceil(duration x 25) frames and the audio. Inputs are checked before any "
        "model runs; on an error nothing is written.",
    )
    p.add_argument("--model", type=Path, required=True, help="model folder (see `mmgt weights check`)")
    p.add_argument("--image", type=Path, required=True, help="photo of the person (png, jpg, webp, ...)")
    p.add_argument("--audio", type=Path, required=True, help="speech (wav, flac, mp3, m4a, ogg or a video)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output video (.mp4)")
    add_generation_arguments(p)
    p.set_defaults(func=_run)


def run_generation(args: argparse.Namespace, model: Path, image: Path, audio: Path, reference_pose=None) -> int:
    """Load inputs (fail fast), then the model, then generate; prints the output paths."""
    from mmgt.app.generate import generate_files, load_inputs
    from mmgt.pipelines.mmgt_pipeline import MMGTPipeline

    inputs = load_inputs(image, audio)
    pipe = MMGTPipeline.from_pretrained(model)
    result = generate_files(
        pipe,
        inputs,
        args.output,
        preview=args.preview,
        intermediates=args.save_intermediates,
        seed=args.seed,
        size=args.size,
        max_seconds=args.max_seconds,
        reference_pose=reference_pose,
        stage1=pose_sampling(args, prefix="pose_"),
        stage2=video_sampling(args),
        progress=not args.quiet,
    )
    print(f"{result.output}: {result.num_frames} frames ({result.duration_s:.2f} s) with audio")
    if result.preview is not None:
        print(f"{result.preview}: preview (reference | pose | masks | output)")
    if result.intermediates:
        print(
            f"{args.save_intermediates}: "
            + ", ".join(str(p.relative_to(args.save_intermediates)) for p in result.intermediates)
        )
    return 0


def _run(args: argparse.Namespace) -> int:
    return run_generation(args, args.model, args.image, args.audio)
