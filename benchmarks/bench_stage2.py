"""Stage-2 sampling cost on CPU: seconds per frame for one denoising step, and peak memory versus video length.

Usage:
    python benchmarks/bench_stage2.py speed [--configs tiny:128:12 sd15:256:2 sd15:512:2]
    python benchmarks/bench_stage2.py memory [--model DIR] [--seconds 6 60] [--size 128]

``speed`` builds random-init components of each preset (the cost does not depend on the weights) and times
one ``PoseToVideoPipeline`` call with one DDIM step and CFG (2 branches) on F frames in one window, everything
included, divided by F. For ``tiny`` it also times a 2-step call after a warm-up: the difference is one denoising
step (UNet on both branches, pose guider, masks, audio projection), the rest is paid once per video (VAE encode,
CLIP, ReferenceNet, VAE decode); a video costs about F x (steps x step + once). ``memory`` streams 6 s and
60 s of poses and audio through the pipeline (frames go to a callback, as ``mmgt pose2video`` writes them) and
compares the peak RSS. Each configuration runs in a fresh subprocess (peak RSS is per process).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, numpy as np, torch
from mmgt.audio.features import feature_spec
from mmgt.constants import NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.diffusion.stage2 import make_stage2_scheduler
from mmgt.models.denoising_unet import build_denoising_unet
from mmgt.models.stage2_presets import build_components
from mmgt.pipelines.pose_to_video import PoseToVideoPipeline
from mmgt.utils.audio_io import Audio
name, size, frames, steps, model_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.manual_seed(0)
if model_dir:
    pipe = PoseToVideoPipeline.from_pretrained(model_dir)
else:
    spec = feature_spec(None, stage=2)
    parts = build_components(name, audio_spec=spec)
    unet = build_denoising_unet(parts.pop("unet"), parts.pop("motion_adapter"))
    pipe = PoseToVideoPipeline(vae=parts["vae"], image_encoder=parts["image_encoder"],
                               reference_unet=parts["reference_unet"], unet=unet, pose_guider=parts["pose_guider"],
                               audio_projection=parts["audio_projection"], audio_adapter=parts["audio_adapter"],
                               scheduler=make_stage2_scheduler(), audio_features=spec)
    for m in pipe.components.values():
        if isinstance(m, torch.nn.Module):
            m.eval()
rng = np.random.default_rng(0)
base = rng.uniform(0.3 * size, 0.7 * size, (NUM_KEYPOINTS, 2))
kp = base[None] + np.sin(np.arange(frames) / 5)[:, None, None] * 0.02 * size
poses = PoseSequence(kp.astype(np.float32), np.ones((frames, NUM_KEYPOINTS), np.float32), size, size)
t = np.arange(frames * 640) / 16000
wave = (0.3 * np.sin(2 * np.pi * 160 * t) * (np.sin(2 * np.pi * 2.5 * t) > 0)).astype(np.float32)
image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
window, overlap = (frames, 0) if frames <= 16 else (12, 4)


def run(num_steps):
    count = []
    start = time.perf_counter()
    pipe(image, poses, Audio(wave, 16000), num_inference_steps=num_steps, progress=False,
         window_frames=window, overlap=overlap, frame_callback=lambda chunk: count.append(len(chunk)))
    return sum(count), time.perf_counter() - start


if steps > 0:
    frames_out, elapsed = run(steps)
    result = {"frames": frames_out, "seconds": elapsed}
elif name == "tiny":  # speed: a warm-up call, then 1 and 2 steps; their difference is one denoising step
    run(1)
    frames_out, one = run(1)
    _, two = run(2)
    result = {"frames": frames_out, "one_step_s": one, "step_s": two - one, "fixed_s": 2 * one - two}
else:  # full size: one call with one step (a second call would take minutes more on CPU)
    frames_out, one = run(1)
    result = {"frames": frames_out, "one_step_s": one}
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def _child(name: str, size: int, frames: int, steps: int, model: str = "") -> dict:
    res = subprocess.run(
        [sys.executable, "-c", CHILD, name, str(size), str(frames), str(steps), model], capture_output=True, text=True
    )
    if res.returncode:
        raise SystemExit(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def speed(configs: list[str]) -> None:
    print(
        "| preset | size | frames | s/frame, one-step call | s/frame per extra step (CFG, 2 branches) | s/frame "
        "once (ReferenceNet, encode, decode) | peak RSS (GB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for config in configs:
        name, size, frames = config.split(":")
        row = _child(name, int(size), int(frames), 0)
        n = row["frames"]
        extra = [f"{row[k] / n:.3f}" if k in row else "–" for k in ("step_s", "fixed_s")]
        print(
            f"| {name} | {size}² | {n} | {row['one_step_s'] / n:.2f} | {extra[0]} | {extra[1]} | "
            f"{row['peak_rss_mb'] / 1024:.2f} |",
            flush=True,
        )


def memory(model: str, seconds: list[float], size: int, steps: int) -> None:
    print("| audio + poses (s) | frames | wall (s) | peak RSS (MB) |")
    print("|---|---|---|---|")
    rows = []
    for s in seconds:
        row = _child("tiny", size, int(round(s * 25)), steps, model)
        rows.append(row)
        print(f"| {s:g} | {row['frames']} | {row['seconds']:.0f} | {row['peak_rss_mb']:.0f} |", flush=True)
    print(f"peak RSS ratio longest/shortest: {rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("speed", help="s/frame for one step per preset and size")
    p.add_argument(
        "--configs", nargs="+", default=["tiny:128:12", "sd15:256:2", "sd15:512:2"], help="preset:size:frames entries"
    )
    p = sub.add_parser("memory", help="peak RSS of a short and a long streamed video")
    p.add_argument("--model", default="", help="stage-2 pipeline folder (default: random-init tiny)")
    p.add_argument("--seconds", nargs="+", type=float, default=[6.0, 60.0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=1)
    args = parser.parse_args()
    if args.mode == "speed":
        speed(args.configs)
    else:
        memory(args.model, args.seconds, args.size, args.steps)


if __name__ == "__main__":
    main()
