"""``mmgt demo``: the bundled tiny model speaking, with zero downloads (the README's first command)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgt.cli.generate import add_generation_arguments

DEMO_SECONDS = 5.0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="Run the bundled tiny model: a synthetic speaker says a generated (or your) speech clip.",
        description="Generate a video with the tiny demo model bundled in the package (trained on the synthetic "
        "speaker world by `make demo-weights`; it knows the synthetic speakers, not real people). Without --audio a "
        "procedural speech clip is generated and saved beside the output; with --audio the demo speaker says your "
        "audio (e.g. espeak-ng speech: `espeak-ng -w hello.wav 'Hello there'`). Writes the video and a side-by-side "
        "preview and prints their paths.",
    )
    p.add_argument("--audio", type=Path, default=None, help="speech to say (default: a generated speech clip)")
    p.add_argument(
        "--seconds",
        type=float,
        default=DEMO_SECONDS,
        help=f"length of the generated speech clip (default {DEMO_SECONDS:g})",
    )
    p.add_argument(
        "--image", type=Path, default=None, help="another reference image (default: the bundled synthetic speaker)"
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("demo-output/demo.mp4"),
        help="output video (default demo-output/demo.mp4; the preview goes beside it)",
    )
    add_generation_arguments(p)
    p.set_defaults(func=_run, preview=None)


def _run(args: argparse.Namespace) -> int:
    from mmgt.app.demo import demo_assets, demo_speech
    from mmgt.cli.generate import run_generation

    assets = demo_assets()
    audio = args.audio
    if audio is None:
        audio = demo_speech(args.output.with_name(args.output.stem + "_speech.wav"), args.seconds, args.seed)
        print(f"{audio}: generated {args.seconds:g} s speech clip")
    if args.preview is None:
        args.preview = args.output.with_name(args.output.stem + "_preview.mp4")
    image = args.image or assets.image
    pose = assets.reference_pose() if args.image is None else None  # the bundled speaker's known pose
    return run_generation(args, assets.model, image, audio, reference_pose=pose)
