"""Stage-1 (SMGA) diffusion: the noise schedule, the training loss and the window sampler (spec §3.5-3.6).

* Schedule: diffusers' DDIM (and DPM-Solver++) configured as official SMGA. There is no hand-written
  Gaussian-diffusion class: training noises with ``scheduler.add_noise`` and sampling steps with ``scheduler.step``;
  ``tests/diffusion/test_schedule_parity.py`` proves the schedule equals the closed form.
* Loss: position, velocity and acceleration MSE, plus the same three on the face, x3 (spec §3.5).
* Sampler: DDIM (or DPM-Solver++) with classifier-free guidance on x0 (spec §3.6), and the optional S2G-MDDiffusion
  motion selection between candidate windows (spec §6, released item 3).

Stage 2's counterpart is :mod:`mmgt.diffusion.stage2`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from mmgt.diffusion.guidance import cfg_combine, guidance_enabled
from mmgt.errors import MmgtError

# ---------------------------------------------------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------------------------------------------------
# Official SMGA / EDGE cosine schedule (Nichol & Dhariwal 2021): offset s = 0.008, betas capped at 0.999.
COSINE_OFFSET = 0.008
MAX_BETA = 0.999


def make_stage1_scheduler(num_train_timesteps: int = 1000) -> DDIMScheduler:
    """DDIM over the cosine schedule with x0-prediction, as official SMGA samples (DDIM 50 steps, eta 1).

    ``timestep_spacing="trailing"`` reproduces the official timesteps exactly whenever the step count divides
    ``num_train_timesteps``: the official sampler walks the pairs of reversed ``linspace(-1, T - 1, steps + 1)``
    (999 -> 979 -> ... -> 19 -> -1 for 50 steps), and trailing spacing gives ``round(arange(T, 0, -T/steps)) - 1``
    with ``prev = t - T // steps``, the same pairs. ``set_alpha_to_one=True`` makes the final step (prev = -1) use
    alpha_bar = 1, i.e. return the (guided, clipped) x0 itself, as the official loop does.

    Deviation: for step counts that do not divide T (e.g. 30), official timesteps are truncated linspace values and
    diffusers' rounded ones; they differ by at most one timestep.

    Returns:
        A fresh ``DDIMScheduler``; pass ``eta`` (spec default 1.0) to ``step``.
    """
    scheduler = DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="squaredcos_cap_v2",  # EDGE's "cosine" (s = 0.008, cap 0.999); EDGE's "linear" is not this
        prediction_type="sample",  # the denoiser predicts x0; step() recovers eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab)
        clip_sample=True,
        clip_sample_range=1.0,  # keypoints are normalised to [-1, 1]
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="trailing",
    )
    return use_float64_schedule(scheduler)


def use_float64_schedule(scheduler: DDIMScheduler) -> DDIMScheduler:
    """Hold a DDIM scheduler's alpha_bar in float64, in place (idempotent); returns the scheduler.

    Why: with eta = 1, ``DDIMScheduler.step`` takes sqrt(1 - alpha_bar_prev - sigma^2), which is ~1e-8 at t = 999
    for this schedule (alpha_bar_999 = 2.4e-9) and rounds *below zero* in float32 for coarse step counts (2, 4, 5
    steps...), turning the whole sample into NaN. In float64 it stays positive. Samples keep their own dtype: the
    coefficients are 0-d tensors, which do not promote the sample. ``add_noise`` casts alpha_bar to the sample's
    dtype, so training is unaffected. Schedulers loaded from disk need this too; ``sample_window`` applies it.
    """
    if isinstance(scheduler, DDIMScheduler) and scheduler.alphas_cumprod.dtype != torch.float64:
        scheduler.alphas_cumprod = scheduler.alphas_cumprod.double()
    return scheduler


def make_stage1_dpm_scheduler(num_train_timesteps: int = 1000) -> DPMSolverMultistepScheduler:
    """DPM-Solver++ (2nd order, multistep) over the same cosine schedule, x0-prediction; a faster alternative to DDIM.

    Not part of the official release: useful with ~20 steps instead of 50. Built with ``from_config`` from the DDIM
    config so that the schedule has a single definition.
    """
    ddim_config = make_stage1_scheduler(num_train_timesteps).config
    return DPMSolverMultistepScheduler.from_config(ddim_config, algorithm_type="dpmsolver++", prediction_type="sample")


def cosine_alphas_cumprod(
    num_train_timesteps: int = 1000, s: float = COSINE_OFFSET, max_beta: float = MAX_BETA
) -> torch.Tensor:
    """Closed-form cosine alpha_bar (Nichol & Dhariwal 2021, Eq. 17), float64, for timesteps 0..T-1.

    alpha_bar_t = f(t + 1) / f(0) with f(u) = cos(((u / T) + s) / (1 + s) * pi / 2)^2: timestep t is the state after
    t + 1 noising steps (diffusers' and EDGE's indexing). Where the implied beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}
    exceeds ``max_beta`` (only the last timestep for T = 1000), that step's factor is (1 - max_beta) instead.

    Returns:
        (T,) float64 tensor.
    """

    def f(u: torch.Tensor) -> torch.Tensor:
        return torch.cos((u / num_train_timesteps + s) / (1 + s) * math.pi / 2) ** 2

    steps = torch.arange(num_train_timesteps + 1, dtype=torch.float64)
    alphas_cumprod = f(steps[1:]) / f(steps[:1])  # (T,) telescoped product of (1 - beta)
    one_minus_betas = f(steps[1:]) / f(steps[:-1])  # (T,) uncapped 1 - beta_t
    for t in torch.nonzero(1 - one_minus_betas > max_beta).flatten().tolist():
        # The capped step multiplies alpha_bar by (1 - max_beta) instead of the true ratio, from t onwards.
        alphas_cumprod[t:] *= (1 - max_beta) / one_minus_betas[t]
    return alphas_cumprod


# ---------------------------------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------------------------------
def _pos_vel_acc(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MSE of x, Δx and Δ²x along frames (axis 1), each a mean over all elements."""
    pred_vel, target_vel = pred.diff(dim=1), target.diff(dim=1)  # Δx[k] = x[k+1] - x[k]: (B, F-1, K, 3)
    pos = F.mse_loss(pred, target)
    vel = F.mse_loss(pred_vel, target_vel)
    acc = F.mse_loss(pred_vel.diff(dim=1), target_vel.diff(dim=1))  # Δ² = Δ∘Δ: (B, F-2, K, 3)
    return pos, vel, acc


