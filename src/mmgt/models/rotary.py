"""Rotary position embedding (RoPE, Su et al. 2021, "RoFormer"): per-head queries/keys, or whole tokens as released."""

from __future__ import annotations

import torch
from torch import nn

from mmgt.errors import MmgtError


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last axis: a 90-degree turn of every (x1_i, x2_i) pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x_0, x_1, x_2, x_3, ...) -> (-x_1, x_0, -x_3, x_2, ...): a 90-degree turn of every adjacent pair."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., D/2, 2)
    return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)


class RotaryEmbedding(nn.Module):
    """Rotates each feature pair of the last axis by the angle position * theta^(-2i / D), pair i = 0 .. D/2 - 1.

    Applied to per-head queries and keys, the dot product of a query at position m with a key at position n then
    depends on their contents and on m - n only, which is how the SMGA denoiser knows frame order without any
    absolute positional encoding.

    Two pairings of the D features, the same maths on permuted features:

    * ``interleaved=False``: the "half split" (GPT-NeoX) layout, pair i = (x_i, x_{i + D/2}); mmgt's per-head rotary.
    * ``interleaved=True``: adjacent pairs, pair i = (x_{2i}, x_{2i + 1}) (``rotary-embedding-torch``, RoFormer);
      the layout of the released SMGA, which rotates whole 512-d tokens before the q/k projections.

    Args:
        dim: feature size D (even): a head's size, or the model width for whole tokens.
        theta: base wavelength; 10,000 as in RoFormer.
        interleaved: pair adjacent features instead of the two halves.
    """

    def __init__(self, dim: int, theta: float = 10_000.0, interleaved: bool = False):
        super().__init__()
        if dim % 2:
            raise MmgtError(f"rotary dim must be even, got {dim}")
        self.interleaved = interleaved
        inv_freq = theta ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # (D/2,)
        # Derived from the config, so not saved: checkpoints hold learned weights only.
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Rotate ``x``.

        Args:
            x: (..., N, D) queries, keys or tokens, any leading axes (batch, heads).
            positions: (N,) positions; ``arange(N)`` when None.

        Returns:
            (..., N, D) rotated tensor, same dtype as ``x``.
        """
        n = x.shape[-2]
        if positions is None:
            positions = torch.arange(n, device=x.device)
        # Angles in float32 even under bf16 weights (position * frequency loses precision fast in low precision), and
        # in float64 for float64 inputs.
        dtype = torch.promote_types(x.dtype, torch.float32)
        angles = positions.to(dtype)[:, None] * self.inv_freq.to(dtype)[None]  # (N, D/2)
        if self.interleaved:
            angles, turn = angles.repeat_interleave(2, dim=-1), rotate_pairs  # (N, D): (a0, a0, a1, a1, ...)
        else:
            angles, turn = torch.cat([angles, angles], dim=-1), rotate_half  # (N, D): (a0, a1, ..., a0, a1, ...)
        rotated = x.to(dtype) * angles.cos() + turn(x.to(dtype)) * angles.sin()
        return rotated.to(x.dtype)
