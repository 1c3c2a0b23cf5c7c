"""`mmgt data preprocess` cost per stage: frames per second and per CPU-second (= per core) of each step.

Usage:
    python benchmarks/bench_preprocess.py [--videos DIR] [--size 512] [--source-size 512] [--work DIR]

Without ``--videos`` it makes its input with ``mmgt synth`` (2 talking clips of 4 s at ``--source-size``), so the
numbers are for a synthetic speaker: MediaPipe's cost depends on the frame size, not on who is in it. Each stage
runs the same functions as ``mmgt data preprocess`` (``mmgt.data.preprocess``), one after the other, in this one
process with one OpenCV thread:

* decode: ``iter_video_frames(path, fps=25)`` (PyAV, RGB conversion and 25 fps resampling);
* detect: the crop search (10 frames per video, static Holistic) plus tracking-mode Holistic on every cropped frame
  and the smoothing (``extract_poses``), the dominant cost;
* crop/resize: ``CropBox.apply`` (OpenCV resize to the output size);
* encode: ``write_clip`` (x264 encode of the clip, wav and keypoints written atomically);
* audio: ``load_audio`` (decode and resample to 16 kHz mono), counted in video frames (25 per second of audio).

"per core" is frames per CPU-second of this process (``time.process_time``): MediaPipe and x264 use threads of their
own, so wall-clock frames/s on an idle machine can be higher. The last row runs ``preprocess_videos`` end to end
(``workers=1``) on the same videos. Spreading the work over a cluster: ``--shard i/n`` (docs/data.md,
scripts/slurm/preprocess_array.sbatch).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mmgt.constants import FPS, SAMPLE_RATE
from mmgt.data.crop import auto_crop
from mmgt.data.manifest import write_clip
from mmgt.data.preprocess import _sample_poses, find_videos, preprocess_videos
from mmgt.pose.detect import MediaPipeDetector, extract_poses
from mmgt.utils.audio_io import load_audio
from mmgt.utils.video_io import iter_video_frames, probe_video


class Clock:
    """Wall and CPU seconds of a block, added per stage."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def time(self, stage: str):
        clock = self

        class _Block:
            def __enter__(self):
                self.t0, self.c0 = time.perf_counter(), time.process_time()

            def __exit__(self, *exc):
                clock.wall[stage] = clock.wall.get(stage, 0.0) + time.perf_counter() - self.t0
                clock.cpu[stage] = clock.cpu.get(stage, 0.0) + time.process_time() - self.c0

        return _Block()


def stages(videos: list[Path], size: int, out: Path) -> tuple[Clock, int]:
    """Time each preprocessing stage over ``videos``; returns the clock and the number of frames."""
    clock, total = Clock(), 0
    for n, path in enumerate(videos):
        info = probe_video(path)
        with clock.time("decode"):
            frames = list(iter_video_frames(path, fps=FPS))
        total += len(frames)
        with clock.time("detect"):
            box = auto_crop(_sample_poses(str(path), len(frames)), info.width, info.height)
        with clock.time("crop/resize"):
            cropped = np.stack([box.apply(frame, size) for frame in frames])
        with clock.time("detect"), MediaPipeDetector(static_image_mode=False) as detector:
            pose = extract_poses(cropped, detector, fps=FPS, smooth=True)
        with clock.time("audio"):
            wave = load_audio(path, SAMPLE_RATE)
        with clock.time("encode"):
            write_clip(
                out,
                f"clip{n:03d}",
                frames=cropped,
                wave=wave,
                sample_rate=SAMPLE_RATE,
                pose=pose,
                split="train",
                speaker="bench",
            )
    return clock, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=Path, help="folder of talking-person videos (default: made by mmgt synth)")
    parser.add_argument("--size", type=int, default=512, help="output frame side (preprocess --size)")
    parser.add_argument("--source-size", type=int, default=512, help="frame side of the synthetic input videos")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        videos_dir = args.videos
        if videos_dir is None:
            videos_dir = work / "synth"
            synth = ["synth", "--out", str(videos_dir), "--clips", "2", "--seconds", "4"]
            subprocess.run(
                [sys.executable, "-m", "mmgt", *synth, "--size", str(args.source_size), "--quiet"], check=True
            )
        videos = find_videos(videos_dir)
        info = probe_video(videos[0])
        clock, frames = stages(videos, args.size, work / "stages")
        t0, c0 = time.perf_counter(), time.process_time()
        report = preprocess_videos(videos_dir, work / "dataset", size=args.size, workers=1, progress=False)
        clock.wall["end to end"], clock.cpu["end to end"] = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"{len(videos)} video(s), {frames} frames at {info.width}x{info.height} -> {args.size}²; "
        f"end to end wrote {report.processed} clip(s)"
    )
    print("\n| stage | frames/s (wall) | frames per CPU-second (per core) | share of CPU |")
    print("|---|---|---|---|")
    staged = sum(v for k, v in clock.cpu.items() if k != "end to end")
    for stage in ("decode", "detect", "crop/resize", "encode", "audio", "end to end"):
        share = "" if stage == "end to end" else f"{clock.cpu[stage] / staged:.0%}"
        print(f"| {stage} | {frames / clock.wall[stage]:.1f} | {frames / clock.cpu[stage]:.1f} | {share} |")


if __name__ == "__main__":
    main()
