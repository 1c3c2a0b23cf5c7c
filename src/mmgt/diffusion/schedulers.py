"""The stage-1 noise schedule: diffusers' DDIM (and DPM-Solver++) configured as official SMGA (spec §3.5-3.6).

There is no hand-written Gaussian-diffusion class: training noises with ``scheduler.add_noise`` and sampling steps
with ``scheduler.step``; ``tests/diffusion/test_schedule_parity.py`` proves the schedule equals the closed form.
"""

from __future__ import annotations

import math

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

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
