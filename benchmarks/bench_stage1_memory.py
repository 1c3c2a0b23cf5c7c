"""Stage-1 memory versus audio length: peak RSS of the any-length sampler for 6 s and 60 s of audio.

Usage: python benchmarks/bench_stage1_memory.py [--model DIR] [--seconds 6 60] [--steps 10]

Each length runs in a fresh subprocess (peak RSS is per process). Without --model a random-init tiny SMGA is used
(memory does not depend on the weights). Prints frames produced and peak RSS; the output array itself is
T x 134 x 3 float32 (1.6 MB for 60 s), so the two peaks should be nearly equal.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, numpy as np, torch
from mmgt.audio.features import feature_spec, stage1_feature_dim
from mmgt.constants import NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.diffusion.stage1 import make_stage1_scheduler
from mmgt.models.gesture_denoiser import GestureDenoiser
from mmgt.pipelines.audio_to_pose import AudioToPosePipeline
seconds, steps, model_dir = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if model_dir:
    pipe = AudioToPosePipeline.from_pretrained(model_dir)
else:
    model = GestureDenoiser.from_preset("tiny", audio_dim=stage1_feature_dim(None)).eval()
    pipe = AudioToPosePipeline(model, make_stage1_scheduler(), feature_spec(None))
rng = np.random.default_rng(0)
t = np.arange(int(seconds * 16000)) / 16000
wave = (0.3 * np.sin(2 * np.pi * 160 * t) * (np.sin(2 * np.pi * 2.5 * t) > 0)).astype(np.float32)
ref = PoseSequence(rng.uniform(150, 350, (1, NUM_KEYPOINTS, 2)), np.ones((1, NUM_KEYPOINTS)), 512, 512)
out = pipe(wave, 16000, ref, num_inference_steps=steps, progress=False)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"frames": out.poses.num_frames, "peak_rss_mb": peak_mb}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="stage-1 pipeline folder (default: random-init tiny)")
    parser.add_argument("--seconds", nargs="+", type=float, default=[6.0, 60.0])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print("| audio (s) | frames | peak RSS (MB) |")
    print("|---|---|---|")
    for seconds in args.seconds:
        res = subprocess.run(
            [sys.executable, "-c", CHILD, str(seconds), str(args.steps), args.model],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"| {seconds:g} | {row['frames']} | {row['peak_rss_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
