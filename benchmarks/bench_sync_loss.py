"""What the lip-sync term costs the stage-2 video step: seconds per step and peak RSS, with and without it.

Usage:
    python benchmarks/bench_sync_loss.py --data synth-data --expert runs/syncnet/tiny/final [--weights 0 0.05]
        [--steps 20] [--config configs/stage2/tiny_video.yaml] [--threads 1]

Each weight runs in a fresh subprocess (peak RSS is per process): random-init components of the config's preset
(the cost does not depend on the weights), the config's video-step batch (size, frames), and the training step of
``mmgt train stage2 --step video`` — frozen encoders, :func:`mmgt.training.stage2_objective.stage2_loss`, backward
and an AdamW step. The median step time leaves out the first 3 steps (clip decoding, allocator warm-up).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = r"""
import json, resource, statistics, sys, time, torch
from mmgt.audio.features import feature_spec
from mmgt.config import Stage2Train, load_config
from mmgt.data.stage2_dataset import Stage2VideoDataset
from mmgt.diffusion.stage2 import make_stage2_scheduler
from mmgt.models.denoising_unet import build_denoising_unet
from mmgt.models.stage2_presets import build_audio_modules, build_components
from mmgt.training.common import build_optimizer, collate, step_generator
from mmgt.training.stage2_components import build_trainee
from mmgt.training.stage2_objective import SyncTerm, encode_batch, stage2_loss
config, root, expert, weight, steps, threads = sys.argv[1:7]
torch.set_num_threads(int(threads))
overrides = [f"data.root={root}", f"objective.sync_loss_weight={weight}", f"objective.sync_expert={expert}"]
cfg = load_config(Stage2Train, config, overrides)
spec = feature_spec(None, stage=2)
torch.manual_seed(0)
parts = build_components(cfg.preset, audio_spec=spec)
parts["unet"] = build_denoising_unet(parts["unet"], parts["motion_adapter"])
parts["audio_projection"], parts["audio_adapter"] = build_audio_modules(cfg.preset, parts["unet"], spec)
trainee = build_trainee(cfg, parts).train()
vae, clip = parts["vae"], parts["image_encoder"]
data = Stage2VideoDataset(root, "train", cfg.data.size, cfg.data.num_frames, None, 0, cfg.data.samples_per_clip)
records = data.records
sync = SyncTerm.load(expert, vae, root, records, cfg.data.size) if float(weight) > 0 else None
optimizer = build_optimizer(trainee.parameters(), "adamw", 1e-4)
scheduler, times = make_stage2_scheduler(), []
for step in range(int(steps)):
    start = time.perf_counter()
    gen = step_generator(0, step)
    batch = collate([data[step % len(data)]])
    inputs = encode_batch(batch, vae, clip, gen) | (sync.batch_inputs(batch) if sync else {})
    losses = stage2_loss(trainee, scheduler, inputs, gen, cfg, torch.device("cpu"), sync=sync)
    losses["loss"].backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    times.append(time.perf_counter() - start)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"weight": float(weight), "step_s": statistics.median(times[3:]), "peak_rss_mb": round(peak),
                  "frames": cfg.data.num_frames, "size": cfg.data.size, "steps": int(steps)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset folder (mmgt format)")
    parser.add_argument("--expert", required=True, help="a `mmgt train syncnet` export")
    parser.add_argument("--config", default="configs/stage2/tiny_video.yaml")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.05])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for weight in args.weights:
        argv = [args.config, args.data, args.expert, str(weight), str(args.steps), str(args.threads)]
        out = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
