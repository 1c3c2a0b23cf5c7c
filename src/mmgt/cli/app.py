"""``mmgt app``: the Gradio web app on this machine (upload or record speech, upload a photo, get the video)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgt.errors import MmgtError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "app",
        help="Start the web app (Gradio): a photo and speech in the browser -> the talking video.",
        description="Serve a web page where you upload a photo of a person and speech (or record it with the "
        "microphone) and get the generated video, a side-by-side preview, the pose video and the motion-mask videos. "
        "The model is loaded once; jobs run one at a time, each writing into its own folder. Needs the app extra: "
        "pip install 'mmgt[app]'. The app listens on 127.0.0.1 (this machine only) unless --host says otherwise; it "
        "has no login, and no public share link is offered.",
    )
    p.add_argument("--model", type=Path, required=True, metavar="DIR", help="model folder (see `mmgt weights check`)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the app, "
        "without authentication, to every machine that can reach this one)",
    )
    p.add_argument("--port", type=int, default=7860, metavar="N", help="port to listen on (default 7860)")
    p.add_argument("--max-seconds", type=float, default=60.0, metavar="S", help="refuse longer audio (default 60 s)")
    p.add_argument(
        "--max-image-mb", type=float, default=20.0, metavar="MB", help="refuse larger image files (default 20 MB)"
    )
    p.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder for the job folders (default: a new temporary folder; never cleaned up)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mmgt.app.web import build_app, require_gradio
    from mmgt.pipelines.mmgt_pipeline import MMGTPipeline

    require_gradio()  # before the model loads: a missing extra fails in a second
    pipe = MMGTPipeline.from_pretrained(args.model)
    demo = build_app(pipe, max_seconds=args.max_seconds, max_image_mb=args.max_image_mb, output_root=args.output_dir)
    try:
        demo.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=True, quiet=True)
    except OSError as e:  # port taken, address not available
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MmgtError(f"cannot serve on {args.host}:{args.port} ({first})") from e
    print(f"mmgt app: serving {args.model} at {demo.local_url} (Ctrl+C to stop)", flush=True)
    demo.block_thread()  # until Ctrl+C, then closes the server
    return 0
