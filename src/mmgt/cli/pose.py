"""``mmgt pose ...``: extract keypoints from an image or video, render pose and mask videos."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmgt.cli._common import add_group


def register(subparsers) -> None:
    commands = add_group(subparsers, "pose", "Whole-body keypoints: extract from images/videos, render videos.")

    p = commands.add_parser(
        "extract",
        help="Detect 134-point whole-body keypoints in an image or a video.",
        description="Detect 134-point whole-body keypoints (body, face, hands) in an image or a video with "
        "mediapipe Holistic (or DWPose ONNX models you supply) and save them as a PoseSequence .npz.",
    )
    p.add_argument("input", type=Path, help="image (png/jpg/...) or video (mp4/mov/mkv/...) file")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .npz keypoint file")
    p.add_argument("--fps", type=float, default=None, help="resample a video to this frame rate first (e.g. 25)")
    p.add_argument("--no-smooth", action="store_true", help="disable temporal smoothing of video keypoints")
    p.add_argument("--dwpose-det", type=Path, default=None, help="DWPose YOLOX detector .onnx (with --dwpose-pose)")
    p.add_argument("--dwpose-pose", type=Path, default=None, help="DWPose whole-body pose .onnx (with --dwpose-det)")
    p.set_defaults(func=_extract)

    p = commands.add_parser(
        "render",
        help="Render a keypoint file as an OpenPose-style pose video (plus mask videos).",
        description="Render a keypoint .npz as an OpenPose/ControlNet-style pose video and, with --masks-dir, the "
        "three motion-mask videos (lips, face_hands, hands) used by MM-HAA. All videos have exactly one frame per "
        "keypoint frame.",
    )
    p.add_argument("poses", type=Path, help="keypoint .npz written by `mmgt pose extract` or `mmgt audio2pose`")
    p.add_argument("-o", "--output", type=Path, required=True, help="output pose video (.mp4)")
    p.add_argument("--masks-dir", type=Path, default=None, help="also write lips.mp4, face_hands.mp4, hands.mp4 here")
    p.add_argument("--size", type=int, default=512, help="output width and height in pixels (default 512)")
    p.add_argument("--audio", type=Path, default=None, help="mux this audio into the pose video")
    p.set_defaults(func=_render)


def _extract(args: argparse.Namespace) -> int:
    from mmgt.errors import MmgtError
    from mmgt.pose.detect import DWPoseDetector, MediaPipeDetector, extract_poses, require_person

    if (args.dwpose_det is None) != (args.dwpose_pose is None):
        raise MmgtError("--dwpose-det and --dwpose-pose must be given together")
    if args.dwpose_det is not None:
        detector = DWPoseDetector(args.dwpose_det, args.dwpose_pose)
    else:
        detector = MediaPipeDetector(static_image_mode=not _is_video(args.input))
    with detector:
        pose = extract_poses(args.input, detector=detector, fps=args.fps, smooth=not args.no_smooth, progress=True)
    require_person(pose, what=str(args.input))
    pose.save(args.output)
    visible = int(pose.visible()[0].sum())
    print(
        f"{args.output}: {pose.num_frames} frame(s), {pose.width}x{pose.height}, {visible} visible keypoints in "
        "frame 0"
    )
    return 0


def _is_video(path: Path) -> bool:
    from mmgt.pose.detect import VIDEO_SUFFIXES

    return path.suffix.lower() in VIDEO_SUFFIXES


def _render(args: argparse.Namespace) -> int:
    from mmgt.constants import MOTION_MASKS
    from mmgt.contracts import PoseSequence
    from mmgt.pose.videos import write_pose_videos
    from mmgt.utils.audio_io import Audio

    pose = PoseSequence.load(args.poses)
    audio = Audio.load(args.audio) if args.audio is not None else None
    write_pose_videos(pose, args.output, args.masks_dir, args.size, audio)
    print(f"{args.output}: {pose.num_frames} frames at {args.size}x{args.size}, {pose.fps:g} fps")
    if args.masks_dir is not None:
        names = ", ".join(f"{n}.mp4" for n in MOTION_MASKS)
        print(f"{args.masks_dir}: {names} ({pose.num_frames} frames each)")
    return 0
