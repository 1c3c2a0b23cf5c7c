"""The GPU benchmark of the kit: stage-2 sampling speed and memory at 512² and stage-1 at paper size, one table.

Run by ``run_kit.sh`` after the offline install (or directly in an environment with mmgt installed):

    python bench_gpu.py                 # CUDA: sd15 at 512², fp16 and bf16, 12 frames, 30 DDIM steps, CFG
    python bench_gpu.py --cpu-fallback  # no GPU: tiny preset at 64², 2 steps (checks the code path, not speed)

Stage 2 builds random-init ``sd15`` components (speed and memory do not depend on the weights) into the real
``PoseToVideoPipeline`` and times one call on one 12-frame window, after a one-step warm-up call: once with
``output_type="latent"`` (no VAE decode) and once with the decoded frames. "s per output frame" is the call's wall
time over the 12 frames; peak GPU memory is ``torch.cuda.max_memory_allocated`` of that call. Stage 1 times the
any-length sampler of the ``paper`` SMGA preset (73.6 M parameters, 1059-d audio features, CFG, 50 DDIM steps) on
6.4 s of audio. A markdown table for docs/performance.md is printed at the end (and written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from mmgt.audio.features import feature_spec
from mmgt.constants import FPS, NUM_KEYPOINTS
from mmgt.contracts import PoseSequence
from mmgt.diffusion.stage1 import make_stage1_scheduler, sample_window
from mmgt.diffusion.stage2 import make_stage2_scheduler
from mmgt.models.denoising_unet import build_denoising_unet
from mmgt.models.gesture_denoiser import GestureDenoiser
from mmgt.models.stage2_presets import build_components
from mmgt.pipelines.pose_to_video import PoseToVideoPipeline
from mmgt.pipelines.sampling_defaults import PoseSampling
from mmgt.utils.audio_io import Audio

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
STAGE1_AUDIO_DIM = {"tiny": 116, "paper": 1059}  # mel fallback; WavLM + librosa (spec §3.3)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def stage2_pipeline(preset: str, device: torch.device, dtype: torch.dtype) -> PoseToVideoPipeline:
    """Random-init components of ``preset`` in the real pipeline, on ``device`` in ``dtype``."""
    torch.manual_seed(0)
    spec = feature_spec(None, stage=2)
    parts = build_components(preset, audio_spec=spec)
    unet = build_denoising_unet(parts.pop("unet"), parts.pop("motion_adapter"))
    pipe = PoseToVideoPipeline(
        vae=parts["vae"],
        image_encoder=parts["image_encoder"],
        reference_unet=parts["reference_unet"],
        unet=unet,
        pose_guider=parts["pose_guider"],
        audio_projection=parts["audio_projection"],
        audio_adapter=parts["audio_adapter"],
        scheduler=make_stage2_scheduler(),
        audio_features=spec,
    )
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.to(device, dtype).eval()
    return pipe


def stage2_inputs(size: int, frames: int) -> tuple[np.ndarray, PoseSequence, Audio]:
    """A random reference image, a gently moving skeleton and a voiced tone (the cost does not depend on them)."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3 * size, 0.7 * size, (NUM_KEYPOINTS, 2))
    kp = base[None] + np.sin(np.arange(frames) / 5)[:, None, None] * 0.02 * size
    poses = PoseSequence(kp.astype(np.float32), np.ones((frames, NUM_KEYPOINTS), np.float32), size, size)
    t = np.arange(frames * 640) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 160 * t) * (np.sin(2 * np.pi * 2.5 * t) > 0)).astype(np.float32)
    return rng.integers(0, 255, (size, size, 3), dtype=np.uint8), poses, Audio(wave, 16000)


def bench_stage2(preset: str, size: int, frames: int, steps: int, dtype: str, device: torch.device) -> list[dict]:
    """Two rows (without and with the VAE decode) of s per output frame and peak GPU memory."""
    pipe = stage2_pipeline(preset, device, DTYPES[dtype])
    image, poses, audio = stage2_inputs(size, frames)
    kw = dict(num_inference_steps=steps, window_frames=frames, overlap=0, progress=False)
    with torch.inference_mode():
        pipe(image, poses, audio, **{**kw, "num_inference_steps": 1}, output_type="latent")  # warm-up (kernels)
        rows = []
        for output_type in ("latent", "np"):
            reset_peak(device)
            sync(device)
            start = time.perf_counter()
            pipe(image, poses, audio, **kw, output_type=output_type)
            sync(device)
            elapsed = time.perf_counter() - start
            rows.append(
                {
                    "stage": "2",
                    "preset": preset,
                    "size": size,
                    "frames": frames,
                    "steps": steps,
                    "dtype": dtype,
                    "vae_decode": output_type == "np",
                    "s_per_frame": elapsed / frames,
                    "peak_gb": peak_gb(device),
                }
            )
    del pipe
    return rows


