"""Throughput of pose rendering and motion masks on one CPU core.

Usage: python benchmarks/bench_render.py [--frames 250] [--sizes 512 128] [--repeats 3] [--threads 1]

Prints frames/s for: rendering (render_pose_sequence), binary masks (motion_masks) and the full stage-II branch
masks (branch_masks: boxes -> blur -> 4 levels). The pose is a synthetic talking-and-gesturing upper body so boxes and
limbs have realistic sizes. Target: well above 100 frames/s at 512^2.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from mmgt.constants import BODY_INDEX, FACE, LEFT_HAND, LEGS, NUM_KEYPOINTS, RIGHT_HAND
from mmgt.contracts import PoseSequence
from mmgt.pose.masks import branch_masks, motion_masks
from mmgt.pose.render import render_pose_sequence

SIZE = 512


def synthetic_pose(frames: int, seed: int = 0) -> PoseSequence:
    """An upper body centred on a 512^2 canvas whose face and hands move sinusoidally, with detector-like noise."""
    rng = np.random.default_rng(seed)
    base = np.zeros((NUM_KEYPOINTS, 2))
    body = {
        "nose": (256, 150),
        "neck": (256, 210),
        "right_shoulder": (196, 215),
        "right_elbow": (170, 300),
        "right_wrist": (190, 380),
        "left_shoulder": (316, 215),
        "left_elbow": (342, 300),
        "left_wrist": (322, 380),
        "right_hip": (220, 420),
        "left_hip": (292, 420),
        "right_eye": (244, 140),
        "left_eye": (268, 140),
        "right_ear": (230, 146),
        "left_ear": (282, 146),
    }
    for name, xy in body.items():
        base[BODY_INDEX[name]] = xy
    angles = np.linspace(0, 2 * np.pi, len(FACE), endpoint=False)
    base[list(FACE)] = np.stack([256 + 30 * np.cos(angles), 150 + 38 * np.sin(angles)], axis=-1)
    fingers = rng.uniform(-25, 25, (len(LEFT_HAND), 2))
    base[list(LEFT_HAND)] = base[BODY_INDEX["left_wrist"]] + fingers
    base[list(RIGHT_HAND)] = base[BODY_INDEX["right_wrist"]] + fingers * [-1, 1]

    t = np.arange(frames)[:, None, None] / 25.0
    motion = np.zeros((frames, NUM_KEYPOINTS, 2))
    motion[:, list(LEFT_HAND)] = 40 * np.sin(2 * np.pi * 0.7 * t)
    motion[:, list(RIGHT_HAND)] = 40 * np.cos(2 * np.pi * 0.5 * t)
    motion[:, list(FACE)] = 5 * np.sin(2 * np.pi * 1.3 * t)
    keypoints = base + motion + rng.normal(0, 1.0, (frames, NUM_KEYPOINTS, 2))
    scores = rng.uniform(0.5, 1.0, (frames, NUM_KEYPOINTS))
    scores[:, list(LEGS)] = 0.0
    return PoseSequence(keypoints.astype(np.float32), scores.astype(np.float32), SIZE, SIZE)


def frames_per_second(fn, pose: PoseSequence, size: int, repeats: int) -> float:
    """Best-of-``repeats`` frames/s of ``fn(pose, size, size)``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(pose, size, size)
        best = min(best, time.perf_counter() - start)
    return pose.num_frames / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads (1 = one core)")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)

    pose = synthetic_pose(args.frames)
    print(f"{args.frames} frames, best of {args.repeats}, OpenCV threads = {args.threads}")
    print(f"{'size':>9} | {'render f/s':>10} | {'motion_masks f/s':>16} | {'branch_masks f/s':>16}")
    print("-" * 62)
    for size in args.sizes:
        # motion_masks takes (width, height), branch_masks (height, width): square sizes make both the same.
        render, binary, branch = (
            frames_per_second(fn, pose, size, args.repeats)
            for fn in (render_pose_sequence, motion_masks, branch_masks)
        )
        print(f"{size:>4}x{size:<4} | {render:>10.0f} | {binary:>16.0f} | {branch:>16.0f}")


if __name__ == "__main__":
    main()
