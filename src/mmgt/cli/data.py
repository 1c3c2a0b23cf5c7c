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


def _check(args: argparse.Namespace) -> int:
    from mmgt.data.check import check_dataset

    report = check_dataset(args.dataset, checksums=not args.no_checksums)
    print(report.table())
    print("OK" if report.ok else f"FAILED: {len(report.problems)} clip(s) with problems")
    return 0 if report.ok else 1
