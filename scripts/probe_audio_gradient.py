"""How much audio-specific learning signal the video step's lip branch gets, per diffusion-timestep band.

Usage:
    python scripts/probe_audio_gradient.py --config configs/stage2/tiny_video.yaml [--audio-from RUN_DIR] \
        [--samples 40] [overrides ...]

For ``--samples`` random training windows and one timestep drawn in each band, the script takes the plain v-MSE of
the video-step model twice with the same noise: once with the window's own audio and once with its audio frames
shuffled in time. For the weights of the MM-HAA lip branch (every layer's ``adapter``) it reports:

* ``|g|`` — the mean gradient norm with the true audio;
* ``audio share`` — the norm of (true - shuffled) gradient over ``|g|``: the part of the gradient that depends on
  *which* audio frame goes with which video frame, i.e. the only part that can teach lip sync;
* ``R`` — consistency of a gradient across samples, ``|mean g| / mean |g|``; pure noise gives about
  ``1 / sqrt(samples)`` (the ``noise R`` column), a direction every sample agrees on gives 1;
* ``loss gain`` — mean loss with shuffled audio minus with true audio (> 0: the model uses the audio).

Adam moves each weight by about the learning rate per step whatever the gradient's size, so a direction that carries
a fraction ``s`` of the gradient with consistency ``R`` well above the noise floor grows about ``s R N`` steps' worth
in N steps against a ``sqrt(N)`` random walk. ``--audio-from`` loads a video run's (or checkpoint's)
``audio_adapter`` and ``audio_projection`` over the fresh ones; the motion modules stay fresh in every case.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from mmgt.audio.features import feature_spec
from mmgt.config import Stage2Train, load_config
from mmgt.data.stage2_dataset import Stage2VideoDataset
from mmgt.diffusion.stage2 import make_stage2_scheduler, v_target
from mmgt.training.common import collate
from mmgt.training.stage2_components import build_trainee, video_audio_encoder, video_step_components
from mmgt.training.stage2_objective import encode_batch

BANDS = ((0, 250), (250, 500), (500, 750), (750, 1000))
WEIGHTS = "diffusion_pytorch_model.safetensors"


def _lip_gradient(trainee, params, inputs, noisy, timesteps, target, audio, scales) -> tuple[torch.Tensor, float]:
    trainee.zero_grad()
    keep = torch.tensor([True])
    pred = trainee(
        noisy,
        timesteps,
        inputs["ref_latents"],
        inputs["clip_embeds"],
        keep,
        inputs["pose_images"],
        audio,
        keep,
        inputs["branch_masks"],
        scales,
    )
    loss = ((pred - target) ** 2).mean()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in params]).clone(), loss.item()


def _consistency(grads: list[torch.Tensor]) -> float:
    g = torch.stack(grads)
    return (g.mean(0).norm() / g.norm(dim=1).mean()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="a video-step config (init_from must name an image run)")
    parser.add_argument("--audio-from", type=Path, default=None, help="a video run's final/ or checkpoint folder")
    parser.add_argument("--samples", type=int, default=40, help="training windows per band")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.root=synth-data")
    args = parser.parse_args()

    torch.manual_seed(0)
    cfg = load_config(Stage2Train, args.config, overrides=[*args.overrides, "step=video"])
    encoder = video_audio_encoder(cfg)
    parts = video_step_components(cfg, feature_spec(encoder, stage=2))
    trainee = build_trainee(cfg, parts)
    if args.audio_from is not None:
        for name in ("audio_adapter", "audio_projection"):
            getattr(trainee, name).load_state_dict(load_file(args.audio_from / name / WEIGHTS))
    params = [p for n, p in trainee.audio_adapter.named_parameters() if ".lips." in n and n.endswith("adapter.weight")]
    vae, image_encoder, scheduler = parts["vae"].eval(), parts["image_encoder"].eval(), make_stage2_scheduler()
    dataset = Stage2VideoDataset(
        cfg.data.root,
        "train",
        cfg.data.size,
        cfg.data.num_frames,
        encoder,
        cfg.seed,
        cfg.data.samples_per_clip,
        cfg.data.pose_mouth,
    )

    gen = torch.Generator().manual_seed(args.seed)
    stats = {band: {"true": [], "diff": [], "gain": []} for band in BANDS}
    for index in torch.randperm(len(dataset), generator=gen)[: args.samples].tolist():
        with torch.no_grad():
            inputs = encode_batch(collate([dataset[index]]), vae, image_encoder, gen)
        latents, audio = inputs["latents"], inputs["audio"]  # (1, C, F, h, w), (1, F, 5, L, D)
        shuffled = audio[:, torch.randperm(audio.shape[1], generator=gen)]
        for band in BANDS:
            timesteps = torch.randint(*band, (1,), generator=gen)
            noise = torch.randn(latents.shape, generator=gen)
            noisy = scheduler.add_noise(latents, noise, timesteps)
            target = v_target(scheduler, latents, noise, timesteps)
            scales = cfg.objective.branch_weights
            g_true, l_true = _lip_gradient(trainee, params, inputs, noisy, timesteps, target, audio, scales)
            g_shuf, l_shuf = _lip_gradient(trainee, params, inputs, noisy, timesteps, target, shuffled, scales)
            stats[band]["true"].append(g_true)
            stats[band]["diff"].append(g_true - g_shuf)
            stats[band]["gain"].append(l_shuf - l_true)

    print(f"lip-branch adapters, {args.samples} windows per band; noise R = {1 / np.sqrt(args.samples):.3f}")
    print("| timesteps | |g| | R | audio share | audio R | loss gain |")
    print("|---|---|---|---|---|---|")
    for band, s in stats.items():
        norm = torch.stack(s["true"]).norm(dim=1).mean().item()
        share = torch.stack(s["diff"]).norm(dim=1).mean().item() / norm
        print(
            f"| {band[0]}-{band[1]} | {norm:.2e} | {_consistency(s['true']):.3f} | {share:.3f} | "
            f"{_consistency(s['diff']):.3f} | {np.mean(s['gain']):+.2e} |"
        )


if __name__ == "__main__":
    main()
