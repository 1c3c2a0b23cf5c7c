"""Stage-2 sampling settings against quality: sampler, steps and guidance interval on held-out synthetic clips.

Usage:
    python benchmarks/bench_stage2_samplers.py ddim:12 dpmpp_2m:6 unipc:6:0.3-1 [--seeds 0 100] [--clips 16]

Each spec is ``sampler:steps`` or ``sampler:steps:lo-hi`` (the guidance interval, as a fraction of the training
timesteps; default 0-1: guidance at every step, whatever the model's default). The bundled demo model (or
``--model``) regenerates the first ``--clips`` clips of the ``test`` split of ``--data`` (held-out synthetic clips of
the demo's training world, scored on their first ``--frames`` frames) with speech, one run per seed; each run prints
one JSON line: the spec, the seed, the wall time and the mean PSNR, SSIM and mouth r
(:func:`mmgt.training.validate_stage2.evaluate_stage2`), plus the per-clip values for paired comparisons. The seed
changes the initial noise of every clip: two seeds of the same settings give the run-to-run noise that a change of
settings has to be compared with.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from mmgt.app.demo import demo_assets
from mmgt.pipelines.pose_to_video import PoseToVideoPipeline
from mmgt.training.validate_stage2 import evaluate_stage2

METRICS = ("psnr", "ssim", "mouth_r")


def parse_spec(spec: str) -> dict:
    """``sampler:steps[:lo-hi]`` -> pipeline sampling overrides (the interval 0-1 when not given)."""
    parts = spec.split(":")
    lo, hi = (parts[2] if len(parts) > 2 else "0-1").split("-")
    return {"sampler": parts[0], "num_inference_steps": int(parts[1]), "guidance_interval": (float(lo), float(hi))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("specs", nargs="+", help="sampler:steps[:lo-hi]")
    p.add_argument("--model", default=None, help="stage-2 pipeline folder (default: the bundled demo's)")
    p.add_argument("--data", default="/work/data/s2data", help="dataset with a test split of held-out clips")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--frames", type=int, default=48, help="frames scored per clip")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 100])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    pipe = PoseToVideoPipeline.from_pretrained(args.model or demo_assets().model / "stage2")
    pipe.set_progress_bar_config(disable=True)
    saved = pipe.sampling
    for spec in args.specs:
        pipe.set_sampling(**parse_spec(spec))
        for seed in args.seeds:
            start = time.perf_counter()
            result = evaluate_stage2(
                pipe, args.data, "test", args.clips, args.frames, args.size, ("audio",), seed=seed
            )
            mean = result["mean"]["audio"]
            per_clip = {m: [round(r[m], 5) for r in result["per_clip"]["audio"]] for m in METRICS}
            row = {"spec": spec, "seed": seed, "s": round(time.perf_counter() - start, 1)}
            print(json.dumps({**row, **{m: round(mean[m], 5) for m in METRICS}, "per_clip": per_clip}), flush=True)
        pipe.register_to_config(**saved.to_dict())


if __name__ == "__main__":
    main()
