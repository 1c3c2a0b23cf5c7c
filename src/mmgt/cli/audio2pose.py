"""``mmgt audio2pose``: stage 1 alone — audio + a reference (image or pose) -> keypoints (+ pose and mask videos)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgt.cli._common import add_pose_sampling_arguments, pose_sampling


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "audio2pose",
        help="Stage 1: generate a keypoint sequence (and optionally pose/mask videos) from audio.",
        description="Generate exactly ceil(duration * 25) frames of 134-point keypoints from speech audio of any "
        "length with a trained SMGA model, starting from the pose in a reference image (or a keypoint file).",
    )
    p.add_argument("--model", type=Path, required=True, help="stage-1 pipeline folder (e.g. runs/stage1/NAME/final)")
    ref = p.add_mutually_exclusive_group(required=True)
    ref.add_argument("--image", type=Path, help="reference image of the person (pose detected with mediapipe)")
    ref.add_argument("--pose", type=Path, help="reference keypoint .npz (frame 0 is used)")
    p.add_argument("--audio", type=Path, required=True, help="speech audio (wav, flac, mp3, m4a, ogg or a video)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output keypoint .npz")
    p.add_argument("--render", type=Path, default=None, help="also write the pose video (with the audio) here")
    p.add_argument("--masks-dir", type=Path, default=None, help="also write lips/face_hands/hands mask videos here")
    p.add_argument("--size", type=int, default=None, help="render size (default: the reference size)")
    add_pose_sampling_arguments(p)
    p.add_argument("--candidates", type=int, default=1, help="motion selection among k candidates (1 = off)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument(
        "--encoder", type=Path, default=None, help="speech-encoder folder, if the model was trained with one"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from mmgt.audio.encoders import SpeechEncoder
    from mmgt.contracts import PoseSequence
    from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
    from mmgt.pose.detect import MediaPipeDetector, extract_poses, require_person
    from mmgt.pose.videos import write_pose_videos
    from mmgt.utils.audio_io import Audio
    from mmgt.utils.model_folders import require_pipeline_folder

    require_pipeline_folder(args.model, "stage-1 model")
    audio = Audio.load(args.audio)
    if audio.is_silent():
        print(f"mmgt: warning: {args.audio} is silent; the speaker will barely move")
    if args.image is not None:
        with MediaPipeDetector(static_image_mode=True) as detector:
            reference = extract_poses(args.image, detector=detector)
        require_person(reference, what=str(args.image))
    else:
        reference = PoseSequence.load(args.pose)
    pipe = AudioToPosePipeline.from_pretrained(args.model)
    if args.encoder is not None:
        pipe.set_audio_encoder(SpeechEncoder.for_stage(args.encoder, stage=1))
    out = pipe(
        audio,
        reference,
        generator=torch.Generator().manual_seed(args.seed),
        num_candidates=args.candidates,
        **pose_sampling(args),
    )
    out.poses.save(args.output)
    print(f"{args.output}: {out.poses.num_frames} frames ({audio.duration:.2f} s of audio)")
    if args.render is not None or args.masks_dir is not None:
        write_pose_videos(out.poses, args.render, args.masks_dir, args.size, audio)
    return 0
