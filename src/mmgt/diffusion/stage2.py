"""The stage-2 noise schedule and training objective (spec §5.5-5.7): the ONE scheduler definition plus the v-target.

Training builds its scheduler with :func:`make_stage2_scheduler`; the video step saves that scheduler into the
pipeline folder (``scheduler/scheduler_config.json``) and inference reads it back, so training and sampling cannot
drift apart (the release trains with scaled_linear betas and samples with linear ones, spec §5.7).
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, SchedulerMixin, UniPCMultistepScheduler

from mmgt.constants import VIDEO_SAMPLERS
from mmgt.errors import MmgtError

NOISE_OFFSET = 0.05  # Official code: noise_offset 0.05 (spec §5.5)
SNR_GAMMA = 5.0  # Official code: min-SNR gamma 5 (spec §5.5)


def make_stage2_scheduler(num_train_timesteps: int = 1000) -> DDIMScheduler:
    """DDIM with v-prediction over zero-terminal-SNR scaled_linear betas 0.00085 -> 0.012 (spec §5.5, §5.7 decision).

    ``rescale_betas_zero_snr`` (Lin et al. 2023) shifts the schedule so that alpha_bar at t = T - 1 is exactly 0: the
    last training timestep sees pure noise, as sampling starts from pure noise. That makes eps-prediction meaningless
    at t = T - 1, hence v-prediction; ``timestep_spacing="trailing"`` makes sampling start at t = T - 1.

    Returns:
        A fresh ``DDIMScheduler`` (eta = 0 at inference, spec §5.7).
    """
    return DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",  # linear in sqrt(beta), SD-1.5's schedule
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        clip_sample=False,  # latents are not bounded to [-1, 1]
        set_alpha_to_one=True,
        steps_offset=0,
    )


def make_stage2_sampler(scheduler: SchedulerMixin, sampler: str) -> SchedulerMixin:
    """The scheduler that samples with ``sampler`` over the schedule of the saved ``scheduler``.

    The samplers (:data:`~mmgt.constants.VIDEO_SAMPLERS`): DDIM (eta 0), DPM-Solver++ 2M (Lu et al. 2022) and UniPC
    (bh2, Zhao et al. 2023), multistep solvers that reach DDIM's quality in fewer steps. ``"ddim"`` returns
    ``scheduler`` itself (whatever class was saved). The multistep solvers copy its schedule (betas,
    ``rescale_betas_zero_snr``, ``prediction_type``, ``timestep_spacing``) and end at sigma 0 (the clean sample, as
    DDIM's last step with ``set_alpha_to_one``); with zero terminal SNR diffusers clamps alpha_bar at t = T - 1 to
    2^-24, so their log-SNR stays finite. Each call gives a fresh solver: its multistep history belongs to one
    sampling run.

    Args:
        scheduler: the pipeline's saved scheduler (:func:`make_stage2_scheduler` for models trained here).
        sampler: one of :data:`~mmgt.constants.VIDEO_SAMPLERS`.

    Raises:
        MmgtError: an unknown sampler name.
    """
    if sampler == "ddim":
        return scheduler
    if sampler == "dpmpp_2m":
        return DPMSolverMultistepScheduler.from_config(
            scheduler.config, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero"
        )
    if sampler == "unipc":
        return UniPCMultistepScheduler.from_config(scheduler.config, solver_order=2, final_sigmas_type="zero")
    raise MmgtError(f"stage-2 sampler must be one of {VIDEO_SAMPLERS}, got {sampler!r}")


def noise_offset(
    latents: torch.Tensor, generator: torch.Generator | None, strength: float = NOISE_OFFSET
) -> torch.Tensor:
    """The noise-offset term: one N(0, 1) value per (sample, channel), times ``strength`` (spec §5.5).

    Added to the Gaussian noise, it lets the model change the mean brightness of a frame, which plain per-pixel
    noise barely perturbs (Guttenberg 2023, "Diffusion with offset noise").

    Args:
        latents: (B, C, F, H, W) or (B, C, H, W) clean latents (only the shape, device and dtype are used).
        generator: the step's torch generator (CPU), for exact resume.
        strength: the offset scale; 0 returns zeros.

    Returns:
        (B, C, 1, 1, 1) (or (B, C, 1, 1)) tensor that broadcasts over frames and space.
    """
    shape = (*latents.shape[:2], *([1] * (latents.ndim - 2)))
    offset = torch.randn(shape, generator=generator, dtype=torch.float32)  # drawn on CPU: same numbers everywhere
    return (strength * offset).to(latents.device, latents.dtype)


def _alpha_bar(scheduler: DDIMScheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """(B,) float64 alpha_bar_t for integer ``timesteps`` (B,)."""
    if timesteps.ndim != 1:
        raise MmgtError(f"timesteps must be a (B,) tensor, got shape {tuple(timesteps.shape)}")
    return scheduler.alphas_cumprod.to(torch.float64)[timesteps.long().cpu()].to(timesteps.device)


def snr(scheduler: DDIMScheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """(B,) float64 signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t); 0 at the zero-SNR terminal timestep."""
    alpha_bar = _alpha_bar(scheduler, timesteps)
    return alpha_bar / (1.0 - alpha_bar)


def min_snr_weights(scheduler: DDIMScheduler, timesteps: torch.Tensor, gamma: float = SNR_GAMMA) -> torch.Tensor:
    """Per-sample min-SNR loss weights for an MSE on v (Hang et al. 2023), in the form of spec §5.5.

    weight_t = min(SNR_t + 1, gamma) / (SNR_t + 1). Official code (spec §5.5): for v-prediction the release adds 1 to
    the SNR before the min-and-divide, so the weight is 1 wherever SNR_t + 1 <= gamma (all the noisy timesteps,
    including the zero-SNR terminal one) and falls as gamma / (SNR_t + 1) on the nearly clean ones. (diffusers'
    text-to-image example uses min(SNR, gamma) / (SNR + 1) instead, which gives the terminal timestep weight 0.)

    Args:
        scheduler: the stage-2 scheduler.
        timesteps: (B,) integer timesteps.
        gamma: the SNR clamp (5 in the release).

    Returns:
        (B,) float32 weights in (0, 1].
    """
    snr_plus_one = snr(scheduler, timesteps) + 1.0  # = 1 / (1 - alpha_bar): finite as alpha_bar < 1 for t >= 0
    return (snr_plus_one.clamp(max=gamma) / snr_plus_one).float()


def v_target(
    scheduler: DDIMScheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """The v-prediction target v_t = sqrt(alpha_bar_t) * eps - sqrt(1 - alpha_bar_t) * x0 (Salimans & Ho 2022).

    Args:
        scheduler: the stage-2 scheduler.
        latents: (B, ...) clean latents x0.
        noise: (B, ...) the noise eps that made x_t (including the noise offset).
        timesteps: (B,) integer timesteps.

    Returns:
        (B, ...) tensor, the dtype of ``latents``.
    """
    alpha_bar = _alpha_bar(scheduler, timesteps).view(-1, *([1] * (latents.ndim - 1)))  # (B, 1, ...)
    # Coefficients in float64, then in the latents' dtype (the terminal sqrt(1 - alpha_bar) is exactly 1).
    signal, sigma = alpha_bar.sqrt().to(latents.dtype), (1.0 - alpha_bar).sqrt().to(latents.dtype)
    return signal * noise.to(latents.dtype) - sigma * latents


def x0_from_v(scheduler: DDIMScheduler, noisy: torch.Tensor, v: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """The one-step clean prediction x0 = sqrt(alpha_bar_t) * x_t - sqrt(1 - alpha_bar_t) * v of a v-prediction.

    Args:
        scheduler: the stage-2 scheduler.
        noisy: (B, ...) the noisy latents x_t.
        v: (B, ...) the predicted v (gradients flow through it).
        timesteps: (B,) integer timesteps.

    Returns:
        (B, ...) tensor, the dtype of ``v``.
    """
    alpha_bar = _alpha_bar(scheduler, timesteps).view(-1, *([1] * (v.ndim - 1)))  # (B, 1, ...)
    signal, sigma = alpha_bar.sqrt().to(v.dtype), (1.0 - alpha_bar).sqrt().to(v.dtype)
    return signal * noisy.to(v.dtype) - sigma * v
