"""``mmgt pose2video``: stage 2 alone — reference image + keypoint file (+ speech) -> an mp4 with the audio muxed."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgt.cli._common import add_video_sampling_arguments, load_stage2_pipeline, video_sampling


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pose2video",
        help="Stage 2: render a video of the person in an image following a keypoint sequence (and speech).",
        description="Generate one video frame per pose frame (25 fps) from a reference image and a keypoint .npz "
        "with a trained stage-2 pipeline, conditioned on speech audio if given (pose-only mode otherwise). The "
        "audio is muxed into the mp4, cut or padded with silence to the video length.",
    )
    p.add_argument("--model", type=Path, required=True, help="stage-2 pipeline folder (e.g. runs/stage2/NAME/final)")
    p.add_argument("--image", type=Path, required=True, help="reference image of the person (png, jpg, ...)")
    p.add_argument("--pose", type=Path, required=True, help="keypoint .npz at 25 fps (e.g. from mmgt audio2pose)")
    p.add_argument("--audio", type=Path, default=None, help="speech audio (wav, flac, mp3, m4a, ogg or a video)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output video (.mp4)")
    add_video_sampling_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--size", type=int, default=None, help="output size N x N, a multiple of 8 (default: the pose file's size)"
    )
    p.add_argument("--decode-chunk", type=int, default=8, help="frames per VAE decode call (default 8)")
    p.add_argument(
        "--encoder", type=Path, default=None, help="wav2vec2 folder, if the model was trained on wav2vec2 features"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from mmgt.constants import FPS, MUX_SAMPLE_RATE
    from mmgt.contracts import PoseSequence
    from mmgt.pipelines.reference import load_image
    from mmgt.utils.audio_io import Audio
    from mmgt.utils.video_io import VideoWriter

    image = load_image(args.image)
    poses = PoseSequence.load(args.pose)
    audio = Audio.load(args.audio) if args.audio is not None else None
    mux = {} if audio is None else {"audio": audio.at(MUX_SAMPLE_RATE).wave, "sample_rate": MUX_SAMPLE_RATE}
    pipe = load_stage2_pipeline(args.model, args.encoder)
    with VideoWriter(args.output, fps=FPS, **mux) as writer:
        pipe(
            image,
            poses,
            audio,
            height=args.size,
            width=args.size,
            generator=torch.Generator().manual_seed(args.seed),
            decode_chunk_size=args.decode_chunk,
            frame_callback=writer.write,  # streamed: memory does not grow with the video length
            **video_sampling(args),
        )
    print(f"{args.output}: {writer.num_frames} frames ({writer.num_frames / FPS:.2f} s)")
    return 0
