"""The stage-2 schedule and objective: zero terminal SNR, the v-target, min-SNR weights, noise offset."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler

from mmgt.constants import VIDEO_SAMPLERS
from mmgt.diffusion.stage2 import (
    make_stage2_sampler,
    make_stage2_scheduler,
    min_snr_weights,
    noise_offset,
    snr,
    v_target,
)
from mmgt.errors import MmgtError


def _closed_form_alpha_bar(t: int) -> float:
    """Zero-SNR scaled_linear alpha_bar by hand (Lin et al. 2023, Algorithm 1), float64."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    sqrt_ab = torch.cumprod(1 - betas, 0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)  # shift to 0 at T-1, rescale to keep alpha_bar_0
    return float(sqrt_ab[t] ** 2)


def test_scheduler_config_and_zero_terminal_snr():
    s = make_stage2_scheduler()
    c = s.config
    assert (c.prediction_type, c.beta_schedule, c.timestep_spacing) == ("v_prediction", "scaled_linear", "trailing")
    assert c.rescale_betas_zero_snr and not c.clip_sample and (c.beta_start, c.beta_end) == (0.00085, 0.012)
    assert s.alphas_cumprod[-1].item() == 0.0  # pure noise at t = 999
    for t in (0, 1, 250, 998):
        assert s.alphas_cumprod[t].item() == pytest.approx(_closed_form_alpha_bar(t), rel=1e-5, abs=1e-9)
    # Trailing spacing starts sampling at the pure-noise timestep.
    s.set_timesteps(30)
    assert s.timesteps[0].item() == 999 and s.timesteps[-1].item() == 32


def test_scheduler_round_trips_through_its_config(tmp_path):
    make_stage2_scheduler().save_pretrained(tmp_path)
    loaded = DDIMScheduler.from_pretrained(tmp_path)
    assert torch.equal(loaded.alphas_cumprod, make_stage2_scheduler().alphas_cumprod)
    assert loaded.config.prediction_type == "v_prediction"


def test_v_target_by_hand():
    s = make_stage2_scheduler()
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 2, 5, 5, generator=g), torch.randn(3, 4, 2, 5, 5, generator=g)
    t = torch.tensor([0, 400, 999])
    v = v_target(s, x0, eps, t)
    for i, ti in enumerate(t.tolist()):
        a = _closed_form_alpha_bar(ti)
        torch.testing.assert_close(v[i], math.sqrt(a) * eps[i] - math.sqrt(1 - a) * x0[i], rtol=1e-5, atol=1e-5)
    assert torch.equal(v[2], -x0[2])  # zero SNR: v = -x0 exactly
    # Same numbers as diffusers' own definition.
    torch.testing.assert_close(v, s.get_velocity(x0, eps, t), rtol=1e-5, atol=1e-6)


def test_min_snr_weights_by_hand():
    s = make_stage2_scheduler()
    t = torch.tensor([0, 50, 100, 500, 999])
    w = min_snr_weights(s, t, gamma=5.0)
    for i, ti in enumerate(t.tolist()):
        a = _closed_form_alpha_bar(ti)
        snr_plus_one = a / (1 - a) + 1
        assert w[i].item() == pytest.approx(min(snr_plus_one, 5.0) / snr_plus_one, rel=1e-4)  # float32 alpha_bar
    # Known values: t=0 has SNR ~1175 -> 5/1176; the noisy half and the zero-SNR end weigh exactly 1.
    assert w[0].item() == pytest.approx(5 / 1176.4, rel=1e-3)
    assert w[3].item() == 1.0 and w[4].item() == 1.0
    assert snr(s, torch.tensor([999])).item() == 0.0
    assert w.dtype == torch.float32 and w.shape == (5,)


def test_min_snr_rejects_non_vector_timesteps():
    with pytest.raises(MmgtError, match=r"timesteps must be a \(B,\) tensor"):
        min_snr_weights(make_stage2_scheduler(), torch.tensor(5))


def test_noise_offset_shape_broadcast_and_determinism():
    latents = torch.zeros(2, 4, 3, 8, 8)
    a = noise_offset(latents, torch.Generator().manual_seed(7), strength=0.05)
    b = noise_offset(latents, torch.Generator().manual_seed(7), strength=0.05)
    c = noise_offset(latents, torch.Generator().manual_seed(8), strength=0.05)
    assert a.shape == (2, 4, 1, 1, 1) and torch.equal(a, b) and not torch.equal(a, c)
    # Exactly strength x one standard normal per (sample, channel), in the generator's order.
    expected = 0.05 * torch.randn(2, 4, 1, 1, 1, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, expected)
    noisy = latents + a  # broadcast: constant over frames and space
    assert torch.equal(noisy[:, :, 2, 5, 1], a[:, :, 0, 0, 0])
    assert noise_offset(torch.zeros(2, 4, 8, 8), None).shape == (2, 4, 1, 1)
    assert torch.equal(
        noise_offset(latents, torch.Generator().manual_seed(7), strength=0.0), torch.zeros(2, 4, 1, 1, 1)
    )


@pytest.mark.parametrize("sampler", VIDEO_SAMPLERS)
def test_samplers_walk_the_saved_schedule(sampler):
    saved = make_stage2_scheduler()
    solver = make_stage2_sampler(saved, sampler)
    assert (solver is saved) == (sampler == "ddim")
    assert solver.config.prediction_type == "v_prediction" and solver.config.rescale_betas_zero_snr
    solver.set_timesteps(4)
    assert solver.timesteps.tolist() == [999, 749, 499, 249]  # trailing spacing: starts at pure noise
    # The same alpha_bar, except the terminal zero that the multistep solvers clamp to 2^-24 (finite log-SNR).
    torch.testing.assert_close(solver.alphas_cumprod[:-1], saved.alphas_cumprod[:-1])
    assert saved.alphas_cumprod[-1] == 0 and solver.alphas_cumprod[-1] <= 2**-24
    if sampler != "ddim":
        assert make_stage2_sampler(saved, sampler) is not solver  # a fresh multistep history per run


def test_unknown_sampler_is_refused():
    with pytest.raises(MmgtError, match="dpmpp_2m"):
        make_stage2_sampler(make_stage2_scheduler(), "euler")
