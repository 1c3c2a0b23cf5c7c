"""The stage-1 schedulers equal the official cosine schedule and DDIM sampler (spec §3.5-3.6)."""

from __future__ import annotations

import math

import torch
from diffusers import DDIMScheduler

from mmgt.diffusion import (
    cosine_alphas_cumprod,
    make_stage1_dpm_scheduler,
    make_stage1_scheduler,
    use_float64_schedule,
)


def test_alphas_cumprod_match_closed_form_cosine():
    scheduler = make_stage1_scheduler()
    closed = cosine_alphas_cumprod(1000)
    assert scheduler.alphas_cumprod.shape == closed.shape == (1000,)
    # The float32 alphas (each rounded once) put alphas_cumprod ~3e-7 off the float64 closed form; the cumprod is a
    # sequential scan, so no SIMD-dependent reordering adds to it.
    assert torch.allclose(scheduler.alphas_cumprod.double(), closed, rtol=0, atol=1e-6)
    # Hand value at t = 499: f(500) / f(0), f(u) = cos((u / 1000 + 0.008) / 1.008 * pi / 2)^2.
    f = lambda u: math.cos((u / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert math.isclose(closed[499].item(), f(500) / f(0), rel_tol=1e-12)


def test_beta_cap_only_changes_the_last_timestep():
    capped, uncapped = cosine_alphas_cumprod(1000), cosine_alphas_cumprod(1000, max_beta=1.0)
    assert torch.equal(capped[:-1], uncapped[:-1])
    assert math.isclose(capped[-1].item(), capped[-2].item() * 0.001, rel_tol=1e-12)  # beta_999 = 0.999
    assert uncapped[-1].item() < 1e-30  # the uncapped cosine reaches alpha_bar = 0 at t = T
    assert math.isclose(make_stage1_scheduler().betas[-1].item(), 0.999, rel_tol=1e-6)


def test_50_step_timesteps_are_the_official_pairs():
    scheduler = make_stage1_scheduler()
    scheduler.set_timesteps(50)
    official = torch.linspace(-1, 999, 51).round().long().flip(0)  # 999, 979, ..., 19, -1
    assert scheduler.timesteps.tolist() == official[:-1].tolist()
    prev = scheduler.timesteps - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    assert prev.tolist() == official[1:].tolist()


def test_ddim_eta1_step_matches_the_official_update():
    scheduler = make_stage1_scheduler()
    scheduler.set_timesteps(50)
    g = torch.Generator().manual_seed(0)
    x_t, x0, noise = (torch.randn(2, 4, 3, generator=g) for _ in range(3))
    x0 = x0.clamp(-1, 1)
    out = scheduler.step(x0, 499, x_t, eta=1.0, variance_noise=noise).prev_sample
    a, a_prev = scheduler.alphas_cumprod[499].double(), scheduler.alphas_cumprod[479].double()
    eps = (x_t.double() - a.sqrt() * x0) / (1 - a).sqrt()
    sigma = ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
    expected = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).sqrt() * eps + sigma * noise
    assert torch.allclose(out.double(), expected, atol=1e-5)


def test_last_step_returns_the_clipped_x0():
    scheduler = make_stage1_scheduler()
    scheduler.set_timesteps(50)
    x_t = torch.randn(3, 5)
    x0 = torch.tensor([0.25, -0.5, 1.5]).repeat(5, 1).T  # 1.5 is clipped to 1
    out = scheduler.step(x0, 19, x_t, eta=1.0, generator=torch.Generator().manual_seed(0)).prev_sample
    assert torch.allclose(out, x0.clamp(-1, 1), atol=1e-6)


def test_dpm_solver_shares_the_schedule_and_predicts_x0():
    ddim, dpm = make_stage1_scheduler(), make_stage1_dpm_scheduler()
    assert (dpm.config.algorithm_type, dpm.config.prediction_type) == ("dpmsolver++", "sample")
    assert torch.equal(dpm.alphas_cumprod, ddim.alphas_cumprod)
    dpm.set_timesteps(20)
    assert dpm.timesteps[0].item() == 999 and dpm.timesteps[-1].item() == 49


def test_coarse_eta1_ddim_stays_finite():
    # float32 alpha_bar makes sqrt(1 - alpha_bar_prev - sigma^2) NaN at t = 999 for 5 steps; float64 does not.
    scheduler = make_stage1_scheduler()
    assert scheduler.alphas_cumprod.dtype == torch.float64
    scheduler.set_timesteps(5)
    x = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(0))
    for t in scheduler.timesteps:
        x = scheduler.step(torch.full_like(x, 0.5), t, x, eta=1.0).prev_sample
    assert x.dtype == torch.float32 and torch.allclose(x, torch.full_like(x, 0.5), atol=1e-5)
    assert use_float64_schedule(DDIMScheduler()).alphas_cumprod.dtype == torch.float64