def bench_stage1(preset: str, steps: int, seconds: float, dtype: str, device: torch.device) -> dict:
    """Seconds of sampling per second of audio (the denoiser + scheduler loop; features precomputed)."""
    torch.manual_seed(0)
    model = GestureDenoiser.from_preset(preset, audio_dim=STAGE1_AUDIO_DIM[preset]).to(device, DTYPES[dtype]).eval()
    window = model.config.window_frames
    windows = -(-round(seconds * FPS) // window)
    sampling = PoseSampling()
    scheduler = make_stage1_scheduler()
    scheduler.set_timesteps(steps)
    audio = torch.randn(1, window, STAGE1_AUDIO_DIM[preset]).to(device, DTYPES[dtype])
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        cond = torch.zeros(1, NUM_KEYPOINTS, 3, device=device, dtype=DTYPES[dtype])
        sample_window(model, scheduler, cond, audio, 1, sampling.guidance_scale, sampling.eta, gen)  # warm-up
        reset_peak(device)
        sync(device)
        start = time.perf_counter()
        for _ in range(windows):
            out = sample_window(model, scheduler, cond, audio, steps, sampling.guidance_scale, sampling.eta, gen)
            cond = out[:, -1]
        sync(device)
    elapsed = time.perf_counter() - start
    return {
        "stage": "1",
        "preset": preset,
        "steps": steps,
        "dtype": dtype,
        "seconds": seconds,
        "s_per_s_audio": elapsed / seconds,
        "peak_gb": peak_gb(device),
    }


def table(rows: list[dict], device_name: str) -> str:
    lines = [f"Device: {device_name}; torch {torch.__version__}; Python {platform.python_version()}.", ""]
    lines += [
        "| stage | preset | size | frames | steps | dtype | VAE decode | s per output frame | peak GPU memory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mem = "–" if r["peak_gb"] is None else f"{r['peak_gb']:.2f} GiB"
        if r["stage"] == "2":
            lines.append(
                f"| 2 | {r['preset']} | {r['size']}² | {r['frames']} | {r['steps']} | {r['dtype']} | "
                f"{'yes' if r['vae_decode'] else 'no'} | {r['s_per_frame']:.3f} | {mem} |"
            )
    lines += [
        "",
        "| stage | preset | steps | dtype | audio (s) | s of sampling per s of audio | peak GPU memory |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mem = "–" if r["peak_gb"] is None else f"{r['peak_gb']:.2f} GiB"
        if r["stage"] == "1":
            lines.append(
                f"| 1 | {r['preset']} | {r['steps']} | {r['dtype']} | {r['seconds']} | "
                f"{r['s_per_s_audio']:.3f} | {mem} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-fallback", action="store_true", help="tiny sizes and 2 steps on the CPU")
    parser.add_argument("--dtypes", nargs="+", default=None, help="default: fp16 bf16 (CUDA), fp32 (CPU fallback)")
    parser.add_argument("--out", type=Path, help="also write the table (.md) and the rows (.json) here")
    args = parser.parse_args()
    if args.cpu_fallback:
        device, name = torch.device("cpu"), f"CPU fallback ({platform.processor() or platform.machine()})"
        s2, s1 = dict(preset="tiny", size=64, frames=4, steps=2), dict(preset="tiny", steps=2, seconds=3.2)
        dtypes = args.dtypes or ["fp32"]
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: pass --cpu-fallback to check the code path on the CPU")
        device, name = torch.device("cuda"), torch.cuda.get_device_name(0)
        s2, s1 = dict(preset="sd15", size=512, frames=12, steps=30), dict(preset="paper", steps=50, seconds=6.4)
        dtypes = args.dtypes or ["fp16", "bf16"]
    rows = []
    for dtype in dtypes:
        rows += bench_stage2(s2["preset"], s2["size"], s2["frames"], s2["steps"], dtype, device)
        print(json.dumps(rows[-2:]), flush=True)
    for dtype in dtypes:
        rows.append(bench_stage1(s1["preset"], s1["steps"], s1["seconds"], dtype, device))
        print(json.dumps(rows[-1]), flush=True)
    text = table(rows, name)
    print("\n" + text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_bench.md").write_text(text + "\n")
        (args.out / "gpu_bench.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
