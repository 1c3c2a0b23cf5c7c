"""Classifier-free guidance (Ho & Salimans 2022), applied to the x0 prediction in stage 1 (spec §3.6)."""

from __future__ import annotations

import torch


def cfg_combine(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """uncond + scale * (cond - uncond): scale 1 gives ``cond``, 0 gives ``uncond``, > 1 extrapolates (SMGA: 2)."""
    return uncond + scale * (cond - uncond)
