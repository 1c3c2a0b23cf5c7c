"""Rotary position embedding (RoPE, Su et al. 2021, "RoFormer") for per-head queries and keys."""

from __future__ import annotations

import torch
from torch import nn

from mmgt.errors import MmgtError


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last axis: a 90-degree turn of every (x1_i, x2_i) pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class RotaryEmbedding(nn.Module):
    """Rotates each (x_i, x_{i + D/2}) pair of a head by the angle position * theta^(-2i / D).

    After rotation, the dot product of a query at position m with a key at position n depends on their contents and
    on m - n only, which is how the SMGA denoiser knows frame order without any absolute positional encoding.
    The pairing is the "half split" (GPT-NeoX) layout; the interleaved layout is the same maths on permuted features.

    Args:
        head_dim: per-head feature size D (even).
        theta: base wavelength; 10,000 as in RoFormer.
    """

    def __init__(self, head_dim: int, theta: float = 10_000.0):
        super().__init__()
        if head_dim % 2:
            raise MmgtError(f"rotary head_dim must be even, got {head_dim}")
        inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (D/2,)
        # Derived from the config, so not saved: checkpoints hold learned weights only.
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Rotate ``x``.

        Args:
            x: (..., N, D) queries or keys, heads on a leading axis.
            positions: (N,) positions; ``arange(N)`` when None.

        Returns:
            (..., N, D) rotated tensor, same dtype as ``x``.
        """
        n = x.shape[-2]
        if positions is None:
            positions = torch.arange(n, device=x.device)
        # Angles in float32 even under bf16 weights: position * frequency loses precision fast in low precision.
        angles = positions.float()[:, None] * self.inv_freq.float()[None]  # (N, D/2)
        angles = torch.cat([angles, angles], dim=-1)  # (N, D), matching the half-split pairs
        return (x.float() * angles.cos() + rotate_half(x.float()) * angles.sin()).to(x.dtype)
