"""``mmgt synth``: write a synthetic speaker dataset (docs/synthetic.md) in the mmgt dataset format."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="Generate a synthetic talking-speaker dataset (procedural speech, motion and figures).",
        description="Generate a dataset of synthetic speakers whose mouth, head and hands are driven by procedural "
        "speech: a world where both mmgt stages train end to end on CPU and where 'does the motion follow the "
        "audio?' is measurable. Writes clips/<id>.mp4/.wav/.npz, manifest.jsonl, identities/<name>.png and "
        "synth_config.json. The same arguments always give the same audio and keypoint files.",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="output dataset folder: new, empty, or made with the same arguments"
    )
    p.add_argument("--clips", type=int, default=200, help="number of clips (default 200)")
    p.add_argument("--seconds", type=float, default=4.0, help="duration of each clip in seconds (default 4)")
    p.add_argument("--size", type=int, default=128, help="frame side in pixels, 64-512 (default 128)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--identities", type=int, default=4, help="number of synthetic speakers (default 4)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument(
        "--tts",
        type=float,
        nargs="?",
        const=0.5,
        default=0.0,
        metavar="FRACTION",
        help="speak this share of the clips (default 0.5 when given without a value) with the espeak-ng binary "
        "instead of procedural speech; needs espeak-ng on PATH",
    )
    p.add_argument(
        "--decoupled-body",
        action="store_true",
        help="the mouth follows each clip's speech, but head nods, sway and beat gestures follow a second, unheard "
        "utterance: poses without the mouth points then say nothing about the speech (for testing whether stage 2 "
        "takes the mouth from the audio; not a world for training stage 1)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    from mmgt.data.synthetic import write_synthetic_dataset

    start = time.perf_counter()
    records = write_synthetic_dataset(
        args.out,
        clips=args.clips,
        seconds=args.seconds,
        size=args.size,
        seed=args.seed,
        identities=args.identities,
        workers=args.workers,
        progress=not args.quiet,
        tts_fraction=args.tts,
        decoupled_body=args.decoupled_body,
    )
    splits = {s: sum(r.split == s for r in records) for s in ("train", "val", "test")}
    print(
        f"wrote {len(records)} clips ({splits['train']} train / {splits['val']} val / {splits['test']} test) of "
        f"{args.seconds:g} s at {args.size}px to {args.out} in {time.perf_counter() - start:.1f} s"
    )
    return 0
