"""Stage-1 window sampler: DDIM (or DPM-Solver++) with classifier-free guidance on x0 (spec §3.6), and the optional
S2G-MDDiffusion motion selection between candidate windows (spec §6, released item 3)."""

from __future__ import annotations

import inspect
from typing import Protocol

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from mmgt.diffusion.guidance import cfg_combine, guidance_enabled
from mmgt.diffusion.schedulers import use_float64_schedule
from mmgt.errors import MmgtError


class X0Denoiser(Protocol):
    """What the sampler needs from a stage-1 model (``GestureDenoiser`` satisfies it)."""

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        cond_pose: torch.Tensor,
        audio: torch.Tensor,
        drop_audio: torch.Tensor | None = None,
    ) -> torch.Tensor: ...


@torch.no_grad()
def sample_window(
    model: X0Denoiser,
    scheduler: SchedulerMixin,
    cond_pose: torch.Tensor,
    audio: torch.Tensor,
    num_inference_steps: int,
    guidance_scale: float,
    eta: float,
    generator: torch.Generator | list[torch.Generator] | None = None,
) -> torch.Tensor:
    """Sample one keypoint window x0 ~ p(x0 | p0, audio).

    Each step evaluates D_c and D_∅ in one batched call of 2B (the second half with ``drop_audio=True``), combines
    them on x0 with ``cfg_combine``, clips to [-1, 1] and lets the scheduler step (a DDIM scheduler with
    ``prediction_type="sample"`` recovers eps from the clipped x0 itself, as the official sampler does). The model
    is used as it is: call ``model.eval()`` first, or dropout stays active.

    Args:
        model: stage-1 x0 denoiser, e.g. ``GestureDenoiser``.
        scheduler: ``make_stage1_scheduler()`` (DDIM) or ``make_stage1_dpm_scheduler()``; ``set_timesteps`` is
            called here, so the scheduler's state is reset.
        cond_pose: (B, K, 3) normalised pose of the frame before the window.
        audio: (B, F, D) per-frame audio features of the window.
        num_inference_steps: denoising steps (official: 50; the defaults live in
            :mod:`mmgt.pipelines.sampling_defaults`).
        guidance_scale: CFG weight w (official: 2); 1 skips the unconditional pass (:func:`guidance_enabled`).
        eta: DDIM noise weight (official: 1); only passed to schedulers whose ``step`` accepts it.
        generator: seeds the initial noise and the DDIM step noise.

    Returns:
        (B, F, K, 3) sampled keypoints in [-1, 1].
    """
    if cond_pose.ndim != 3 or cond_pose.shape[-1] != 3:
        raise MmgtError(f"cond_pose must have shape (B, K, 3), got {tuple(cond_pose.shape)}")
    if audio.ndim != 3 or audio.shape[0] != cond_pose.shape[0]:
        raise MmgtError(f"audio must have shape ({cond_pose.shape[0]}, F, D), got {tuple(audio.shape)}")
    if num_inference_steps < 1:
        raise MmgtError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    batch, frames, num_keypoints = audio.shape[0], audio.shape[1], cond_pose.shape[1]
    device, dtype = cond_pose.device, cond_pose.dtype

    use_float64_schedule(scheduler)  # avoids NaN from float32 rounding in DDIM's eta = 1 step at t = 999
    scheduler.set_timesteps(num_inference_steps, device=device)
    step_kwargs = _step_kwargs(scheduler, eta, generator)
    guided = guidance_enabled(guidance_scale)
    # D_c on the first half of the batch, D_∅ (null audio) on the second.
    drop = torch.arange(2 * batch if guided else batch, device=device) >= batch  # (2B,) or (B,)
    cond_pose_in, audio_in = (torch.cat([cond_pose] * 2), torch.cat([audio] * 2)) if guided else (cond_pose, audio)

    shape = (batch, frames, num_keypoints, 3)
    x = randn_tensor(shape, generator=generator, device=device, dtype=dtype) * scheduler.init_noise_sigma  # x_T
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)  # identity for DDIM / DPM-Solver++
        x_in = torch.cat([x_in] * 2) if guided else x_in
        x0 = model(x_in, t.expand(x_in.shape[0]), cond_pose_in, audio_in, drop_audio=drop)  # (2B, F, K, 3)
        if guided:
            x0_cond, x0_uncond = x0.chunk(2)
            x0 = cfg_combine(x0_uncond, x0_cond, guidance_scale)  # Paper/official: CFG on x̂0, w = 2
        x0 = x0.clamp(-1.0, 1.0)
        x = scheduler.step(x0, t, x, **step_kwargs).prev_sample  # (B, F, K, 3)
    return x


def _step_kwargs(scheduler: SchedulerMixin, eta: float, generator) -> dict:
    """Pass ``eta``/``generator`` only to schedulers whose ``step`` takes them (DPM-Solver++ has no eta)."""
    accepted = inspect.signature(scheduler.step).parameters
    kwargs = {"eta": eta} if "eta" in accepted else {}
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs


def select_motion(candidates: torch.Tensor, previous_tail: torch.Tensor, span: int = 5) -> torch.Tensor:
    """Pick, per batch item, the candidate window that continues the previous one best (S2G-MDDiffusion/official).

    score = Σ |cand[:span] - prev[-span:]| (all channels, as the official frame vectors)
          + mean over keypoints of the angle between the mean (x, y) velocities of those two spans.
    The angle is ``atan2(|cross|, dot)`` in [0, π], so a point at rest in either span scores 0.

    Args:
        candidates: (k, B, F, K, 3) candidate windows, F >= span.
        previous_tail: (B, n, K, 3) the end of the previous window, n >= span.
        span: frames compared on each side (official: 5).

    Returns:
        (B,) long tensor: index into ``candidates`` of the lowest score for each batch item.
    """
    if candidates.ndim != 5 or previous_tail.ndim != 4 or candidates.shape[1] != previous_tail.shape[0]:
        raise MmgtError(
            f"candidates (k, B, F, K, 3) and previous_tail (B, n, K, 3) do not match: "
            f"{tuple(candidates.shape)} vs {tuple(previous_tail.shape)}"
        )
    if span < 2 or candidates.shape[2] < span or previous_tail.shape[1] < span:
        raise MmgtError(f"select_motion span={span} needs span >= 2 and at least span frames on both sides")
    cand = candidates[:, :, :span]  # (k, B, span, K, 3): the start of each candidate
    prev = previous_tail[:, -span:]  # (B, span, K, 3): the end of the previous window
    position = (cand - prev).abs().sum(dim=(2, 3, 4))  # (k, B)
    cand_vel = cand[..., :2].diff(dim=2).mean(dim=2)  # (k, B, K, 2)
    prev_vel = prev[..., :2].diff(dim=1).mean(dim=1)  # (B, K, 2)
    cross = cand_vel[..., 0] * prev_vel[..., 1] - cand_vel[..., 1] * prev_vel[..., 0]  # (k, B, K)
    dot = (cand_vel * prev_vel).sum(dim=-1)  # (k, B, K)
    angle = torch.atan2(cross.abs(), dot).mean(dim=-1)  # (k, B)
    return (position + angle).argmin(dim=0)  # (B,)
