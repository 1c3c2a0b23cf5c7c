"""``mmgt data ...``: validate and build datasets in the mmgt format (docs/data.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgt.cli._common import add_group


def register(subparsers) -> None:
    commands = add_group(
        subparsers, "data", "Datasets: validate a dataset folder, preprocess talking videos, build the PATS subset."
    )

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

    p = commands.add_parser(
        "pats",
        help="Cut PATS intervals from their source videos into a dataset with the table's split.",
        description="Cut every requested interval of PATS's interval table out of its source video (25 fps, the "
        "speaker's crop, at most --max-seconds), detect keypoints and write the dataset with the table's split, an "
        "availability report (availability.json, also printed) and test_ids.txt, the test clips present with their "
        "checksums (docs/data.md, 'PATS'). Resumable and shardable like `data preprocess`.",
    )
    _pats_table_arguments(p)
    p.add_argument("--videos", type=Path, required=True, metavar="VIDEOS_DIR", help="folder of the source videos")
    p.add_argument(
        "-o", "--out", type=Path, required=True, metavar="DATASET", help="dataset folder: new, empty or to resume"
    )
    p.add_argument("--size", type=int, default=512, help="side of the square output frames in pixels (default 512)")
    p.add_argument(
        "--max-seconds", type=float, default=15.0, help="keep the first N seconds of an interval (default 15); 0: all"
    )
    p.add_argument("--min-seconds", type=float, default=0.0, help="reject shorter intervals (default 0)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument(
        "--shard", type=_shard, default=(0, 1), metavar="I/N", help="only source videos whose index %% N == I"
    )
    p.add_argument(
        "--crop-left",
        action="append",
        type=_speaker_crop,
        default=[],
        metavar="SPEAKER=FRAC",
        help="crop left edge of a speaker as a fraction of the width, or 'auto' (repeatable; built in: seth 0.395, "
        "oliver 0.38, chemistry 0.031, jon 1 = right-aligned; other speakers: auto)",
    )
    p.add_argument("--no-smooth", action="store_true", help="keep the raw per-frame keypoints")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_pats)

    p = commands.add_parser(
        "fetch-pats",
        help="Download the source videos of PATS intervals (needs the extra mmgt[pats]).",
        description="Download the source video of every requested interval into VIDEOS_DIR under the name `data pats` "
        "looks for, with yt-dlp (pip install 'mmgt[pats]'). Videos already there are skipped; failures are retried, "
        "then listed in VIDEOS_DIR/fetch_report.json, which `data pats` adds to its availability report.",
    )
    _pats_table_arguments(p)
    p.add_argument("-o", "--out", type=Path, required=True, metavar="VIDEOS_DIR", help="folder of the source videos")
    p.add_argument("--min-interval", type=float, default=5.0, help="seconds between two downloads (default 5)")
    p.add_argument("--retries", type=int, default=2, help="further attempts after a failure (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_fetch_pats)


def _pats_table_arguments(p: argparse.ArgumentParser) -> None:
    """--intervals, --ids, --speakers, --video-name: which intervals, and where their videos lie."""
    p.add_argument("--intervals", type=Path, required=True, metavar="CSV", help="PATS's cmu_intervals_df.csv")
    p.add_argument(
        "--ids",
        type=Path,
        default=None,
        metavar="JSON",
        help="S2G-MDDiffusion's filtered_intervals.json: the intervals to use and their split (default: all "
        "intervals of the speakers, the csv's split)",
    )
    p.add_argument(
        "--speakers",
        type=lambda text: [s for s in text.split(",") if s],
        default=None,
        help="comma-separated speakers (default: the papers' four, chemistry,oliver,jon,seth); 'all': every speaker "
        "of the table",
    )
    p.add_argument(
        "--video-name",
        default=None,
        metavar="TEMPLATE",
        help="path of a source video under VIDEOS_DIR, any video suffix (default {speaker}/{video_id}; also "
        "{video_fn})",
    )


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


def _speaker_crop(text: str) -> tuple[str, float | None]:
    """``SPEAKER=FRAC`` or ``SPEAKER=auto`` -> (speaker, fraction or None); the range is checked by the library."""
    speaker, sep, value = text.partition("=")
    try:
        if not (sep and speaker):
            raise ValueError
        return speaker, None if value == "auto" else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SPEAKER=FRAC or SPEAKER=auto, got {text!r}") from None


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


def _speakers(args: argparse.Namespace) -> list[str] | None:
    """--speakers as the library takes it: the papers' four by default, None for 'all'."""
    from mmgt.data.pats import PAPER_SPEAKERS

    if args.speakers is None:
        return list(PAPER_SPEAKERS)
    return None if args.speakers == ["all"] else args.speakers


def _video_name(args: argparse.Namespace) -> str:
    from mmgt.data.pats import DEFAULT_VIDEO_NAME

    return DEFAULT_VIDEO_NAME if args.video_name is None else args.video_name


def _pats(args: argparse.Namespace) -> int:
    from mmgt.data.pats import AVAILABILITY_NAME, TEST_IDS_NAME, build_pats_dataset

    report = build_pats_dataset(
        args.intervals,
        args.videos,
        args.out,
        ids_json=args.ids,
        speakers=_speakers(args),
        size=args.size,
        max_seconds=args.max_seconds or None,
        min_seconds=args.min_seconds,
        workers=args.workers,
        shard=args.shard,
        crop_left=dict(args.crop_left),
        smooth=not args.no_smooth,
        progress=not args.no_progress,
        video_name=_video_name(args),
    )
    print(report.run.summary())
    print(report.table())
    print(f"wrote {args.out / AVAILABILITY_NAME} and {args.out / TEST_IDS_NAME} ({len(report.test_ids)} test clips)")
    return 0 if report.run.records else 1


def _fetch_pats(args: argparse.Namespace) -> int:
    from mmgt.data.pats import read_ids, read_intervals, requested_intervals
    from mmgt.data.pats_fetch import YtDlpDownloader, fetch_sources

    table = read_intervals(args.intervals)
    ids = None if args.ids is None else read_ids(args.ids)
    intervals, _ = requested_intervals(table, ids, _speakers(args))
    report = fetch_sources(
        intervals,
        args.out,
        YtDlpDownloader(),
        _video_name(args),
        min_interval_s=args.min_interval,
        retries=args.retries,
        progress=not args.no_progress,
    )
    print(report.summary())
    return 0