def smga_loss(
    pred: torch.Tensor, target: torch.Tensor, face_indices: Sequence[int], face_weight: float = 3.0
) -> dict[str, torch.Tensor]:
    """L_SMGA = MSE(x̂0, x0) + MSE(Δx̂0, Δx0) + MSE(Δ²x̂0, Δ²x0) + face_weight * [the same on the face keypoints].

    Official code: the face terms use keypoints 24-91 (frame-vector dims 72-275) with weight 3; there is no mask loss.

    Args:
        pred: (B, F, K, 3) predicted x̂0, F >= 3.
        target: (B, F, K, 3) ground-truth x0.
        face_indices: keypoint indices of the face (e.g. ``model.config.face_indices``).
        face_weight: weight of the three face terms.

    Returns:
        Named scalar terms "pos", "vel", "acc", "face_pos", "face_vel", "face_acc" (unweighted, for logging) and
        "loss", the weighted total to back-propagate.
    """
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[-1] != 3:
        raise MmgtError(
            f"pred and target must share a (B, F, K, 3) shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.shape[1] < 3:
        raise MmgtError(f"smga_loss needs at least 3 frames for the acceleration term, got F={pred.shape[1]}")
    face = torch.as_tensor(list(face_indices), dtype=torch.long, device=pred.device)
    if face.numel() == 0 or int(face.min()) < 0 or int(face.max()) >= pred.shape[2]:
        raise MmgtError(f"face_indices must be non-empty and within [0, {pred.shape[2]}), got {face.tolist()}")
    pos, vel, acc = _pos_vel_acc(pred, target)
    face_pos, face_vel, face_acc = _pos_vel_acc(pred.index_select(2, face), target.index_select(2, face))
    loss = pos + vel + acc + face_weight * (face_pos + face_vel + face_acc)
    return dict(loss=loss, pos=pos, vel=vel, acc=acc, face_pos=face_pos, face_vel=face_vel, face_acc=face_acc)


# ---------------------------------------------------------------------------------------------------------------------
# Sampler
# ---------------------------------------------------------------------------------------------------------------------
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
