"""Stage-1 sampling speed: seconds of compute per second of audio for the tiny and paper SMGA presets.

Usage: python benchmarks/bench_stage1.py [--presets tiny paper] [--steps 50 25 10] [--seconds 6.4] [--threads 2]

Random-init weights (speed does not depend on the values). The audio features are computed once, outside the timing,
so the table measures the denoiser + scheduler loop of the any-length sampler (CFG on, 2B batch per step). The
paper preset uses the 1059-d WavLM+librosa audio width; tiny the 116-d mel fallback.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mmgt.constants import FPS, NUM_KEYPOINTS
from mmgt.diffusion.stage1 import make_stage1_scheduler, sample_window
from mmgt.models.gesture_denoiser import GestureDenoiser
from mmgt.pipelines.sampling_defaults import PoseSampling

AUDIO_DIM = {"tiny": 116, "paper": 1059}


SPEC = PoseSampling()  # the spec's guidance and eta (mmgt.pipelines.sampling_defaults)


def bench(preset: str, steps: int, seconds: float) -> float:
    """Seconds of sampling per second of audio."""
    model = GestureDenoiser.from_preset(preset, audio_dim=AUDIO_DIM[preset]).eval()
    window = model.config.window_frames
    num_windows = -(-int(round(seconds * FPS)) // window)
    scheduler = make_stage1_scheduler()
    scheduler.set_timesteps(steps)
    cond = torch.zeros(1, NUM_KEYPOINTS, 3)
    audio = torch.randn(1, window, AUDIO_DIM[preset])
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(num_windows):
        cond = sample_window(model, scheduler, cond, audio, steps, SPEC.guidance_scale, SPEC.eta, gen)[:, -1]
    return (time.perf_counter() - start) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "paper"])
    parser.add_argument("--steps", nargs="+", type=int, default=[50, 25, 10])
    parser.add_argument("--seconds", type=float, default=6.4, help="audio length (default 6.4 s = 2 windows)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU, {args.seconds} s of audio")
    print("| preset | steps | s per s of audio | real-time factor |")
    print("|---|---|---|---|")
    for preset in args.presets:
        for steps in args.steps:
            cost = bench(preset, steps, args.seconds)
            print(f"| {preset} | {steps} | {cost:.3f} | {1 / cost:.1f}x |", flush=True)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
