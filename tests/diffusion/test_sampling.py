"""sample_window (CFG on x0, DDIM / DPM-Solver++) and select_motion."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mmgt.constants import NUM_KEYPOINTS
from mmgt.diffusion import make_stage1_dpm_scheduler, make_stage1_scheduler, sample_window, select_motion
from mmgt.errors import MmgtError
from mmgt.models.gesture_denoiser import GestureDenoiser

K = NUM_KEYPOINTS

OFFICIAL = dict(num_inference_steps=50, guidance_scale=2.0, eta=1.0)  # spec §3.6


class ConstantDenoiser(nn.Module):
    """Predicts x0 = ``cond_value`` with audio and ``uncond_value`` without; records every call."""

    def __init__(self, cond_value: float, uncond_value: float):
        super().__init__()
        self.cond_value, self.uncond_value = cond_value, uncond_value
        self.calls = []

    def forward(self, sample, timestep, cond_pose, audio, drop_audio=None):
        self.calls.append((sample.shape[0], timestep.tolist(), drop_audio.tolist()))
        value = torch.where(drop_audio, self.uncond_value, self.cond_value).to(sample.dtype)  # (B,)
        return value.view(-1, 1, 1, 1).expand_as(sample)


def _condition(batch=2, frames=6, audio_dim=12):
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, K, 3, generator=g) * 2 - 1, torch.randn(batch, frames, audio_dim, generator=g)


def test_guided_x0_is_returned_after_the_last_ddim_step():
    model = ConstantDenoiser(cond_value=0.3, uncond_value=0.1)
    cond_pose, audio = _condition()
    out = sample_window(
        model, make_stage1_scheduler(), cond_pose, audio, **OFFICIAL, generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == (2, 6, K, 3)
    assert torch.allclose(out, torch.full_like(out, 0.1 + 2.0 * (0.3 - 0.1)), atol=1e-5)  # w = 2
    assert len(model.calls) == 50
    batch, timesteps, drop = model.calls[0]
    assert (batch, timesteps, drop) == (4, [999] * 4, [False, False, True, True])  # one 2B call: D_c then D_∅
    assert model.calls[-1][1] == [19] * 4


def test_guided_x0_is_clipped():
    model = ConstantDenoiser(cond_value=0.8, uncond_value=0.0)  # 0 + 2 * 0.8 = 1.6 -> 1
    out = sample_window(model, make_stage1_scheduler(), *_condition(), **{**OFFICIAL, "num_inference_steps": 5})
    assert torch.allclose(out, torch.ones_like(out), atol=1e-5)


def test_guidance_scale_one_runs_the_conditional_model_only():
    model = ConstantDenoiser(cond_value=0.3, uncond_value=0.1)
    out = sample_window(
        model, make_stage1_scheduler(), *_condition(), num_inference_steps=4, guidance_scale=1.0, eta=1.0
    )
    assert [call[0] for call in model.calls] == [2] * 4 and model.calls[0][2] == [False, False]
    assert torch.allclose(out, torch.full_like(out, 0.3), atol=1e-5)


@pytest.mark.parametrize("make_scheduler", [make_stage1_scheduler, make_stage1_dpm_scheduler])
def test_real_model_sampling_is_seeded_and_bounded(make_scheduler):
    torch.manual_seed(0)
    model = GestureDenoiser(audio_dim=12, hidden_dim=32, num_layers=1, num_heads=2, ff_dim=64, window_frames=6)
    with torch.no_grad():
        model.proj_out.weight.normal_(0, 0.5)  # a non-trivial x0 (the fresh output layer is zero)
    model.eval()
    cond_pose, audio = _condition()

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        return sample_window(
            model, make_scheduler(), cond_pose, audio, **{**OFFICIAL, "num_inference_steps": 4}, generator=generator
        )

    first, again, other = run(0), run(0), run(1)
    assert first.shape == (2, 6, K, 3)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.abs().max() <= 1.0 and first.abs().max() > 0.1


def test_sample_window_rejects_mismatched_inputs():
    cond_pose, audio = _condition()
    with pytest.raises(MmgtError, match="audio must have shape"):
        sample_window(ConstantDenoiser(0, 0), make_stage1_scheduler(), cond_pose, audio[:1], **OFFICIAL)
    with pytest.raises(MmgtError, match="num_inference_steps"):
        sample_window(
            ConstantDenoiser(0, 0), make_stage1_scheduler(), cond_pose, audio, **{**OFFICIAL, "num_inference_steps": 0}
        )


def test_select_motion_uses_position_and_direction():
    # Previous tail: every point moves +x by v per frame. Candidate "reversed" starts closer (position error
    # 12 v K) but moves -x (angle pi); candidate "continues" is offset by delta but keeps the direction (angle 0).
    v, frames = 1e-3, torch.arange(5.0)
    prev = torch.zeros(1, 5, K, 3)
    prev[..., 0] = (v * frames)[None, :, None]
    continues, reversed_ = prev.clone(), prev.clone()
    delta = (12 * v * K + 1.0) / (5 * K)  # position error 12 v K + 1, still below 12 v K + pi
    continues[..., 0] += delta
    reversed_[..., 0] = (v * (4 - frames))[None, :, None]
    candidates = torch.stack([reversed_, continues])  # (k=2, B=1, F=5, K, 3)
    assert select_motion(candidates, prev).tolist() == [1]
    # Batched, with the candidate order swapped for the second item.
    batched = torch.stack([torch.cat([reversed_, continues]), torch.cat([continues, reversed_])])  # (2, 2, 5, K, 3)
    assert select_motion(batched, torch.cat([prev, prev])).tolist() == [1, 0]
    # Position alone would have chosen "reversed": the angle term is what decides.
    assert (12 * v * K) < (12 * v * K + 1.0) < (12 * v * K + math.pi)


def test_select_motion_rejects_short_spans():
    with pytest.raises(MmgtError, match="span"):
        select_motion(torch.zeros(2, 1, 3, K, 3), torch.zeros(1, 5, K, 3))
