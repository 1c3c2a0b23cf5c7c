"""``mmgt data ...``: validate and build datasets in the mmgt format (docs/data.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgt.cli._common import add_group


def register(subparsers) -> None:
    commands = add_group(subparsers, "data", "Datasets: validate a dataset folder, preprocess talking videos.")

    p = commands.add_parser(
        "check",
        help="Validate a dataset folder and print a summary table.",
        description="Validate every clip of a dataset (files, checksums, frame/audio lengths, keypoints) and print a "
        "summary table per split. Exits with status 1 if any clip has a problem.",
    )
    p.add_argument("dataset", type=Path, help="dataset folder holding manifest.jsonl")
    p.add_argument("--no-checksums", action="store_true", help="skip SHA-256 verification (faster)")
    p.set_defaults(func=_check)

    p = commands.add_parser(
        "preprocess",
        help="Turn a folder of talking-person videos into a dataset.",
        description="Crop, resize, cut, detect keypoints and write every video under VIDEOS_DIR as dataset clips "
        "(docs/data.md, 'Preprocessing your own videos'). Resumable: finished clips are skipped; --shard runs merge.",
    )
    p.add_argument("videos", type=Path, metavar="VIDEOS_DIR", help="folder searched recursively for videos")
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        required=True,
        metavar="DATASET",
        help="dataset folder to write: new, empty, or an earlier output to resume or add a shard to",
    )
    p.add_argument("--size", type=int, default=512, help="side of the square output frames in pixels (default 512)")
    p.add_argument(
        "--max-seconds", type=float, default=15.0, help="cut videos into clips of at most this long; 0: no cutting"
    )
    p.add_argument("--min-seconds", type=float, default=2.0, help="drop a final piece shorter than this (default 2)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N", help="only videos whose index %% N == I")
    crop = p.add_mutually_exclusive_group()
    crop.add_argument(
        "--crop-left",
        type=float,
        metavar="FRAC",
        help="fixed square crop of the frame height whose left edge is FRAC of the width (seth 0.395, oliver 0.38, "
        "chemistry 0.031, jon 1 = right-aligned)",
    )
    crop.add_argument("--crop", choices=["auto"], default="auto", help="crop around the detected upper body (default)")
    p.add_argument(
        "--split-ratios", type=_ratios, default=(0.9, 0.05, 0.05), metavar="TR,VA,TE", help="default 0.9,0.05,0.05"
    )
    p.add_argument("--speaker-from", choices=["dirname", "filename"], default="dirname", help="default: dirname")
    p.add_argument("--no-smooth", action="store_true", help="keep the raw per-frame keypoints")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_preprocess)


def _check(args: argparse.Namespace) -> int:
    from mmgt.data.check import check_dataset

    report = check_dataset(args.dataset, checksums=not args.no_checksums)
    print(report.table())
    print("OK" if report.ok else f"FAILED: {len(report.problems)} clip(s) with problems")
    return 0 if report.ok else 1


def _shard(text: str) -> tuple[int, int]:
    """``I/N`` -> (I, N); the range is checked by :func:`~mmgt.data.preprocess.preprocess_videos`."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 0/4, got {text!r}") from None
    return index, count


def _ratios(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got {text!r}") from None


def _preprocess(args: argparse.Namespace) -> int:
    from mmgt.data.preprocess import preprocess_videos

    report = preprocess_videos(
        args.videos,
        args.out,
        size=args.size,
        max_seconds=args.max_seconds or None,
        workers=args.workers,
        shard=args.shard,
        crop_left=args.crop_left,
        split_ratios=args.split_ratios,
        smooth=not args.no_smooth,
        progress=not args.no_progress,
        speaker_from=args.speaker_from,
        min_seconds=args.min_seconds,
    )
    print(report.summary())
    # Failed videos do not fail the run (they are listed); an empty dataset does.
    return 0 if report.records else 1
