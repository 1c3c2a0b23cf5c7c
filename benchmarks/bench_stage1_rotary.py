"""Held-out SMGA denoising loss of trained stage-1 models: compares the ``rotary`` options (docs/stage1.md).

Usage: python benchmarks/bench_stage1_rotary.py --data s1data --split test MODEL_FOLDER [MODEL_FOLDER ...]

Every window of the split (80 frames, stride 40) is noised at the same timesteps with the same noise for every
model, and the conditional x0 prediction is scored with the training loss (``smga_loss``, face terms x3). The
models must share a feature recipe (the first one's is used) and normalisation.
"""

from __future__ import annotations

import argparse

import torch

from mmgt.data.stage1_dataset import Stage1Dataset
from mmgt.diffusion.stage1 import smga_loss
from mmgt.pipelines.audio_to_pose import AudioToPosePipeline

TIMESTEPS = (50, 200, 400, 600, 800, 950)


@torch.no_grad()
def heldout_losses(pipe: AudioToPosePipeline, dataset: Stage1Dataset, seed: int = 0) -> dict[int, float]:
    """Mean SMGA loss per timestep over all windows of ``dataset`` (conditional prediction, eval mode)."""
    model, alphas_cumprod = pipe.denoiser.eval(), pipe.scheduler.alphas_cumprod.float()
    totals = dict.fromkeys(TIMESTEPS, 0.0)
    for i in range(len(dataset)):
        item = dataset[i]
        x0, cond, audio = item["motion"][None], item["cond_pose"][None], item["audio"][None]
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed + i))
        for t in TIMESTEPS:
            a = alphas_cumprod[t]
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
            pred = model(x_t, torch.tensor([t]), cond, audio, drop_audio=torch.tensor([False]))
            totals[t] += smga_loss(pred, x0, model.config.face_indices)["loss"].item()
    return {t: total / len(dataset) for t, total in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipes = [AudioToPosePipeline.from_pretrained(m) for m in args.models]
    cfg = pipes[0].config
    dataset = Stage1Dataset(
        args.data,
        args.split,
        window_frames=pipes[0].denoiser.config.window_frames,
        stride_frames=40,
        target_offset=cfg.target_offset,
        normalize_scores=cfg.normalize_scores,
    )
    print(f"{len(dataset)} {args.split} windows; SMGA loss of the conditional x0 prediction at each timestep")
    print("| model | rotary | " + " | ".join(f"t={t}" for t in TIMESTEPS) + " | mean |")
    print("|---|---|" + "---|" * (len(TIMESTEPS) + 1))
    for folder, pipe in zip(args.models, pipes):
        losses = heldout_losses(pipe, dataset)
        cells = " | ".join(f"{v:.3e}" for v in losses.values())
        mean = sum(losses.values()) / len(losses)
        print(f"| {folder} | {pipe.denoiser.config.rotary} | {cells} | {mean:.3e} |", flush=True)


if __name__ == "__main__":
    main()
