"""Sanity of FID and FVD with the real weights: a real set against an independent real set, a blurred copy and a
temporally shuffled copy (docs/evaluation.md).

    python benchmarks/eval_sanity.py DATASET [--clips 16] [--fid-stride 4] [--fvd-clips N] [--blur 2.0]

The reference set is the dataset's ``val`` split, the evaluated set its ``test`` split (different clips of the same
speakers). Expected: FID and FVD of real vs independent real far below real vs blurred; FVD of real vs shuffled far
above real vs real, while FID barely moves (it sees frames, not their order). Prints a Markdown table and the seconds
each feature pass took.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from mmgt.data.manifest import read_manifest
from mmgt.evaluation import weight_files as wf
from mmgt.evaluation.frechet import frechet_distance_from_features
from mmgt.evaluation.i3d import i3d_features, load_i3d, video_clips
from mmgt.evaluation.inception import inception_features, load_inception
from mmgt.utils.video_io import read_video_frames


def _blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])


def _shuffle(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return frames[rng.permutation(len(frames))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--fid-stride", type=int, default=4)
    parser.add_argument("--fvd-clips", type=int, default=None, help="FVD on the first N 16-frame clips of each video")
    parser.add_argument("--blur", type=float, default=2.0, help="Gaussian blur sigma in px")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    inception = load_inception(wf.locate(wf.INCEPTION))
    i3d = load_i3d(wf.locate(wf.I3D_TFHUB))
    rng = np.random.default_rng(0)
    sets = {"real (test)": [], "independent real (val)": [], "blurred": [], "shuffled": []}
    for split, names in (("test", ("real (test)", "blurred", "shuffled")), ("val", ("independent real (val)",))):
        for record in read_manifest(args.dataset, split)[: args.clips]:
            frames = read_video_frames(record.path(args.dataset, "video"))
            variants = {"blurred": _blur(frames, args.blur), "shuffled": _shuffle(frames, rng)}
            for name in names:
                sets[name].append(variants.get(name, frames))

    features, seconds = {}, {}
    for name, clips in sets.items():
        start = time.perf_counter()
        fid = np.concatenate([inception_features(inception, c[:: args.fid_stride]) for c in clips])
        mid = time.perf_counter()
        fvd = np.concatenate([i3d_features(i3d, video_clips(c)[: args.fvd_clips]) for c in clips])
        features[name] = (fid, fvd)
        seconds[name] = (mid - start, time.perf_counter() - mid)
        took = f"{len(fid)} FID frames in {seconds[name][0]:.0f} s, {len(fvd)} FVD clips in {seconds[name][1]:.0f} s"
        print(f"{name}: {len(clips)} clips, {took}", flush=True)

    reference = features["independent real (val)"]
    print("\n| set vs independent real (val) | FID | FVD (TF-Hub I3D) |\n|---|---|---|")
    for name in ("real (test)", "blurred", "shuffled"):
        fid = frechet_distance_from_features(features[name][0], reference[0])
        fvd = frechet_distance_from_features(features[name][1], reference[1])
        print(f"| {name} | {fid:.2f} | {fvd:.2f} |")


if __name__ == "__main__":
    main()
