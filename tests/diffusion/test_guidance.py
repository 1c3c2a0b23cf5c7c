"""cfg_combine: uncond + scale (cond - uncond)."""

from __future__ import annotations

import torch

from mmgt.diffusion import cfg_combine


def test_cfg_combine_values():
    uncond, cond = torch.tensor([0.1, -0.2]), torch.tensor([0.3, 0.2])
    assert torch.allclose(cfg_combine(uncond, cond, 0.0), uncond)
    assert torch.allclose(cfg_combine(uncond, cond, 1.0), cond)
    assert torch.allclose(cfg_combine(uncond, cond, 2.0), torch.tensor([0.5, 0.6]))  # 2 cond - uncond
